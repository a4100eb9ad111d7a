"""PELT against ruptures, and the changepoint (drift) detector on synthetic fleets."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocad.core import MetricSpec, OcadConfigError
from ocad.core.plugins import Detector, DetectorView, FeatureFrame
from ocad.core.detectors import ChangepointDetector, pelt, pelt_last_change
from ocad.core._metrics import ORAN_METRICS

rpt = pytest.importorskip("ruptures")

# ---------------------------------------------------------------------------
# PELT
# ---------------------------------------------------------------------------


def reference(x: np.ndarray, pen: float, min_size: int = 2, jump: int = 1) -> list[int]:
    return rpt.Pelt(model="l2", min_size=min_size, jump=jump).fit(x).predict(pen=pen)


def piecewise(seed: int, segments: list[tuple[int, float]], noise: float) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.full(n, mean) for n, mean in segments])
    return x + noise * rng.standard_normal(x.size)


segments_st = st.lists(
    st.tuples(st.integers(2, 30), st.floats(-10, 10, allow_nan=False)), min_size=1, max_size=6
)


@settings(max_examples=40, deadline=None)
@given(
    segments=segments_st,
    noise=st.floats(0.1, 2.0),
    seed=st.integers(0, 2**32 - 1),
    pen_factor=st.sampled_from([0.5, 1.0, 2.0, 3.0, 6.0]),
)
def test_pelt_matches_ruptures_on_noisy_piecewise_constant(segments, noise, seed, pen_factor):
    x = piecewise(seed, segments, noise)
    pen = pen_factor * math.log(x.size) * noise**2
    assert pelt(x, pen) == reference(x, pen)


@settings(max_examples=40, deadline=None)
@given(
    segments=st.lists(st.tuples(st.integers(1, 20), st.integers(-3, 3)), min_size=1, max_size=5),
    seed=st.integers(0, 2**32 - 1),
    pen=st.sampled_from([0.0, 0.5, 1.0, 2.0, 4.0]),
)
def test_pelt_matches_ruptures_on_integer_data_with_ties(segments, seed, pen):
    # Integer values make different segmentations cost exactly the same: the
    # choice then depends on ruptures' rounding, which pelt() reproduces.
    rng = np.random.default_rng(seed)
    x = np.concatenate([np.full(n, float(m)) for n, m in segments])
    x += rng.integers(-1, 2, x.size)
    if x.size < 2:
        return
    assert pelt(x, pen) == reference(x, pen)


@pytest.mark.parametrize(
    ("segments", "noise", "pen", "min_size", "jump"),
    [
        ([(50, 0.0), (50, 3.0)], 1.0, 10.0, 2, 1),
        ([(30, 0.0), (2, 8.0), (30, 0.0)], 0.5, 3.0, 2, 1),  # a 2-sample segment
        ([(100, 1.0)], 1.0, 2 * math.log(100), 2, 1),  # no change
        ([(20, 0.0), (20, -4.0), (20, 2.0), (20, 2.5)], 0.7, 5.0, 2, 1),
        ([(40, 0.0), (33, 5.0)], 1.0, 8.0, 5, 1),
        ([(41, 0.0), (33, 5.0), (7, -2.0)], 1.0, 4.0, 2, 5),  # jump and a ragged end
        ([(41, 0.0), (33, 5.0)], 1.0, 4.0, 1, 3),
    ],
)
def test_pelt_matches_ruptures_fixed_cases(segments, noise, pen, min_size, jump):
    x = piecewise(7, segments, noise)
    assert pelt(x, pen, min_size=min_size, jump=jump) == reference(x, pen, min_size, jump)


def test_pelt_multivariate_matches_ruptures():
    rng = np.random.default_rng(3)
    x = np.r_[rng.normal(0, 1, (40, 3)), rng.normal([4, 0, -3], 1, (30, 3))]
    assert pelt(x, 10.0) == reference(x, 10.0) == [40, 70]


def test_pelt_breakpoint_convention():
    x = np.r_[np.zeros(10), np.full(10, 5.0)] + np.tile([0.1, -0.1], 10)
    assert pelt(x, 3.0) == [10, 20]
    assert pelt(np.zeros(5), 1.0) == [5]


@pytest.mark.parametrize(
    ("signal", "kwargs"),
    [
        (np.zeros(1), {}),  # fewer samples than min_size (ruptures raises too)
        (np.array([0.0, np.nan, 1.0]), {}),
        (np.zeros(10), {"penalty": -1.0}),
        (np.zeros(10), {"penalty": float("nan")}),
        (np.zeros(10), {"min_size": 0}),
        (np.zeros((2, 2, 2)), {}),
    ],
)
def test_pelt_rejects_bad_input(signal, kwargs):
    args = {"penalty": 1.0, **kwargs}
    with pytest.raises(ValueError):
        pelt(signal, args.pop("penalty"), **args)


def _last_change_via_pelt(row: np.ndarray, pen: float) -> int:
    idx = np.flatnonzero(~np.isnan(row))
    if idx.size < 4:
        return -1
    bkps = pelt(row[idx], pen)
    return int(idx[bkps[-2]]) if len(bkps) > 1 else -1


def test_pelt_last_change_equals_pelt_on_rows_without_their_nans():
    rng = np.random.default_rng(11)
    n, w = 400, 32
    rows = rng.standard_normal((n, w))
    rows[:, 20:] += rng.choice([0.0, 1.5, 4.0], size=(n, 1))
    rows[rng.random((n, w)) < rng.uniform(0, 0.5, (n, 1))] = np.nan
    got = pelt_last_change(rows, 2 * math.log(w))
    want = [_last_change_via_pelt(r, 2 * math.log(w)) for r in rows]
    assert got.tolist() == want
    found = got[~np.isnan(rows[:, 20])]
    assert np.mean(found >= 0) > 0.4  # the test is not vacuous: many rows have a change


def test_pelt_last_change_exact_ties_matches_ruptures():
    rng = np.random.default_rng(12)
    rows = rng.integers(-1, 2, (200, 24)).astype(float)
    rows[:, 14:] += rng.integers(0, 3, (200, 1))
    rows[rng.random(rows.shape) < 0.1] = np.nan
    got = pelt_last_change(rows, 2.0, exact_ties=True)
    want = []
    for r in rows:
        v = np.flatnonzero(~np.isnan(r))
        b = reference(r[v], 2.0)
        want.append(int(v[b[-2]]) if len(b) > 1 else -1)
    assert got.tolist() == want


def test_pelt_last_change_edge_cases():
    rows = np.array([
        [0.0, 0.1, -0.1, 0.0, 5.0, 5.1, 4.9, 5.0],
        [0.0, 0.1, -0.1, 0.0, 0.1, 0.0, -0.1, 0.0],  # no change
        [np.nan] * 5 + [1.0, 9.0, 9.0],  # too few samples
        [np.nan, 0.0, 0.1, np.nan, -0.1, 5.0, 5.1, 5.0],  # NaNs dropped, positions kept
    ])
    assert pelt_last_change(rows, 3.0).tolist() == [4, -1, -1, 5]
    assert pelt_last_change(np.empty((0, 8)), 3.0).shape == (0,)
    assert pelt_last_change(np.zeros((3, 3)), 3.0).tolist() == [-1, -1, -1]


# ---------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------

METRICS = ("udp_echo_rtt_ms", "lbm_rtt_ms")
W = 40  # the view is longer than the detector's window (32): it must use the newest 32


def make_view(values: np.ndarray, metrics: tuple[str, ...] = METRICS, capabilities=None) -> DetectorView:
    n, w, m = values.shape
    caps = np.ones((n, m), dtype=bool) if capabilities is None else capabilities
    return DetectorView(
        endpoints=np.array([f"ep{i}" for i in range(n)], dtype=object),
        metrics=metrics,
        values=values.astype(np.float32),
        ts=np.tile(np.arange(w, dtype=np.float64) * 5.0, (n, 1)),
        capabilities=caps,
        features=FeatureFrame(names=(), data=np.empty((n, 0))),
        counts=np.full(n, w, dtype=np.int64),
    )


def fleet(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Normal windows of a heterogeneous fleet: each endpoint its own level and noise."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(1.0, 20.0, (n, 1, len(METRICS)))
    sd = level * rng.uniform(0.05, 0.15, (n, 1, len(METRICS)))
    return level + sd * rng.standard_normal((n, W, len(METRICS))), sd


@pytest.fixture(scope="module")
def fitted() -> ChangepointDetector:
    return ChangepointDetector(METRICS).fit(make_view(fleet(3000, seed)[0]) for seed in (1, 2, 3))


@pytest.fixture(scope="module")
def normal() -> tuple[np.ndarray, np.ndarray]:
    return fleet(6000, 99)


def test_is_a_detector_with_documented_defaults():
    det = ChangepointDetector(METRICS)
    assert isinstance(det, Detector)
    assert (det.name, det.kind, det.window, det.baseline, det.k) == ("changepoint", "drift", 32, 16, 0.5)
    assert det.pelt_penalty == pytest.approx(3 * math.log(32))


def test_fit_sets_scale_floor_and_calibration(fitted, normal):
    assert set(fitted.scale_floor_) == set(METRICS)
    assert set(fitted.calibrations_) == set(METRICS) and fitted.overall_ is not None
    # A quarter of the median endpoint's noise (fleet sd ~ 0.1 x U(1, 20)).
    assert all(0.1 < f < 0.5 for f in fitted.scale_floor_.values())


def test_false_alarm_rate_is_near_nominal(fitted, normal):
    out = fitted.score(make_view(normal[0])).check(normal[0].shape[0])
    s = out.scores
    assert not np.any(np.isnan(s))
    far = float(np.mean(s > 0.99))
    assert 0.002 <= far <= 0.03, far
    assert float(np.mean(s > 0.999)) <= 0.005


def shifted(values: np.ndarray, sd: np.ndarray, sigmas: float, metric: int = 0) -> np.ndarray:
    v = values.copy()
    start = W - 32 // 3  # the last third of the detector's window
    v[:, start:, metric] += sigmas * sd[:, :, metric]
    return v


def test_mean_shift_of_four_sigma_is_detected_with_evidence(fitted, normal):
    values, sd = normal
    out = fitted.score(make_view(shifted(values, sd, 4.0))).check(values.shape[0])
    assert np.mean(out.scores > 0.99) >= 0.95
    k = out.metrics.index("udp_echo_rtt_ms")
    assert np.mean(out.observed[:, k] > out.expected[:, k]) >= 0.99
    assert np.mean(np.array([out.top_metric(i) for i in range(100)]) == k) >= 0.95
    # PELT evidence measures the step itself: before/after means ~4 sigma apart.
    step = (out.observed[:, k] - out.expected[:, k]) / sd[:, 0, k]
    assert np.median(step) == pytest.approx(4.0, abs=0.3)


def test_gradual_ramp_is_detected(fitted, normal):
    values, sd = normal
    # From the middle of the window, a linear rise to +5 sigma at the newest sample.
    ramp = np.clip((np.arange(W) - (W - 16)) / 16, 0.0, None)
    v = values.copy()
    v[:, :, 1] += 5.0 * sd[:, :, 1] * ramp
    out = fitted.score(make_view(v))
    assert np.mean(out.scores > 0.99) >= 0.9
    k = out.metrics.index("lbm_rtt_ms")
    assert np.mean(out.observed[:, k] > out.expected[:, k]) >= 0.99


def test_a_single_spike_is_not_drift(fitted, normal):
    values, sd = normal
    v = values.copy()
    v[:, -1, 0] += 30.0 * sd[:, 0, 0]
    assert np.mean(fitted.score(make_view(v)).scores > 0.99) <= 0.03


def test_lower_is_worse_metrics_alarm_on_decrease_only(normal):
    values, sd = normal
    det = ChangepointDetector(METRICS, lower_is_worse=("lbm_rtt_ms",))
    det.fit([make_view(values[:3000])])
    test, tsd = values[3000:], sd[3000:]
    down = det.score(make_view(shifted(test, tsd, -4.0, metric=1)))
    up = det.score(make_view(shifted(test, tsd, 4.0, metric=1)))
    assert np.mean(down.scores > 0.99) >= 0.95
    assert np.mean(up.scores > 0.99) <= 0.03
    assert np.mean(down.observed[:, 1] < down.expected[:, 1]) >= 0.99


def test_flat_baseline_does_not_magnify_tiny_wiggles(fitted):
    # An endpoint that sat on one value, then moves by a hundredth of the fleet's noise.
    v = np.full((50, W, 2), 10.0)
    v[:, -8:, 0] += 0.01 * np.random.default_rng(0).standard_normal((50, 8)) + 0.01
    assert np.all(fitted.score(make_view(v)).scores < 0.99)


def test_missing_metrics_and_short_history_give_nan(fitted, normal):
    values = normal[0][:6].copy()
    caps = np.ones((6, 2), dtype=bool)
    caps[0, 0] = False  # does not report udp_echo_rtt_ms
    values[0, :, 0] = np.nan
    caps[1, :] = False  # reports nothing
    values[1] = np.nan
    values[2, :-10, :] = np.nan  # 10 samples of 32: too few
    values[3, -32:-16, :] = np.nan  # nothing in the baseline
    out = fitted.score(make_view(values, capabilities=caps)).check(6)
    assert np.isnan(out.metric_scores[0, 0]) and not np.isnan(out.metric_scores[0, 1])
    assert not np.isnan(out.scores[0])
    assert np.all(np.isnan(out.metric_scores[1:4])) and np.all(np.isnan(out.scores[1:4]))
    assert np.all(np.isnan(out.observed[1:4])) and np.all(np.isnan(out.expected[1:4]))
    assert np.all(np.isfinite(out.scores[4:]))


def test_metric_absent_from_the_view_gives_nan_column(fitted, normal):
    view = make_view(normal[0][:20, :, :1], metrics=("udp_echo_rtt_ms",))
    out = fitted.score(view).check(20)
    assert out.metrics == METRICS
    assert np.all(np.isnan(out.metric_scores[:, 1])) and np.all(np.isfinite(out.scores))


def test_view_shorter_than_window(fitted, normal):
    out = fitted.score(make_view(normal[0][:50, -20:])).check(50)
    assert np.all(np.isfinite(out.scores))


def test_unfitted_detector_gives_usable_scores(normal):
    values, sd = normal
    det = ChangepointDetector(METRICS)
    quiet = det.score(make_view(values)).check(values.shape[0]).scores
    loud = det.score(make_view(shifted(values, sd, 4.0))).scores
    assert np.mean(quiet > 0.99) <= 0.05
    assert np.mean(loud > 0.99) >= 0.9


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    nan_rate=st.floats(0.0, 0.9),
    scale=st.sampled_from([1e-6, 1.0, 1e6]),
    shift=st.floats(-1e3, 1e3),
)
def test_scores_are_in_unit_interval_or_nan(fitted, seed, nan_rate, scale, shift):
    rng = np.random.default_rng(seed)
    v = shift + scale * rng.standard_normal((30, W, 2))
    v[rng.random(v.shape) < nan_rate] = np.nan
    v[:5] = 7.0  # constant windows
    caps = rng.random((30, 2)) < 0.8
    v[~np.repeat(caps[:, None, :], W, axis=1)] = np.nan
    out = fitted.score(make_view(v, capabilities=caps)).check(30)
    s = out.scores[~np.isnan(out.scores)]
    assert np.all((s >= 0) & (s <= 1))
    assert np.all(np.isnan(out.scores[~caps.any(axis=1)]))


def test_params_round_trip_through_json(fitted, normal):
    values, sd = normal
    view = make_view(shifted(values[:500], sd[:500], 2.0))
    d = json.loads(json.dumps(fitted.params_to_dict()))
    for det in (ChangepointDetector.from_params(d), ChangepointDetector(METRICS).load_params(d)):
        assert det.scale_floor_ == fitted.scale_floor_
        a, b = fitted.score(view), det.score(view)
        np.testing.assert_array_equal(a.scores, b.scores)
        np.testing.assert_array_equal(a.observed, b.observed)


def test_load_params_refuses_another_configuration(fitted):
    d = json.loads(json.dumps(fitted.params_to_dict()))
    with pytest.raises(OcadConfigError, match="window"):
        ChangepointDetector(METRICS, window=48).load_params(d)
    with pytest.raises(OcadConfigError, match="format"):
        ChangepointDetector(METRICS).load_params({**d, "format": "other/1"})


@pytest.mark.parametrize(
    "kwargs",
    [
        {"window": 4},
        {"window": 32, "baseline_window": 31},
        {"k": -1.0},
        {"penalty": 0.0},
        {"pelt_level": 1.5},
        {"lower_is_worse": ("not_a_metric",)},
    ],
)
def test_bad_configuration_is_a_config_error(kwargs):
    with pytest.raises(OcadConfigError):
        ChangepointDetector(METRICS, **kwargs)


def test_from_specs_takes_gauges_and_their_direction():
    specs = (*ORAN_METRICS, MetricSpec("throughput_mbps", unit="Mbit/s", higher_is_worse=False))
    det = ChangepointDetector.from_specs(specs, window=24)
    assert det.metrics == ("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms", "throughput_mbps")
    assert det.lower_is_worse == ("throughput_mbps",)
    assert det.window == 24
