"""Tests of the seeded synthetic fleet generator (ocad.core.tooling._synthetic)."""

from __future__ import annotations

import csv
import doctest
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core.tooling import _synthetic
from ocad.core._errors import OcadConfigError, OcadDependencyError
from ocad.core._metrics import ORAN_METRICS
from ocad.core.tooling import FAULT_TYPES, FaultEvent, Fleet, generate_fleet

METRICS = tuple(s.name for s in ORAN_METRICS)
U, E, L, S, C = range(5)
GAP_S = 600.0
WARMUP_S = 1800.0


@pytest.fixture(scope="module")
def big() -> Fleet:
    # Long and wide enough for every fault type; ~0.1 s to generate.
    return generate_fleet(n_endpoints=120, duration_s=12 * 3600, seed=7)


@pytest.fixture(scope="module")
def small() -> Fleet:
    return generate_fleet(n_endpoints=10, duration_s=3 * 3600, seed=11)


def _tick_range(fleet: Fleet, ev: FaultEvent) -> np.ndarray:
    return np.flatnonzero((fleet.ts >= ev.start_ts) & (fleet.ts <= ev.end_ts))


def _row(fleet: Fleet, endpoint_id: str) -> int:
    return list(fleet.endpoint_ids()).index(endpoint_id)


# -- determinism, shapes ------------------------------------------------------


def test_same_arguments_give_identical_fleets() -> None:
    a = generate_fleet(n_endpoints=20, duration_s=4 * 3600, seed=42)
    b = generate_fleet(n_endpoints=20, duration_s=4 * 3600, seed=42)
    assert np.array_equal(a.values, b.values, equal_nan=True)
    assert np.array_equal(a.labels, b.labels)
    assert np.array_equal(a.ts, b.ts)
    assert a.events == b.events and a.endpoints == b.endpoints
    c = generate_fleet(n_endpoints=20, duration_s=4 * 3600, seed=43)
    assert not np.array_equal(a.values, c.values, equal_nan=True)


def test_shapes_and_dtypes(small: Fleet) -> None:
    e, t = 10, 3 * 3600 // 5
    assert small.metrics == METRICS
    assert small.values.shape == (e, t, 5) and small.values.dtype == np.float32
    assert small.labels.shape == (e, t) and small.labels.dtype == np.int8
    assert small.ts.shape == (t,) and small.ts.dtype == np.float64
    assert small.ts[0] == 1_767_225_600.0
    assert np.all(np.diff(small.ts) == 5.0)
    ids = small.endpoint_ids()
    assert ids.shape == (e,) and ids.dtype == object and len(set(ids)) == e
    assert small.seed == 11 and small.interval_s == 5.0


def test_faults_do_not_change_the_normal_background() -> None:
    # Separate random streams: the clean fleet equals the faulty one outside faults.
    kw = dict(n_endpoints=24, duration_s=6 * 3600, seed=5)
    faulty, clean = generate_fleet(**kw), generate_fleet(**kw, faults=False)
    assert not clean.events and not clean.labels.any()
    assert faulty.events
    normal = faulty.labels == 0
    assert np.array_equal(faulty.values[normal], clean.values[normal], equal_nan=True)
    assert not np.array_equal(faulty.values, clean.values, equal_nan=True)


# -- endpoints, capabilities, ranges ----------------------------------------------


def test_roles_capabilities_and_baselines(big: Fleet) -> None:
    roles = {ep.role for ep in big.endpoints}
    assert roles == {"o-ru", "o-du", "transport"}
    caps_by_role: dict[str, set[tuple[str, ...]]] = {}
    for i, ep in enumerate(big.endpoints):
        caps_by_role.setdefault(ep.role, set()).add(ep.capabilities)
        assert ep.endpoint_id.startswith(ep.site + "-")
        assert set(ep.baselines) == set(ep.capabilities)
        assert 2.0 <= ep.baselines["udp_echo_rtt_ms"] <= 15.0
        if "ecpri_delay_us" in ep.capabilities:
            assert 20.0 <= ep.baselines["ecpri_delay_us"] <= 120.0
        if "lbm_rtt_ms" in ep.capabilities:
            ratio = ep.baselines["lbm_rtt_ms"] / ep.baselines["udp_echo_rtt_ms"]
            assert 2.0 <= ep.baselines["lbm_rtt_ms"] <= 15.0 and 0.6 < ratio < 1.6
        for j, m in enumerate(METRICS):
            col = big.values[i, :, j]
            if m in ep.capabilities:
                # Present except lost samples (and LBM RTT of failed loopbacks).
                limit = 0.2 if m == "lbm_rtt_ms" else 0.02
                assert np.isnan(col).mean() < limit, (ep.endpoint_id, m)
            else:
                assert np.isnan(col).all(), (ep.endpoint_id, m)
    assert all("ecpri_delay_us" not in c for c in caps_by_role["transport"])
    assert caps_by_role["o-du"] == {METRICS}
    assert len(caps_by_role["o-ru"]) == 2  # some O-RUs have no LBM
    assert any("lbm_success" not in c for c in caps_by_role["o-ru"])


def _assert_valid_ranges(fleet: Fleet) -> None:
    v = fleet.values
    for j in (U, E, L):
        g = v[:, :, j]
        assert np.all(g[~np.isnan(g)] > 0)
    lbm = v[:, :, S]
    assert set(np.unique(lbm[~np.isnan(lbm)]).tolist()) <= {0.0, 1.0}
    ccm = v[:, :, C]
    ccm = ccm[~np.isnan(ccm)]
    assert np.all(ccm >= 0) and np.all(ccm == np.round(ccm))
    # A failed loopback has no reply, hence no RTT.
    assert np.isnan(v[:, :, L][lbm == 0]).all()


def test_value_ranges(big: Fleet) -> None:
    _assert_valid_ranges(big)
    normal = big.normal_mask()
    udp = big.values[:, :, U][normal]
    # baseline 2-15 ms x diurnal (1 +- 0.25) x noise, plus benign blips of < 6 sigma
    assert 2.0 * 0.6 < np.nanmin(udp) and np.nanmax(udp) < 15.0 * 2.5
    # Healthy endpoints: LBM almost always succeeds, CCM almost never misses.
    assert np.nanmean(big.values[:, :, S][normal]) > 0.999
    assert np.nanmean(big.values[:, :, C][normal]) < 0.002


def test_missing_rate_is_honoured() -> None:
    f = generate_fleet(n_endpoints=30, duration_s=6 * 3600, seed=3, missing_rate=0.01, faults=False)
    nan_udp = np.isnan(f.values[:, :, U]).mean()
    assert 0.007 < nan_udp < 0.013
    assert not f.labels.any()  # lost samples are not faults
    clean = generate_fleet(n_endpoints=30, duration_s=3600, seed=3, missing_rate=0.0, faults=False)
    assert not np.isnan(clean.values[:, :, U]).any()


def test_diurnal_load_modulates_rtt() -> None:
    flat = generate_fleet(n_endpoints=12, duration_s=86_400, interval_s=60, seed=2,
                          faults=False, diurnal_amplitude=0.0, missing_rate=0.0)
    wavy = generate_fleet(n_endpoints=12, duration_s=86_400, interval_s=60, seed=2,
                          faults=False, diurnal_amplitude=0.3, missing_rate=0.0)
    hourly = lambda f: f.values[:, :, U].reshape(12, 24, 60).mean(axis=2)  # noqa: E731
    spread = lambda f: (hourly(f).max(axis=1) / hourly(f).min(axis=1)).min()  # noqa: E731
    assert spread(flat) < 1.1 < 1.2 < spread(wavy)


# -- faults -----------------------------------------------------------------------


def test_every_fault_type_occurs(big: Fleet) -> None:
    assert {ev.fault_type for ev in big.events} == set(FAULT_TYPES)
    assert set(np.unique(big.labels).tolist()) == set(range(len(FAULT_TYPES) + 1))


def test_labels_agree_with_events(big: Fleet) -> None:
    expected = np.zeros_like(big.labels)
    for ev in big.events:
        ticks = _tick_range(big, ev)
        assert ticks.size and big.ts[ticks[0]] == ev.start_ts and big.ts[ticks[-1]] == ev.end_ts
        row = _row(big, ev.endpoint_id)
        assert not expected[row, ticks].any()
        expected[row, ticks] = 1 + FAULT_TYPES.index(ev.fault_type)
        assert ev.label == expected[row, ticks[0]]
        assert ev.site == big.endpoints[row].site
        assert set(ev.metrics) <= set(big.endpoints[row].capabilities) and ev.metrics
    assert np.array_equal(expected, big.labels)


def test_faults_do_not_overlap_and_keep_gaps(big: Fleet) -> None:
    by_ep: dict[str, list[FaultEvent]] = {}
    for ev in big.events:
        by_ep.setdefault(ev.endpoint_id, []).append(ev)
        assert ev.start_ts >= big.ts[0] + WARMUP_S
        assert ev.start_ts <= ev.end_ts
    for evs in by_ep.values():
        evs.sort(key=lambda e: e.start_ts)
        for a, b in zip(evs, evs[1:]):
            # >= 10 min of normal samples between two faults of one endpoint.
            assert b.start_ts - a.end_ts - big.interval_s >= GAP_S


def test_drift_ramps_then_fails(big: Fleet) -> None:
    drifts = [ev for ev in big.events if ev.fault_type == "drift"]
    assert drifts
    for ev in drifts:
        assert ev.failure_ts is not None and ev.start_ts < ev.failure_ts <= ev.end_ts
        assert 600 <= ev.failure_ts - ev.start_ts <= 1800 + 5
        row = _row(big, ev.endpoint_id)
        ticks = _tick_range(big, ev)
        ramp = ticks[big.ts[ticks] < ev.failure_ts]
        fail = ticks[big.ts[ticks] >= ev.failure_ts]
        udp = big.values[row, :, U]
        base = np.nanmedian(udp[ramp[0] - 120: ramp[0]])
        q = max(1, ramp.size // 5)
        assert np.nanmean(udp[ramp[:q]]) < 1.8 * base  # gradual: starts near normal
        assert np.nanmean(udp[ramp[-q:]]) > 2.3 * base  # ... ends at ~3-5x
        assert np.nanmin(udp[fail]) > 5 * base  # blow-up after the failure
        ccm = big.values[row, fail, C]
        assert np.all(ccm[~np.isnan(ccm)] > 0)
        if "lbm_success" in big.endpoints[row].capabilities:
            lbm = big.values[row, fail, S]
            assert (lbm == 0).any() and np.all(lbm[~np.isnan(lbm)] == 0)
    assert all(ev.failure_ts is None for ev in big.events if ev.fault_type != "drift")


def test_fault_signatures(big: Fleet) -> None:
    """Each type changes what it claims to, clearly but not absurdly."""
    for ev in big.events:
        row = _row(big, ev.endpoint_id)
        ticks = _tick_range(big, ev)
        before = slice(max(0, ticks[0] - 60), ticks[0])  # 5 normal minutes before
        n = ticks.size * big.interval_s

        def ratio(j: int, fn=np.nanmedian) -> float:
            return float(fn(big.values[row, ticks, j]) / np.nanmedian(big.values[row, before, j]))

        cols = [METRICS.index(m) for m in ev.metrics]
        if ev.fault_type == "spike":
            assert 3 <= ticks.size <= 6
            assert all(2.5 < ratio(j, np.nanmax) < 13 for j in cols)
        elif ev.fault_type == "packet_loss":
            assert 120 <= n <= 605
            lbm = big.values[row, ticks, S]
            assert 0.05 < np.nanmean(1 - lbm) < 0.95
            assert 1.05 < ratio(U) < 2.0
        elif ev.fault_type == "ccm_loss":
            assert ev.metrics == ("ccm_miss_count",)
            ccm = big.values[row, ticks, C]
            assert set(np.unique(ccm[~np.isnan(ccm)]).tolist()) <= {1.0, 2.0, 3.0}
        elif ev.fault_type == "jitter":
            assert 300 <= n <= 905
            std_ratio = np.nanstd(big.values[row, ticks, U]) / np.nanstd(big.values[row, before, U])
            assert std_ratio > 2.5 and 0.7 < ratio(U) < 1.5
        elif ev.fault_type == "concurrent":
            assert len([m for m in ev.metrics if m != "lbm_success"]) >= 2
            assert all(1.5 < ratio(j) < 2.7 for j in cols if j in (U, E))
        elif ev.fault_type == "single_metric":
            assert len(ev.metrics) == 1 and cols[0] in (U, E, L)
            j = cols[0]
            x = big.values[row, before, j]
            robust_std = 1.4826 * np.nanmedian(np.abs(x - np.nanmedian(x)))
            shift = np.nanmedian(big.values[row, ticks, j]) - np.nanmedian(x)
            assert 1.5 < shift / robust_std < 15
        elif ev.fault_type == "site_wide":
            assert 1.5 < ratio(U) < 2.7


def test_site_wide_hits_the_whole_site_at_once(big: Fleet) -> None:
    groups: dict[tuple[str, float, float], set[str]] = {}
    for ev in big.events:
        if ev.fault_type == "site_wide":
            groups.setdefault((ev.site, ev.start_ts, ev.end_ts), set()).add(ev.endpoint_id)
    assert groups
    for (site, _, _), members in groups.items():
        assert members == {ep.endpoint_id for ep in big.endpoints if ep.site == site}


def test_fault_subset_and_no_faults() -> None:
    f = generate_fleet(n_endpoints=30, duration_s=6 * 3600, seed=1, faults=["spike", "drift"])
    assert {ev.fault_type for ev in f.events} == {"spike", "drift"}
    assert set(np.unique(f.labels).tolist()) == {0, 1, 2}
    none = generate_fleet(n_endpoints=30, duration_s=6 * 3600, seed=1, faults=False)
    assert none.events == () and not none.labels.any()
    assert generate_fleet(n_endpoints=5, duration_s=1200, seed=1).events == ()  # warm-up only


@pytest.mark.parametrize(
    "kwargs",
    [
        {"faults": ["spike", "meteor"]},
        {"n_endpoints": 0},
        {"duration_s": 1.0},
        {"interval_s": 0.0},
        {"seed": -1},
        {"n_sites": 100},
        {"missing_rate": 1.5},
        {"fault_rate_per_endpoint_day": -1.0},
    ],
)
def test_bad_arguments_raise_config_errors(kwargs: dict) -> None:
    with pytest.raises(OcadConfigError):
        generate_fleet(**{"n_endpoints": 4, "duration_s": 3600, **kwargs})


# -- access and export ---------------------------------------------------------------


def test_columns_and_records_agree(small: Fleet) -> None:
    for t in (0, 100, len(small.ts) - 1):
        ids, ts, cols = small.columns(t)
        recs = small.records(t)
        assert list(ids) == [r["endpoint_id"] for r in recs]
        assert np.all(ts == small.ts[t]) and ts.dtype == np.float64
        for i, (ep, rec) in enumerate(zip(small.endpoints, recs)):
            assert rec["ts"] == small.ts[t]
            for m in METRICS:
                v = cols[m][i]
                assert cols[m].dtype == np.float64
                if np.isnan(v):
                    assert m not in rec
                else:
                    assert m in ep.capabilities and rec[m] == v
    assert isinstance(small.records(0)[0]["lbm_success"], int)
    ticks = list(small.iter_ticks(5, 8))
    assert len(ticks) == 3 and ticks[0][1][0] == small.ts[5]
    with pytest.raises(IndexError):
        small.columns(len(small.ts))


def _read_csv(path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_write_csv_wide_round_trip(small: Fleet, tmp_path) -> None:
    path = tmp_path / "fleet.csv"
    small.write_csv(path)
    rows = _read_csv(path)
    e, t = small.values.shape[:2]
    assert len(rows) == e * t
    assert list(rows[0]) == ["endpoint_id", "ts", *METRICS, "fault_type"]
    back = np.full((t, e, 5), np.nan, dtype=np.float32)
    labels = np.empty((t, e), dtype=object)
    ids = list(small.endpoint_ids())
    for k, r in enumerate(rows):
        ti, ei = divmod(k, e)
        assert r["endpoint_id"] == ids[ei] and float(r["ts"]) == small.ts[ti]
        back[ti, ei] = [np.float32(float(r[m])) if r[m] else np.nan for m in METRICS]
        labels[ti, ei] = r["fault_type"]
    assert np.array_equal(back.transpose(1, 0, 2), small.values, equal_nan=True)  # bit-exact
    names = np.array(("", *FAULT_TYPES), dtype=object)
    assert np.array_equal(labels.T, names[small.labels])
    small.write_csv(tmp_path / "nolabels.csv", labels=False)
    assert "fault_type" not in _read_csv(tmp_path / "nolabels.csv")[0]


def test_long_arrays_and_long_csv(small: Fleet, tmp_path) -> None:
    long = small.to_long_arrays()
    assert set(long) == {"endpoint_id", "ts", "metric", "value"}
    n = int((~np.isnan(small.values)).sum())
    assert all(len(a) == n for a in long.values())
    assert not np.isnan(long["value"]).any()
    path = tmp_path / "long.csv"
    small.write_csv(path, long=True)
    rows = _read_csv(path)
    assert len(rows) == n
    rows_idx = {eid: i for i, eid in enumerate(small.endpoint_ids())}
    for k in np.linspace(0, n - 1, 200).astype(int):
        r = rows[k]
        assert r["endpoint_id"] == long["endpoint_id"][k] and r["metric"] == long["metric"][k]
        assert float(r["ts"]) == long["ts"][k]
        assert np.float32(float(r["value"])) == np.float32(long["value"][k])  # float32-exact
        ti = int(np.searchsorted(small.ts, float(r["ts"])))
        label = small.labels[rows_idx[r["endpoint_id"]], ti]
        assert r["fault_type"] == ("", *FAULT_TYPES)[label]


def test_to_frame(small: Fleet) -> None:
    pytest.importorskip("pandas")
    wide = small.to_frame()
    assert list(wide.columns) == ["endpoint_id", "ts", *METRICS, "fault_type"]
    assert len(wide) == small.values.shape[0] * small.values.shape[1]
    assert (wide["fault_type"] != "").sum() == (small.labels != 0).sum()
    long = small.to_frame(long=True)
    assert len(long) == int((~np.isnan(small.values)).sum())
    assert {"endpoint_id", "ts", "metric", "value", "fault_type"} == set(long.columns)


def test_to_frame_without_pandas_names_the_extra(small: Fleet, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes `import pandas` fail
    with pytest.raises(OcadDependencyError, match=r"ocad-core\[io\]"):
        small.to_frame()


def test_importing_the_module_does_not_import_pandas() -> None:
    code = "import sys, ocad.core.tooling._synthetic as s; s.generate_fleet(3, 600); print('pandas' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_slice_time_and_select(big: Fleet) -> None:
    drift = next(ev for ev in big.events if ev.fault_type == "drift")
    fail_tick = int(np.searchsorted(big.ts, drift.failure_ts))
    part = big.slice_time(fail_tick + 1, len(big.ts) - 10)
    assert part.values.shape == (len(big.endpoints), len(big.ts) - 11 - fail_tick, 5)
    assert np.array_equal(part.labels, big.labels[:, fail_tick + 1: -10])
    for ev in part.events:
        assert part.ts[0] <= ev.start_ts <= ev.end_ts <= part.ts[-1]
    clipped = next(ev for ev in part.events if ev.endpoint_id == drift.endpoint_id
                   and ev.fault_type == "drift" and ev.end_ts == drift.end_ts)
    assert clipped.start_ts == part.ts[0] and clipped.failure_ts is None
    # Labels and clipped events still agree.
    assert sum(_tick_range(part, ev).size for ev in part.events) == int((part.labels != 0).sum())

    ids = [big.endpoints[5].endpoint_id, big.endpoints[2].endpoint_id]
    sub = big.select(ids)
    assert list(sub.endpoint_ids()) == ids
    assert np.array_equal(sub.values[0], big.values[5], equal_nan=True)
    assert {ev.endpoint_id for ev in sub.events} <= set(ids)
    assert len(sub.events) == sum(ev.endpoint_id in ids for ev in big.events)
    with pytest.raises(OcadConfigError, match="unknown endpoint"):
        big.select(["nope"])


def test_normal_mask_leaves_a_margin_after_faults(big: Fleet) -> None:
    mask = big.normal_mask()
    assert mask.shape == big.labels.shape and mask.dtype == bool
    assert not mask[big.labels != 0].any()
    margin = int(GAP_S / big.interval_s)
    for ev in big.events[:50]:
        row = _row(big, ev.endpoint_id)
        end = _tick_range(big, ev)[-1]
        assert not mask[row, end + 1: end + 1 + margin].any()
        if end + margin + 1 < len(big.ts) and big.labels[row, end + margin + 1] == 0:
            assert mask[row, end + margin + 1]
    assert big.normal_mask(margin_s=0.0).sum() == (big.labels == 0).sum()
    assert 0.8 < mask.mean() < 1.0


def test_events_table(small: Fleet) -> None:
    table = small.events_table()
    assert len(table) == len(small.events)
    for row, ev in zip(table, small.events):
        assert row["fault_type"] == ev.fault_type and row["metrics"] == list(ev.metrics)
        assert row["duration_s"] == _tick_range(small, ev).size * small.interval_s


def test_docstring_examples_run() -> None:
    result = doctest.testmod(_synthetic, raise_on_error=False)
    assert result.failed == 0 and result.attempted >= 4


# -- property -------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    n_endpoints=st.integers(1, 12),
    hours=st.floats(0.1, 5.0),
    interval_s=st.sampled_from([1.0, 5.0, 10.0, 60.0]),
    missing_rate=st.sampled_from([0.0, 0.002, 0.05]),
)
def test_any_small_fleet_is_valid_and_deterministic(
    seed: int, n_endpoints: int, hours: float, interval_s: float, missing_rate: float
) -> None:
    kw = dict(n_endpoints=n_endpoints, duration_s=hours * 3600, interval_s=interval_s,
              seed=seed, missing_rate=missing_rate, fault_rate_per_endpoint_day=24.0)
    f = generate_fleet(**kw)
    _assert_valid_ranges(f)
    assert f.values.shape == (n_endpoints, round(hours * 3600 / interval_s), 5)
    expected = np.zeros_like(f.labels)
    for ev in f.events:
        expected[_row(f, ev.endpoint_id), _tick_range(f, ev)] = 1 + FAULT_TYPES.index(ev.fault_type)
    assert np.array_equal(expected, f.labels)
    g = generate_fleet(**kw)
    assert np.array_equal(f.values, g.values, equal_nan=True) and f.events == g.events
