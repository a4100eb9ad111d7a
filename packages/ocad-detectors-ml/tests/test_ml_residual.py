"""ResidualDetector on synthetic mean-forecaster artifacts: numbers, calibration, missing data, batching."""

from __future__ import annotations

from pathlib import Path

import ml_synth as S
import numpy as np
import pytest
from ml_synth import GAUGES, W

from ocad.core import Monitor, OcadArtifactError
from ocad.core.artifacts import LoadedArtifact
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import DetectorView
from ocad.core.tooling import Fleet
from ocad.detectors_ml import Forecaster, ResidualDetector
from ocad.detectors_ml._residual import BLOCK_ROWS


def _with_values(view: DetectorView, values: np.ndarray) -> DetectorView:
    feats = FeatureEngine(S.MetricRegistry(S.ORAN_METRICS)).compute(values, view.ts)
    return DetectorView(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                        capabilities=view.capabilities, features=feats, counts=view.counts)


@pytest.fixture(scope="module")
def fitted(fleet: Fleet, tmp_path_factory: pytest.TempPathFactory) -> ResidualDetector:
    """Forecasters fitted (scaler + calibration) on the first hour, like a validation split."""
    root = tmp_path_factory.mktemp("fitted")
    arts = [S.write_forecaster(root / m, S.fitted_forecaster_manifest(fleet, m, W, range(W, 720)))
            for m in GAUGES]
    return ResidualDetector.from_artifacts(arts)


def test_window_and_metrics(residual: ResidualDetector) -> None:
    assert residual.metrics == GAUGES
    assert residual.window == W + 1  # W inputs before the newest sample, plus the newest
    assert residual.name == "residual" and residual.kind == "residual"


def test_raw_score_is_the_manifest_formula(residual: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 900, residual.window)
    raw, obs, exp = residual.raw(view)
    fc = residual.forecasters[0]
    j = view.metric_index(fc.metric)
    x = view.values[:, :-1, j].astype(np.float64)
    y = view.values[:, -1, j].astype(np.float64)
    ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
    assert ok.sum() >= 20
    yhat = x.mean(axis=1)  # the synthetic model forecasts the window mean
    want = np.maximum(y - yhat, 0.0) / (fc.relative_rms * np.maximum(np.abs(yhat), fc.level_floor))
    np.testing.assert_allclose(raw[ok, 0], want[ok], rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(obs[ok, 0], y[ok])
    np.testing.assert_allclose(exp[ok, 0], yhat[ok], rtol=1e-6)


def test_spike_scores_high_normal_low(fitted: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 1500, fitted.window)
    j = view.metric_index("udp_echo_rtt_ms")
    values = view.values.copy()
    values[3, -1, j] *= 3.0  # the newest RTT of one endpoint triples
    out = fitted.score(_with_values(view, values))
    assert out.metric_scores is not None and out.observed is not None and out.expected is not None
    assert out.scores[3] > 0.999
    assert out.metric_scores[3, 0] > 0.999
    assert out.observed[3, 0] == pytest.approx(float(values[3, -1, j]))
    assert out.expected[3, 0] == pytest.approx(float(np.nanmean(values[3, :-1, j])), rel=1e-5)
    others = np.delete(out.scores, 3)
    assert np.nanmedian(others) < 0.8


def test_calibrated_false_alarm_rate_on_held_out_normal_data(fitted: ResidualDetector, fleet: Fleet) -> None:
    # Fitted on ticks < 720, judged on ticks 900..2100: per metric, P(score > 0.99) ~ 1 %.
    ms = np.concatenate([fitted.score(S.view_at(fleet, t, fitted.window)).metric_scores
                         for t in range(900, 2100, 5)])
    far = np.nanmean(ms > 0.99, axis=0)
    assert np.all((far > 0.002) & (far < 0.03)), far
    # The Šidák step keeps the endpoint score's rate near the per-metric one (max of 3 would triple it).
    s = np.concatenate([fitted.score(S.view_at(fleet, t, fitted.window)).scores for t in range(900, 2100, 5)])
    assert 0.002 < np.nanmean(s > 0.99) < 0.03


def test_sidak_then_fitted_overall(fitted: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 1200, fitted.window)
    out = fitted.score(view)
    ms = out.metric_scores
    k = np.isfinite(ms).sum(axis=1)
    want = np.where(k > 0, np.nanmax(np.where(np.isnan(ms), -1, ms), axis=1) ** np.maximum(k, 1), np.nan)
    np.testing.assert_allclose(out.scores, want)
    det = ResidualDetector(forecasters=fitted.forecasters)
    det.fit([S.view_at(fleet, t, det.window) for t in range(40, 700, 3)])
    assert det.overall_ is not None
    params = det.params_to_dict()
    other = ResidualDetector(forecasters=fitted.forecasters)
    other.load_params(params)
    np.testing.assert_array_equal(other.score(view).scores, det.score(view).scores)
    other.load_params({**params, "sources": ["tcn-other@9.9.9"]})  # fitted for other models: ignored
    assert other.overall_ is None


def test_missing_data_cannot_be_judged(residual: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 800, residual.window)
    j = view.metric_index("udp_echo_rtt_ms")
    values = view.values.copy()
    caps = view.capabilities.copy()
    ok = np.flatnonzero(np.isfinite(values[:, :, j]).all(axis=1))[:5]
    a, b, c, d, e = ok
    values[a, :, j] = np.nan          # lacks the metric
    caps[a, j] = False
    values[b, -1, j] = np.nan         # newest sample lost: a filled value is never a target
    values[c, 5:8, j] = np.nan        # 3 missing in a row > fill limit 2: window skipped
    values[d, 5:7, j] = np.nan        # 2 missing in a row: forward filled, judged
    values[e, 0, j] = np.nan          # first sample missing: nothing to fill it from
    v = DetectorView(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                     capabilities=caps, features=view.features, counts=view.counts)
    raw = residual.raw(v)[0][:, 0]
    assert np.isnan(raw[[a, b, c, e]]).all()
    assert np.isfinite(raw[d])
    x = values[d, :-1, j].copy()
    x[5:7] = x[4]
    fc = residual.forecasters[0]
    want = max(values[d, -1, j] - x.mean(), 0) / (fc.relative_rms * max(abs(x.mean()), fc.level_floor))
    assert raw[d] == pytest.approx(want, rel=1e-5)
    # Other metrics of the same endpoints are still judged.
    assert np.isfinite(residual.raw(v)[0][a, 1:]).any()


def test_short_view_cannot_be_judged(residual: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 800, W)  # one sample too few for x + y
    assert np.isnan(residual.score(view).scores).all()


def test_one_session_run_per_metric_per_tick(residual: ResidualDetector, fleet: Fleet) -> None:
    for fc in residual.forecasters:
        fc.session = S.CountingSession(fc.session)
    view = S.view_at(fleet, 1000, residual.window)
    residual.score(view)
    assert [fc.session.calls for fc in residual.forecasters] == [1, 1, 1]
    n_judged = np.isfinite(residual.raw(view)[0]).sum(axis=0)
    assert [fc.session.rows for fc in residual.forecasters] == [2 * int(k) for k in n_judged]

    # Through a Monitor: every tick of 24 endpoints is one call per metric.
    for fc in residual.forecasters:
        fc.session = S.CountingSession(fc.session.inner)
    mon = Monitor(detectors=[residual])
    ticks = 40
    for t in range(ticks):
        mon.observe_columns(*fleet.columns(t))
    calls = [fc.session.calls for fc in residual.forecasters]
    assert all(ticks - residual.window <= c <= ticks for c in calls), calls


def test_lower_is_worse_metric_flips_the_sign(fleet: Fleet, tmp_path: Path) -> None:
    m = S.forecaster_manifest("udp_echo_rtt_ms", W)
    m["inputs"]["higher_is_worse"] = False
    det = ResidualDetector.from_artifacts([S.write_forecaster(tmp_path / "a", m)])
    view = S.view_at(fleet, 700, det.window)
    values = view.values.copy()
    values[0, -1, 0] *= 0.3  # a drop is the bad direction now
    values[1, -1, 0] *= 3.0  # a rise is not
    raw = det.raw(_with_values(view, values))[0][:, 0]
    assert raw[0] > 5 and raw[1] == 0.0


@pytest.mark.parametrize("change, message", [
    (lambda m: m["scaler"].pop("relative_rms"), "scaler.relative_rms"),
    (lambda m: m["scaler"].update(type="standard"), "residual"),
    (lambda m: m["inputs"].update(fill_policy={"method": "interpolate"}), "fill_policy.method"),
    (lambda m: m["inputs"].update(window=W + 4), "shape"),
    (lambda m: m["inputs"].update(input_name="values"), "manifest names"),
    (lambda m: m["inputs"].update(metrics=["a", "b"]), "exactly one metric"),
    (lambda m: m.update(calibration={"probs": [0, 1]}), "calibration"),
])
def test_bad_manifest_is_an_artifact_error(change, message: str,  # type: ignore[no-untyped-def]
                                           tmp_path: Path) -> None:
    m = S.forecaster_manifest("udp_echo_rtt_ms", W)
    change(m)
    art = S.write_forecaster(tmp_path / "bad", m, window=W)
    with pytest.raises(OcadArtifactError, match=message):
        Forecaster.from_artifact(art)


def test_file_changed_after_verification_is_refused(forecaster_artifacts: list[LoadedArtifact],
                                                    tmp_path: Path) -> None:
    import shutil

    shutil.copytree(forecaster_artifacts[0].path, tmp_path / "a")
    art = S.load_artifact(tmp_path / "a")
    (tmp_path / "a" / "model.onnx").write_bytes(S.mean_forecaster_onnx(W + 1))
    with pytest.raises(OcadArtifactError, match="changed after it was verified"):
        Forecaster.from_artifact(art)


def test_blocks_bound_the_call_size_and_change_nothing(residual: ResidualDetector, fleet: Fleet) -> None:
    view = S.view_at(fleet, 1000, residual.window)
    want = residual.score(view)
    n_judged = np.isfinite(residual.raw(view)[0]).sum(axis=0)
    try:
        for fc in residual.forecasters:
            fc.session = S.CountingSession(fc.session)
            fc.block_rows = 7
        got = residual.score(view)
        for fc, k in zip(residual.forecasters, n_judged):
            assert fc.session.calls == -(-int(k) // 7) and fc.session.rows == int(k)
    finally:
        for fc in residual.forecasters:
            fc.session, fc.block_rows = fc.session.inner, BLOCK_ROWS
    np.testing.assert_array_equal(got.scores, want.scores)
    np.testing.assert_array_equal(got.expected, want.expected)
