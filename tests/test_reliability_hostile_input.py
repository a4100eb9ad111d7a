"""Hostile input, ids and long format (issue #11; docs/reliability.md G1.6-G1.9).

``test_reliability_input.py`` drives records, columns and wide frames with
generated odd values against a reference accounting model. Here:

* long-format frames (endpoint_id, ts, metric, value) generated with missing
  endpoints / times, duplicates, unknown and reserved metric names, against a
  reference model of the long-format policy;
* endpoint ids: a trailing NUL (numpy's ``U`` dtype would merge it with the
  id without it), control characters, an id longer than the maximum: refused
  before anything is counted or allocated;
* unknown metric names stay bounded (a million distinct names cannot grow
  ``health()`` or a snapshot);
* durations, ``pd.NA`` and values beyond float32 are counted, never stored as ±inf;
* duplicated column names (DataFrame, CSV header) are refused naming the column.
"""

from __future__ import annotations

import math
import tracemalloc
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import Monitor, OcadValidationError
from ocad.core.pipeline._validate import MAX_ENDPOINT_ID_LEN, MAX_UNKNOWN_NAMES
from ocad.core.plugins import ORAN_METRICS, PluginRegistry

SPECS = {s.name: s for s in ORAN_METRICS}
NAMES = tuple(SPECS)
T0 = 1_767_225_600.0


def new_monitor(**monitor: Any) -> Monitor:
    cfg = {"monitor": {"use_shipped_models": False, "capacity": 64, **monitor}}
    return Monitor(cfg, registry=PluginRegistry(autoload=False))


def _unchanged(mon: Monitor) -> tuple[Any, ...]:
    h = mon.health()
    return h["validation"], h["store"], sorted(mon.store.endpoints()), mon.store.ts.tobytes()


# -- endpoint ids ---------------------------------------------------------------------------------

@pytest.mark.parametrize("bad", ["e0\x00", "e\x001", "\x00", "e0\n", "e\x1b[31m", "e\x7f", "e\x85", "e\ud800",
                                 "x" * (MAX_ENDPOINT_ID_LEN + 1)])
@pytest.mark.parametrize("entry", ["records", "columns", "frame"])
def test_an_endpoint_id_with_control_characters_or_too_long_is_refused(bad, entry):
    """G1.6: never merged with another id (numpy drops a trailing NUL), refused with nothing changed."""
    mon = new_monitor()
    mon.observe([{"endpoint_id": "e0", "ts": T0, "udp_echo_rtt_ms": 4.0}])
    before = _unchanged(mon)
    recs = [{"endpoint_id": "e1", "ts": T0 + 5, "udp_echo_rtt_ms": 4.0},
            {"endpoint_id": bad, "ts": T0 + 5, "udp_echo_rtt_ms": 9.0}]
    with pytest.raises(OcadValidationError) as ei:
        if entry == "records":
            mon.observe(recs)
        elif entry == "columns":
            mon.observe_columns(np.array(["e1", bad], dtype=object), np.array([T0 + 5] * 2),
                                {"udp_echo_rtt_ms": np.array([4.0, 9.0])})
        else:  # object columns: pandas' own string dtype cannot even hold a lone surrogate
            mon.observe(pd.DataFrame({k: pd.Series([r[k] for r in recs], dtype=object) for k in recs[0]}))
    assert ei.value.field == "endpoint_id"
    assert _unchanged(mon) == before
    assert MAX_ENDPOINT_ID_LEN == 256
    # The longest allowed id and ordinary unicode pass.
    mon.observe([{"endpoint_id": "é-" + "x" * (MAX_ENDPOINT_ID_LEN - 2), "ts": T0, "udp_echo_rtt_ms": 4.0},
                 {"endpoint_id": "o-ru 7/小区", "ts": T0, "udp_echo_rtt_ms": 4.0}])


def test_a_huge_endpoint_id_allocates_nothing_before_it_is_refused():
    """G1.6: a 1 MB id in a 10 000-row backfill is refused without sizing every id column to it."""
    mon = new_monitor()
    ep = np.array([f"e{i % 50}" for i in range(10_000)], dtype=object)
    ep[-1] = "x" * 1_000_000
    ts = T0 + np.arange(10_000, dtype=np.float64)
    tracemalloc.start()
    try:
        with pytest.raises(OcadValidationError, match="at most 256"):
            mon.observe_columns(ep, ts, {"udp_echo_rtt_ms": np.full(10_000, 4.0)})
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, peak  # rows × longest id × 4 bytes would be 40 GB
    assert mon.health()["validation"]["records"] == 0


# -- values ----------------------------------------------------------------------------------------

def test_odd_values_are_counted_and_never_stored_as_inf():
    """G1.7: beyond-float32 → out_of_range, durations → wrong_type, pd.NA → missing; no exception."""
    mon = new_monitor()
    odd = [3.5e38, -1e39, np.float64(1e300), np.timedelta64(3, "s"), np.timedelta64("NaT"), pd.NA, 4.0]
    recs = [{"endpoint_id": f"e{i}", "ts": T0, "udp_echo_rtt_ms": v} for i, v in enumerate(odd)]
    mon.observe(recs)
    v = mon.health()["validation"]
    assert v["rejected"] == {"udp_echo_rtt_ms:out_of_range": 3, "udp_echo_rtt_ms:wrong_type": 2}
    assert v["values_accepted"] == 1
    assert v["values_missing"] == 1 + len(odd) * (len(NAMES) - 1)
    assert not np.isinf(mon.store.values).any()
    # The same as a column (timedelta64 dtype) and as a float column holding 1e39.
    mon.observe_columns(np.array(["a", "b"], dtype=object), np.array([T0 + 5] * 2),
                        {"udp_echo_rtt_ms": np.array([1, 2], dtype="timedelta64[s]"),
                         "lbm_rtt_ms": np.array([1e39, 4.0])})
    v = mon.health()["validation"]
    assert v["rejected"]["udp_echo_rtt_ms:wrong_type"] == 4 and v["rejected"]["lbm_rtt_ms:out_of_range"] == 1
    assert not np.isinf(mon.store.values).any()
    # pd.NA in a nullable pandas column is missing, not wrong_type.
    frame = pd.DataFrame({"endpoint_id": ["a", "b"], "ts": [T0 + 10] * 2,
                          "udp_echo_rtt_ms": pd.array([4.0, None], dtype="Float64")})
    missing0 = v["values_missing"]
    mon.observe(frame)
    v = mon.health()["validation"]
    assert v["values_missing"] - missing0 == 1 + 2 * (len(NAMES) - 1)
    assert v["rejected"]["udp_echo_rtt_ms:wrong_type"] == 4


def test_unknown_metric_names_are_bounded():
    """G1.8: 5 000 distinct unknown names: the first 1 000 by name, the rest under '<other>', all counted."""
    mon = new_monitor()
    names = [f"kpi_{i}" for i in range(5000)]
    mon.observe_columns(np.array(["a"], dtype=object), np.array([T0]), {n: np.array([1.0]) for n in names})
    recs = [{"endpoint_id": "a", "ts": T0 + 5, **{f"rec_{i}": 1.0 for i in range(3000)}, "x" * 500: 1.0}]
    mon.observe(recs)
    u = mon.health()["validation"]["unknown_metrics"]
    assert len(u) == MAX_UNKNOWN_NAMES + 1 and u["<other>"] == 5000 + 3001 - MAX_UNKNOWN_NAMES
    assert sum(u.values()) == 5000 + 3001  # nothing lost, only grouped
    assert len(str(mon.health())) < 100_000


# -- duplicated columns -------------------------------------------------------------------------------

def test_duplicated_columns_are_refused_naming_them(tmp_path):
    """G1.9: which of two 'udp_echo_rtt_ms' columns holds the data? Refused, not one silently dropped."""
    mon = new_monitor()
    df = pd.DataFrame([["e0", T0, 4.0, 9.0]], columns=["endpoint_id", "ts", "udp_echo_rtt_ms", "udp_echo_rtt_ms"])
    with pytest.raises(OcadValidationError, match="udp_echo_rtt_ms"):
        mon.observe(df)
    assert mon.health()["validation"]["records"] == 0
    from ocad.core.tooling._io import read_records

    p = tmp_path / "dup.csv"
    p.write_text(f"endpoint_id,ts,udp_echo_rtt_ms,udp_echo_rtt_ms\ne0,{T0},4.0,9.0\n")
    with pytest.raises(OcadValidationError, match="udp_echo_rtt_ms"):
        read_records(p)


# -- long format ---------------------------------------------------------------------------------------

EPS = st.sampled_from(["e0", "e1", "e2", None, math.nan])
TSS = st.sampled_from([T0, T0 + 5, T0 + 10, math.nan])
METRICS = st.sampled_from([*NAMES, *NAMES, "bfd_flaps", "RTT"])
VALUES = st.one_of(st.floats(3.0, 6.0), st.sampled_from([None, math.nan, math.inf, -1.0, 1e39, "x", 1, 0]))


def _classify(name: str, v: Any) -> str:
    spec = SPECS[name]
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "missing"
    if isinstance(v, str):
        return "wrong_type"
    f = float(v)
    if math.isinf(f):
        return "non_finite"
    if not spec.low <= f <= min(spec.high, 3.4028234663852886e38) or \
            (spec.kind.value == "boolean" and f not in (0.0, 1.0)):
        return "out_of_range"
    if spec.kind.value == "count" and f != round(f):
        return "not_integer"
    return "accepted"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(rows=st.lists(st.tuples(EPS, TSS, METRICS, VALUES), min_size=1, max_size=25))
def test_long_frames_account_for_every_row(rows):
    """G1.9: every long row is in a record, or counted (no endpoint, no ts, duplicate, unknown metric)."""
    mon = new_monitor()
    frame = pd.DataFrame(rows, columns=["endpoint_id", "ts", "metric", "value"]).astype({"value": object})
    # Reference model of the documented long-format policy.
    no_ep = sum(1 for e, *_ in rows if not isinstance(e, str))
    no_ts = sum(1 for e, t, *_ in rows if isinstance(e, str) and math.isnan(t))
    first: dict[tuple[str, float, str], Any] = {}
    dup = 0
    for e, t, m, v in rows:
        if not isinstance(e, str) or math.isnan(t):
            continue
        if (e, t, m) in first:
            dup += 1
        else:
            first[(e, t, m)] = v
    records = {(e, t) for e, t, _ in first}
    unknown = Counter(m for (_, _, m) in first if m not in SPECS)
    rejected: Counter[str] = Counter()
    accepted = missing = 0
    for e, t in records:
        for name in NAMES:
            c = _classify(name, first.get((e, t, name)))
            if c == "accepted":
                accepted += 1
            elif c == "missing":
                missing += 1
            else:
                rejected[f"{name}:{c}"] += 1

    mon.observe(frame)
    v = mon.health()["validation"]
    assert v["records"] == len(records)
    assert v["values_accepted"] == accepted and v["values_missing"] == missing
    assert Counter(v["rejected"]) == rejected
    assert Counter(v["unknown_metrics"]) == unknown
    dropped = {k: n for k, n in {"long_no_endpoint": no_ep, "long_no_ts": no_ts, "long_duplicate": dup}.items()
               if n}
    assert {k: n for k, n in v["dropped_records"].items() if k.startswith("long_")} == dropped
    assert len(mon.store) == len({e for e, _ in records})


@pytest.mark.parametrize("name", ["ts", "endpoint_id", "metric", "value"])
def test_a_long_row_naming_a_reserved_column_is_refused(name):
    """G1.9: a metric called 'ts' would rewrite the record's time: the call is refused, nothing counted."""
    mon = new_monitor()
    frame = pd.DataFrame([["e0", T0, "udp_echo_rtt_ms", 4.0], ["e0", T0, name, 1e12]],
                         columns=["endpoint_id", "ts", "metric", "value"])
    with pytest.raises(OcadValidationError, match=name) as ei:
        mon.observe(frame)
    assert ei.value.field == "metric"
    assert mon.health()["validation"]["records"] == 0 and len(mon.store) == 0


# -- time ------------------------------------------------------------------------------------------------

def _fault(e: str, t: float, bad: bool) -> dict[str, Any]:
    return {"endpoint_id": e, "ts": t, "udp_echo_rtt_ms": 60.0 if bad else 4.0 + 0.1 * (int(t) % 3),
            "lbm_rtt_ms": 60.0 if bad else 4.0, "lbm_success": 0 if bad else 1, "ccm_miss_count": 4 if bad else 0}


def _open_alert_on_a(mon: Monitor, others: list[str]) -> float:
    t = T0
    for k in range(40):
        t = T0 + 5.0 * k
        mon.observe([_fault("a", t, k >= 25), *(_fault(e, t, False) for e in others)])
    assert [al.endpoint_id for al in mon.policy.open_alerts()] == ["a"]
    return t


def test_a_clock_reset_resolves_the_open_alert_in_the_old_time_line():
    """G1.10: after a reset the alert is not stuck behind a hold-down timer of the old time line."""
    mon = new_monitor(clock_reset_s=300.0, warmup_samples=5)
    t_last = _open_alert_on_a(mon, ["b", "c"])
    events = mon.observe([_fault("a", T0 - 86_400.0, False)])  # the device's clock went back a day
    assert [(ev.event, ev.alert.endpoint_id, ev.ts) for ev in events] == [("resolve", "a", t_last)]
    assert mon.policy.open_alerts() == [] and mon.health()["validation"]["clock_resets"] == 1
    for k in range(1, 30):  # healthy in the new time line: nothing reopens
        assert [ev for ev in mon.observe([_fault("a", T0 - 86_400.0 + 5.0 * k, False)]) if ev.event == "open"] == []


@pytest.mark.parametrize("rogue", [None, 9e9])  # 9e9: year 2255, the far end of the ts range
def test_an_eviction_resolve_is_stamped_with_the_endpoints_own_last_sample(rogue):
    """G1.10: not the newest timestamp ever seen (one wild clock would stamp every resolve, for good)."""
    mon = new_monitor(idle_timeout_s=600.0, warmup_samples=5)
    others = ["b", "c", "d", "e"]
    t_last = _open_alert_on_a(mon, others)
    if rogue is not None:
        mon.observe([_fault("z", rogue, False)])
    resolves = []
    for k in range(1, 200):  # a falls silent; the fleet goes on until a is idle-evicted
        evs = mon.observe([_fault(e, t_last + 5.0 * k, False) for e in others])
        resolves += [ev for ev in evs if ev.event == "resolve"]
        if resolves:
            break
    assert [(ev.alert.endpoint_id, ev.ts, ev.alert.resolved_ts) for ev in resolves] == [("a", t_last, t_last)]
    assert mon.store.max_ts == (rogue or mon.store.max_ts)


def test_float32_timestamps_are_refused_not_collapsed():
    """G1.10: float32 has 128-second steps at today's epoch seconds: refused, naming ts."""
    mon = new_monitor()
    ts = (T0 + 5.0 * np.arange(10)).astype(np.float32)
    with pytest.raises(OcadValidationError, match="float32") as ei:
        mon.observe_columns(np.array(["a"] * 10, dtype=object), ts, {"udp_echo_rtt_ms": np.full(10, 4.0)})
    assert ei.value.field == "ts"
    with pytest.raises(OcadValidationError, match="float32"):
        mon.observe([{"endpoint_id": "a", "ts": np.float32(T0), "udp_echo_rtt_ms": 4.0}])
    assert mon.health()["validation"]["records"] == 0
    mon.observe_columns(np.array(["a"] * 10, dtype=object), ts.astype(np.float64) + np.arange(10) * 0.0,
                        {"udp_echo_rtt_ms": np.full(10, 4.0)})  # float64 of any origin is taken as it is


def test_a_long_csv_row_naming_ts_as_its_metric_is_refused(tmp_path):
    """G1.9, files: a row with metric 'ts' would rewrite the record's time (the CLI reader)."""
    from ocad.core.tooling._io import read_records

    p = tmp_path / "long.csv"
    p.write_text(f"endpoint_id,ts,metric,value\ne0,{T0},udp_echo_rtt_ms,4.0\ne0,{T0},ts,1e12\n")
    with pytest.raises(OcadValidationError, match="reserved") as ei:
        read_records(p)
    assert ei.value.field == "metric"
