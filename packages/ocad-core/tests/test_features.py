"""FeatureEngine (``ocad.core.pipeline._features``) against a slow per-endpoint numpy reference.

The engine works on float32 windows (the WindowStore's dtype) and is free to compute
in float32 where that is accurate enough, so the reference runs in float64 on the same
float32 samples and the tolerances are those of float32 arithmetic, scaled by the data.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import MetricKind, MetricSpec
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import ORAN_METRICS

ALPHA, K, ELEV = 0.3, 0.5, 4.0
# ORAN set plus a user gauge where *lower* is worse, to cover the direction of "elevated".
SPECS = (*ORAN_METRICS, MetricSpec("throughput_mbps", low=0.0, higher_is_worse=False))


def ref_features(x: np.ndarray, t: np.ndarray, spec: MetricSpec) -> dict[str, float]:
    """Features of one metric of one endpoint: ``x`` (W,) float32 with NaN, ``t`` (W,)."""
    x = x.astype(np.float64)
    ok = ~np.isnan(x)
    names = ["last", "mean", "std", "median", "scale", "p95", "p99", "ewma", "slope_per_s", "cusum_pos",
             "cusum_neg", "z_last"]
    if spec.kind is MetricKind.BOOLEAN:
        names += ["fail_run", "fail_rate"]
    elif spec.kind is MetricKind.COUNT:
        names += ["nonzero_run", "sum"]
    if not ok.any():
        return dict.fromkeys(names, math.nan)
    xv, tv = x[ok], t[ok]
    f: dict[str, float] = {"last": xv[-1], "mean": np.nanmean(x), "std": np.nanstd(x), "median": np.nanmedian(x),
                           "p95": np.nanpercentile(x, 95, method="linear"),
                           "p99": np.nanpercentile(x, 99, method="linear")}
    q25, q75 = np.nanpercentile(x, [25, 75])
    scale = max((q75 - q25) / 1.349, 0.01 * abs(f["median"]), 1e-6)
    f["scale"] = scale
    # Bias-corrected EWMA as a recursion (numerator and weight decay every slot, a NaN adds nothing):
    # pandas' ewm(alpha, adjust=True, ignore_na=False).
    num = den = 0.0
    for v in x:
        num *= 1 - ALPHA
        den *= 1 - ALPHA
        if not math.isnan(v):
            num += ALPHA * v
            den += ALPHA
    f["ewma"] = num / den
    if xv.size >= 2:
        f["slope_per_s"] = np.polyfit(tv - tv.mean(), xv, 1)[0]
    else:
        f["slope_per_s"] = math.nan
    sp = sn = 0.0
    for v in xv:
        z = (v - f["median"]) / scale
        sp = max(0.0, sp + z - K)
        sn = max(0.0, sn - z - K)
    f["cusum_pos"], f["cusum_neg"] = sp, sn
    f["z_last"] = (f["last"] - f["median"]) / scale
    if spec.kind is MetricKind.BOOLEAN:
        run = 0
        for v in xv[::-1]:
            if v >= 0.5:
                break
            run += 1
        f["fail_run"] = run
        f["fail_rate"] = float(np.mean(xv < 0.5))
    elif spec.kind is MetricKind.COUNT:
        run = 0
        for v in xv[::-1]:
            if v == 0:
                break
            run += 1
        f["nonzero_run"] = run
        f["sum"] = float(xv.sum())
    return f


def ref_concurrency(feats: list[dict[str, float]]) -> float:
    if all(math.isnan(f["last"]) for f in feats):
        return math.nan
    n = 0
    for spec, f in zip(SPECS, feats):
        if math.isnan(f["last"]):
            continue
        if spec.kind is MetricKind.BOOLEAN:
            n += f["fail_run"] >= 1
        elif spec.kind is MetricKind.COUNT:
            n += f["last"] > 0
        else:
            n += (f["z_last"] if spec.higher_is_worse else -f["z_last"]) > ELEV
    return float(n)


def tolerance(name: str, ref: dict[str, float], x: np.ndarray, t: np.ndarray) -> float:
    mag = 1.0 + float(np.nanmax(np.abs(x))) if not np.all(np.isnan(x)) else 1.0
    if name in ("cusum_pos", "cusum_neg", "z_last"):
        ok = ~np.isnan(x)
        zabs = np.abs((x[ok].astype(np.float64) - ref["median"]) / ref["scale"]).sum() + K * ok.sum()
        return 1e-5 * zabs + 1e-6
    if name == "slope_per_s":
        ok = ~np.isnan(x)
        span = float(np.ptp(t[ok])) if ok.sum() > 1 else 1.0
        return 1e-5 * mag / max(span, 1e-9)
    if name in ("fail_run", "nonzero_run"):
        return 0.0
    return 1e-6 * mag


@st.composite
def windows(draw):
    n = draw(st.integers(1, 4))
    w = draw(st.integers(1, 12))
    m = len(SPECS)
    values = np.full((n, w, m), np.nan, dtype=np.float32)
    ts = np.full((n, w), np.nan)
    for i in range(n):
        filled = draw(st.integers(0, w), label="filled")
        steps = draw(st.lists(st.sampled_from([1.0, 5.0, 5.0, 5.0, 7.5, 60.0, 3600.0]),
                              min_size=filled, max_size=filled))
        ts[i, w - filled:] = 1_767_225_600.0 + np.cumsum(steps)
        for j, spec in enumerate(SPECS):
            if spec.kind is MetricKind.BOOLEAN:
                elem = st.sampled_from([0.0, 1.0, 1.0, np.nan])
            elif spec.kind is MetricKind.COUNT:
                elem = st.sampled_from([0.0, 0.0, 1.0, 2.0, 7.0, np.nan])
            else:
                base = draw(st.sampled_from([0.0, 5.0, 250.0, 1.0e5]), label="level")
                elem = st.one_of(st.just(np.nan), st.just(base), st.floats(base, base * 1.5 + 10, width=32),
                                 st.floats(0, 1e4, width=32))
            if draw(st.booleans(), label="metric reported"):
                values[i, w - filled:, j] = draw(st.lists(elem, min_size=filled, max_size=filled))
    return values, ts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=windows())
def test_features_match_slow_reference(data):
    values, ts = data
    fe = FeatureEngine(SPECS, alpha=ALPHA, cusum_k=K, elevated_z=ELEV)
    v_before, t_before = values.copy(), ts.copy()
    ff = fe.compute(values, ts)
    assert ff.data.shape == (values.shape[0], len(fe.names))
    # the engine reads the WindowStore's arrays in place: it must never write to them
    np.testing.assert_array_equal(values, v_before)
    np.testing.assert_array_equal(ts, t_before)
    for i in range(values.shape[0]):
        feats = []
        for j, spec in enumerate(SPECS):
            x = values[i, :, j]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", RuntimeWarning)
                ref = ref_features(x, ts[i], spec)
            feats.append(ref)
            for name, want in ref.items():
                got = ff[f"{spec.name}:{name}"][i]
                where = f"endpoint {i} {spec.name}:{name} x={x.tolist()} t={ts[i].tolist()}"
                if math.isnan(want):
                    assert math.isnan(got), where
                else:
                    assert got == pytest.approx(want, rel=1e-4, abs=tolerance(name, ref, x, ts[i])), where
        want_c = ref_concurrency(feats)
        got_c = ff["concurrency"][i]
        assert (math.isnan(want_c) and math.isnan(got_c)) or got_c == want_c


def test_feature_names_per_kind():
    fe = FeatureEngine(SPECS)
    assert "lbm_success:fail_run" in fe.names and "lbm_success:nonzero_run" not in fe.names
    assert "ccm_miss_count:sum" in fe.names and "ccm_miss_count:fail_rate" not in fe.names
    assert "udp_echo_rtt_ms:p99" in fe.names and "udp_echo_rtt_ms:sum" not in fe.names
    assert fe.names[-1] == "concurrency"
    assert len(fe.names) == len(set(fe.names)) == 6 * 12 + 2 + 2 + 1


def test_all_nan_rows_give_nan_features_and_empty_batch():
    fe = FeatureEngine(SPECS)
    v = np.full((2, 6, len(SPECS)), np.nan, np.float32)
    v[1, -1, 0] = 3.0
    ff = fe.compute(v, np.tile(np.arange(6.0), (2, 1)))
    assert np.isnan(ff.data[0]).all()
    assert ff["udp_echo_rtt_ms:last"][1] == 3.0 and ff["concurrency"][1] == 0.0
    assert np.isnan(ff["ecpri_delay_us:mean"][1])
    empty = fe.compute(np.empty((0, 6, len(SPECS)), np.float32), np.empty((0, 6)))
    assert empty.data.shape == (0, len(fe.names))
    with pytest.raises(ValueError, match="metrics"):
        fe.compute(np.zeros((1, 6, 2), np.float32), np.zeros((1, 6)))


def test_slope_is_per_second_of_sample_time_despite_gaps():
    fe = FeatureEngine(ORAN_METRICS[:1])
    # 2 units per second on an irregular grid with a one-hour gap: slope is still 2
    t = np.array([[0.0, 5.0, 10.0, 3610.0, 3615.0]]) + 1_767_225_600.0
    v = (2.0 * (t - t[0, 0]))[..., None].astype(np.float32)
    assert fe.compute(v, t)["udp_echo_rtt_ms:slope_per_s"][0] == pytest.approx(2.0, rel=1e-5)


@pytest.mark.parametrize("x, t, want", [
    # valid samples far from the newest slot (the metric stopped reporting an hour ago)
    ([np.nan, 0.0, 1.0, np.nan], [1.0, 2.0, 3.0, 3603.0], 1.0),
    ([5.0, 5.5, np.nan, np.nan], [0.0, 0.5, 3600.0, 7200.0], 1.0),
    ([1000.25, 1000.5, 1000.75, np.nan], [0.0, 1.0, 2.0, 1800.0], 0.25),
    # one valid sample: no slope
    ([np.nan, np.nan, 5.0, np.nan], [1.0, 2.0, 3.3, 3603.0], math.nan),
])
def test_slope_is_exact_when_samples_sit_far_from_the_newest_slot(x, t, want):
    fe = FeatureEngine(ORAN_METRICS[:1])
    got = fe.compute(np.array(x, np.float32)[None, :, None],
                     np.array(t)[None] + 1_767_225_600.0)["udp_echo_rtt_ms:slope_per_s"][0]
    if math.isnan(want):
        assert math.isnan(got)
    else:
        assert got == pytest.approx(want, rel=1e-9)


def test_concurrency_counts_elevated_metrics():
    fe = FeatureEngine(SPECS)
    w = 10
    v = np.zeros((3, w, len(SPECS)), np.float32)
    v[:, :, :3] = 5.0 + 0.1 * np.arange(w)[None, :, None] % 0.3  # steady gauges
    v[:, :, 3] = 1.0  # lbm_success ok
    v[:, :, 5] = 100.0
    # endpoint 1: rtt spike, lbm failing at the end, ccm misses at the end, throughput collapse
    v[1, -1, 0] = 500.0
    v[1, -2:, 3] = 0.0
    v[1, -1, 4] = 3.0
    v[1, -1, 5] = 1.0
    # endpoint 2: rtt *drop* (not bad: higher is worse) and throughput *rise* (not bad)
    v[2, -1, 0] = 0.001
    v[2, -1, 5] = 1000.0
    ff = fe.compute(v, np.tile(np.arange(w) * 5.0, (3, 1)))
    assert ff["concurrency"].tolist() == [0.0, 4.0, 0.0]
    assert ff["lbm_success:fail_run"][1] == 2.0
    assert ff["ccm_miss_count:nonzero_run"][1] == 1.0 and ff["ccm_miss_count:sum"][1] == 3.0


def test_runs_skip_missing_samples():
    fe = FeatureEngine(ORAN_METRICS)
    v = np.full((1, 6, 5), np.nan, np.float32)
    v[0, :, 3] = [1, 0, np.nan, 0, np.nan, 0]
    v[0, :, 4] = [0, 2, 1, np.nan, 4, np.nan]
    ff = fe.compute(v, np.arange(6.0)[None])
    assert ff["lbm_success:fail_run"][0] == 3.0
    assert ff["lbm_success:fail_rate"][0] == pytest.approx(3 / 4)
    assert ff["ccm_miss_count:nonzero_run"][0] == 3.0 and ff["ccm_miss_count:sum"][0] == 7.0
    assert ff["ccm_miss_count:last"][0] == 4.0


def test_ewma_matches_pandas_adjusted_ewm():
    pd = pytest.importorskip("pandas")
    x = np.array([3.0, np.nan, 5.0, 4.0, np.nan, np.nan, 9.0, 1.0], np.float32)
    fe = FeatureEngine(ORAN_METRICS[:1], alpha=ALPHA)
    got = fe.compute(x[None, :, None], np.arange(8.0)[None])["udp_echo_rtt_ms:ewma"][0]
    want = pd.Series(x.astype(np.float64)).ewm(alpha=ALPHA, adjust=True, ignore_na=False).mean().iloc[-1]
    assert got == pytest.approx(want, rel=1e-6)
