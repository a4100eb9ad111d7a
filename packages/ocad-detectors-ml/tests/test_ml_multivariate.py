"""MultivariateDetector on a synthetic Isolation-Forest-shaped artifact: scores, missing metrics, evidence."""

from __future__ import annotations

from pathlib import Path

import ml_synth as S
import numpy as np
import pytest

from ocad.core import Monitor, OcadArtifactError
from ocad.core.artifacts import LoadedArtifact, write_artifact
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import DetectorView
from ocad.core.tooling import Fleet
from ocad.detectors_ml import MultivariateDetector


def _replace(view: DetectorView, values: np.ndarray, caps: np.ndarray | None = None) -> DetectorView:
    feats = FeatureEngine(S.MetricRegistry(S.ORAN_METRICS)).compute(values, view.ts)
    return DetectorView(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                        capabilities=view.capabilities if caps is None else caps, features=feats,
                        counts=view.counts)


def _complete_rows(view: DetectorView, det: MultivariateDetector) -> np.ndarray:
    return np.flatnonzero(np.isfinite(view.features.columns(det.features)).all(axis=1))


def test_normal_low_degraded_high_with_feature_evidence(multivariate: MultivariateDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 2000, 32)
    rows = _complete_rows(view, multivariate)
    i = int(rows[0])
    values = view.values.copy()
    j = view.metric_index("udp_echo_rtt_ms")
    values[i, -8:, j] *= 4.0  # RTT quadruples for the last 8 samples
    out = multivariate.score(_replace(view, values))
    assert out.scores[i] > 0.99
    assert np.nanmedian(np.delete(out.scores, i)) < 0.9
    # Evidence: the most deviant feature carries the score, observed vs the training median.
    k = out.top_metric(i)
    assert k is not None
    top = out.metrics[k]
    assert top.startswith("udp_echo_rtt_ms:")
    assert out.metric_scores[i, k] == pytest.approx(out.scores[i])
    observed = FeatureEngine(S.MetricRegistry(S.ORAN_METRICS)).compute(values, view.ts)[top][i]
    assert out.observed[i, k] == pytest.approx(observed)
    assert out.expected[i, k] == pytest.approx(multivariate.center[k])


def test_false_alarm_rate_on_held_out_normal_data(multivariate: MultivariateDetector, fleet: Fleet) -> None:
    s = np.concatenate([multivariate.score(S.view_at(fleet, t, 32)).scores for t in range(1850, 2150, 4)])
    assert 0.001 < np.nanmean(s > 0.99) < 0.04


def test_missing_metrics_imputed_then_refused(multivariate: MultivariateDetector, mv_artifact: LoadedArtifact,
                                             fleet: Fleet) -> None:
    view = S.view_at(fleet, 1900, 32)
    rows = _complete_rows(view, multivariate)
    a, b = int(rows[0]), int(rows[1])
    values = view.values.copy()
    caps = view.capabilities.copy()
    lbm = [view.metric_index("lbm_rtt_ms"), view.metric_index("lbm_success")]
    values[a][:, lbm] = np.nan  # lacks CFM loopback: 3 of 10 features missing (30 % <= 50 %)
    caps[a, lbm] = False
    most = [view.metric_index(m) for m in ("lbm_rtt_ms", "lbm_success", "ecpri_delay_us", "ccm_miss_count")]
    values[b][:, most] = np.nan  # 7 of 10 features missing (70 % > 50 %): cannot judge
    caps[b, most] = False
    v = _replace(view, values, caps)
    out = multivariate.score(v)
    assert np.isfinite(out.scores[a])
    assert np.isnan(out.scores[b])
    # The imputed features take the training median ("typical"), never zero:
    x = v.features.columns(multivariate.features)[a]
    med = np.array([mv_artifact.manifest["inputs"]["impute"][f] for f in multivariate.features])
    filled = np.where(np.isnan(x), med, x)
    z = (filled - multivariate.center) / multivariate.scale
    want = multivariate.calibration.transform(np.array([np.mean(z.astype(np.float32) ** 2)]))[0]
    assert out.scores[a] == pytest.approx(want, abs=1e-4)
    zero = np.where(np.isnan(x), 0.0, x)
    z0 = (zero - multivariate.center) / multivariate.scale
    assert multivariate.calibration.transform(np.array([np.mean(z0 ** 2)]))[0] > out.scores[a] + 0.05
    # Evidence leaves the imputed features out (not observed).
    assert np.isnan(out.observed[a][np.isnan(x)]).all()
    assert np.isnan(out.metric_scores[a][np.isnan(x)]).all()


def test_imputation_outside_the_graph_gives_the_same_scores(mv_train: np.ndarray, fleet: Fleet,
                                                            multivariate: MultivariateDetector,
                                                            tmp_path: Path) -> None:
    art = S.multivariate_artifact(tmp_path / "mv", mv_train, impute_in_graph=False)
    det = MultivariateDetector.from_artifact(art)
    assert det.impute is not None and multivariate.impute is None
    view = S.view_at(fleet, 1700, 32)
    np.testing.assert_allclose(det.score(view).scores, multivariate.score(view).scores, atol=1e-6)


def test_features_recomputed_when_the_monitor_window_is_longer(multivariate: MultivariateDetector,
                                                               fleet: Fleet) -> None:
    short = S.view_at(fleet, 1600, 32)  # as trained
    long = S.view_at(fleet, 1600, 48)   # the Monitor keeps 48 samples for another detector
    a = multivariate.score(short).scores
    b = multivariate.score(long).scores
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(long.features.columns(multivariate.features),
                           short.features.columns(multivariate.features), equal_nan=True)


def test_one_session_run_per_tick(multivariate: MultivariateDetector, fleet: Fleet) -> None:
    multivariate.session = S.CountingSession(multivariate.session)
    mon = Monitor(detectors=[multivariate])
    for t in range(40):
        mon.observe_columns(*fleet.columns(t))
    assert 1 <= multivariate.session.calls <= 40
    calls = multivariate.session.calls
    mon.observe_columns(*fleet.columns(40))
    assert multivariate.session.calls == calls + 1
    assert multivariate.session.rows >= 24


def test_bad_manifests(mv_artifact: LoadedArtifact, tmp_path: Path) -> None:
    import json

    base = json.loads((mv_artifact.path / "manifest.json").read_text())
    model = (mv_artifact.path / "model.onnx").read_bytes()

    def build(name: str, change) -> LoadedArtifact:  # type: ignore[no-untyped-def]
        m = json.loads(json.dumps(base))
        for k in ("files", "schema_version"):
            m.pop(k)
        change(m)
        return write_artifact(tmp_path / name, m, {"model": ("model.onnx", model)})

    with pytest.raises(OcadArtifactError, match="inputs.features"):
        MultivariateDetector.from_artifact(build("a", lambda m: m["inputs"].update(features=[])))
    with pytest.raises(OcadArtifactError, match="shape"):
        MultivariateDetector.from_artifact(build("b", lambda m: m["inputs"].update(
            features=m["inputs"]["features"][:-1], impute=None)))
    with pytest.raises(OcadArtifactError, match="not FeatureEngine features"):
        MultivariateDetector.from_artifact(build("c", lambda m: m["inputs"].update(
            features=["udp_echo_rtt_ms:bogus", *m["inputs"]["features"][1:]], impute=None)))
    with pytest.raises(OcadArtifactError, match="scale"):
        MultivariateDetector.from_artifact(build("d", lambda m: m["scaler"].update(
            scale=[0.0] * len(m["inputs"]["features"]))))


def test_blocks_bound_the_call_size_and_change_nothing(multivariate: MultivariateDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 700, multivariate.window)
    want = multivariate.score(view)
    inner, rows = multivariate.session, multivariate.block_rows
    try:
        multivariate.session, multivariate.block_rows = S.CountingSession(inner), 5
        got = multivariate.score(view)
        n = multivariate.session.rows
        assert n >= 10 and multivariate.session.calls == -(-n // 5)
    finally:
        multivariate.session, multivariate.block_rows = inner, rows
    # onnxruntime's tree ensemble sums in float32 in an order that depends on the batch size
    np.testing.assert_allclose(got.scores, want.scores, rtol=1e-6, atol=1e-7)
