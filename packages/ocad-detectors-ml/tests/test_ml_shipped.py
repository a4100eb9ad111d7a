"""The default artifacts shipped as package data (written by the ocad-train build)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ocad.core.artifacts import load_artifact
from ocad.core.plugins import DetectorContext, MetricRegistry, ORAN_METRICS
from ocad.detectors_ml import build_detectors, models_dir

MAX_BYTES = 2 * 1024 * 1024


def _shipped() -> list[Path]:
    root = models_dir()
    dirs = sorted(p for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []
    if not dirs:
        pytest.skip(f"no shipped models in {root} yet: the ocad-train build writes them there")
    return dirs


def test_every_shipped_manifest_and_hash_verifies_and_all_fit_in_2_mb() -> None:
    dirs = _shipped()
    arts = [load_artifact(d) for d in dirs]  # raises on any hash / field / path problem
    assert {a.kind for a in arts} <= {"forecaster", "multivariate"}
    total = sum(f.stat().st_size for d in dirs for f in d.rglob("*") if f.is_file())
    assert total <= MAX_BYTES, f"shipped models take {total / 1e6:.2f} MB > 2 MB"
    for a, d in zip(arts, dirs):
        listed = {"manifest.json"} | {e["path"] for e in a.manifest["files"].values()}
        stray = {str(f.relative_to(d)) for f in d.rglob("*") if f.is_file()} - listed
        assert not stray, f"{d.name}: files not in the manifest (not hash-checked): {sorted(stray)}"


def test_shipped_models_build_detectors_without_errors() -> None:
    arts = [load_artifact(d) for d in _shipped()]
    ctx = DetectorContext(metrics=MetricRegistry(ORAN_METRICS), window=32, strict=True)
    dets = {d.name: d for d in build_detectors(arts, ctx)}
    if any(a.kind == "forecaster" for a in arts):
        assert "residual" in dets
    if any(a.kind == "multivariate" for a in arts):
        assert "multivariate" in dets
    assert ctx.artifact_errors == []


@pytest.fixture(scope="module")
def shipped_detectors() -> dict:
    arts = [load_artifact(d) for d in _shipped()]
    ctx = DetectorContext(metrics=MetricRegistry(ORAN_METRICS), window=32, strict=True)
    return {d.name: d for d in build_detectors(arts, ctx)}


def test_shipped_residual_is_calibrated_and_sees_a_spike(shipped_detectors: dict) -> None:
    import ml_synth as S
    import numpy as np

    from ocad.core.tooling import generate_fleet

    det = shipped_detectors.get("residual")
    if det is None:
        pytest.skip("no shipped forecaster")
    fleet = generate_fleet(n_endpoints=30, duration_s=3 * 3600, seed=101, faults=False)
    outs = [det.score(S.view_at(fleet, t, det.window)) for t in range(det.window, fleet.ts.size, 9)]
    ms = np.concatenate([o.metric_scores for o in outs])
    far = np.nanmean(ms > 0.99, axis=0)
    assert np.all((far > 0.002) & (far < 0.03)), far  # calibrated on validation residuals: ~1 %
    s = np.concatenate([o.scores for o in outs])
    assert 0.002 < np.nanmean(s > 0.99) < 0.03  # the Šidák step keeps the endpoint rate there too
    view = S.view_at(fleet, 1000, det.window)
    j = view.metric_index(det.metrics[0])
    i = int(np.flatnonzero(np.isfinite(view.values[:, :, j]).all(axis=1))[0])
    values = view.values.copy()
    values[i, -1, j] *= 3.0
    out = det.score(S.DetectorView(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                                   capabilities=view.capabilities, features=view.features, counts=view.counts))
    assert out.metric_scores[i, 0] > 0.999 and out.scores[i] > 0.99


def test_shipped_multivariate_sees_a_degraded_endpoint(shipped_detectors: dict) -> None:
    import ml_synth as S
    import numpy as np

    from ocad.core.pipeline import FeatureEngine
    from ocad.core.tooling import generate_fleet

    det = shipped_detectors.get("multivariate")
    if det is None:
        pytest.skip("no shipped multivariate model")
    fleet = generate_fleet(n_endpoints=30, duration_s=3 * 3600, seed=102, faults=False)
    view = S.view_at(fleet, 1500, 33)  # the Monitor's window with the shipped residual detector
    x = det.feature_matrix(view)
    i = int(np.flatnonzero(np.isnan(x).mean(axis=1) == 0)[0])
    # A path degrading as a whole: the three delays x2.5 over the last 12 samples.
    values = view.values.copy()
    for m in ("udp_echo_rtt_ms", "lbm_rtt_ms", "ecpri_delay_us"):
        values[i, -12:, view.metric_index(m)] *= 2.5
    feats = FeatureEngine(MetricRegistry(ORAN_METRICS)).compute(values, view.ts)
    out = det.score(S.DetectorView(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                                   capabilities=view.capabilities, features=feats, counts=view.counts))
    assert out.scores[i] > 0.99
    top = out.metrics[out.top_metric(i)]
    assert top.split(":")[0] in ("udp_echo_rtt_ms", "lbm_rtt_ms", "ecpri_delay_us"), top
    assert out.observed[i, out.top_metric(i)] != out.expected[i, out.top_metric(i)]
    assert np.nanmedian(np.delete(out.scores, i)) < 0.9
