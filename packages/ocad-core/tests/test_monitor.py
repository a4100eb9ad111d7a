"""Monitor (``ocad.core._monitor``) end to end: inputs, ordering, snapshots, health, eviction."""

from __future__ import annotations

import json

import attrs
import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError, OcadValidationError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import Fleet, alerts_from_events, generate_fleet, match_events

FAST = {"monitor": {"use_shipped_models": False, "warmup_samples": 16}, "detectors": {"changepoint": {"enabled": False}}}
T, FAULT = 200, slice(90, 120)


def fast_monitor(**monitor) -> Monitor:
    return Monitor({**FAST, "monitor": {**FAST["monitor"], **monitor}}, registry=PluginRegistry(autoload=False))


def dicts(events) -> list[dict]:
    return [e.to_dict() for e in events]


def canonical(events) -> list[dict]:
    """Events in a canonical order (ts, endpoint, event): for inputs that do not fix the endpoint order."""
    return sorted(dicts(events), key=lambda d: (d["ts"], d["endpoint_id"], d["event"]))


@pytest.fixture(scope="module")
def small() -> Fleet:
    """5 endpoints × 200 ticks of normal data, with one hand-made fault on endpoint 1."""
    base = generate_fleet(5, T * 5.0, seed=3, faults=False, missing_rate=0.01)
    v = base.values.copy()
    v[1, FAULT, 0] *= 8.0  # udp echo RTT
    v[1, FAULT, 2] *= 8.0  # lbm RTT
    v[1, FAULT, 3] = 0.0  # lbm failing
    v[1, FAULT, 4] = 3.0  # CCM misses
    return attrs.evolve(base, values=v)


@pytest.fixture(scope="module")
def reference(small) -> list[list]:
    """Per-tick events of an uninterrupted, tick-by-tick columnar run."""
    mon = fast_monitor()
    return [mon.observe_columns(*small.columns(t)) for t in range(T)]


def test_reference_run_alerts_on_the_fault(small, reference):
    flat = [e for tick in reference for e in tick]
    ep1 = small.endpoint_ids()[1]
    assert [e.event for e in flat if e.event != "update"] == ["open", "resolve"]
    op = next(e for e in flat if e.event == "open")
    res = next(e for e in flat if e.event == "resolve")
    assert op.alert.endpoint_id == ep1 == res.alert.endpoint_id
    assert small.ts[FAULT.start] <= op.ts <= small.ts[FAULT.start + 3]
    assert res.ts >= small.ts[FAULT.stop - 1] + 60.0  # hold-down after the last faulty sample
    assert len(op.alert.kinds) >= 2 and op.alert.evidence
    assert {e.metric for e in op.alert.evidence} & {"udp_echo_rtt_ms", "lbm_rtt_ms", "lbm_success",
                                                    "ccm_miss_count"}


def test_records_and_columns_tick_by_tick_give_identical_events(small, reference):
    mon = fast_monitor()
    assert [dicts(mon.observe(small.records(t))) for t in range(T)] == [dicts(ev) for ev in reference]


def test_one_call_with_every_tick_equals_tick_by_tick(small, reference):
    mon = fast_monitor()
    records = [r for t in range(T) for r in small.records(t)]
    rng = np.random.default_rng(0)
    shuffled = [records[i] for i in rng.permutation(len(records))]  # order inside one call does not matter
    assert canonical(mon.observe(shuffled)) == canonical(e for tick in reference for e in tick)
    assert mon.stats.records == len(records)


@pytest.mark.parametrize("long", [False, True], ids=["wide", "long"])
def test_dataframe_input_gives_identical_events(small, reference, long):
    pytest.importorskip("pandas")
    df = small.to_frame(long=long).drop(columns="fault_type")
    mon = fast_monitor()
    assert canonical(mon.observe(df)) == canonical(e for tick in reference for e in tick)


def test_dataframe_with_datetime_ts(small, reference):
    pd = pytest.importorskip("pandas")
    df = small.to_frame().drop(columns="fault_type")
    df["ts"] = pd.to_datetime(df["ts"], unit="s", utc=True)
    mon = fast_monitor()
    assert canonical(mon.observe(df)) == canonical(e for tick in reference for e in tick)


def test_snapshot_restore_continues_exactly(small, reference, tmp_path):
    split = FAULT.start + 10  # an alert is open at the snapshot
    first = fast_monitor()
    for t in range(split):
        first.observe_columns(*small.columns(t))
    assert first.policy.open_alerts()
    first.snapshot(tmp_path / "snap")
    assert sorted(p.name for p in (tmp_path / "snap").iterdir()) == ["state.json", "windows.npz"]
    again = Monitor.from_snapshot(tmp_path / "snap", {**FAST}, registry=PluginRegistry(autoload=False))
    assert again.stats == first.stats
    rest = [dicts(again.observe_columns(*small.columns(t))) for t in range(split, T)]
    assert rest == [dicts(ev) for ev in reference[split:]]
    assert any(rest)


def test_restore_refuses_other_config_and_garbage(small, tmp_path):
    mon = fast_monitor()
    mon.observe_columns(*small.columns(0))
    mon.snapshot(tmp_path / "s")
    with pytest.raises(OcadConfigError, match="window"):
        fast_monitor(window=48).restore(tmp_path / "s")
    doc = json.loads((tmp_path / "s" / "state.json").read_text())
    doc["snapshot_version"] = 99
    (tmp_path / "s" / "state.json").write_text(json.dumps(doc))
    with pytest.raises(OcadConfigError, match="unsupported version 99"):
        fast_monitor().restore(tmp_path / "s")
    with pytest.raises(OcadConfigError, match="cannot be read"):
        fast_monitor().restore(tmp_path / "nothing")


def test_score_frame_one_row_per_accepted_sample(small):
    pd = pytest.importorskip("pandas")
    mon = fast_monitor()
    recs = [r for t in range(60) for r in small.records(t)]
    frame = mon.score_frame(recs)
    assert isinstance(frame, pd.DataFrame)
    assert list(frame.columns) == ["endpoint_id", "ts", "composite", *mon.composite.names]
    assert len(frame) == len(recs)
    assert frame[["endpoint_id", "ts"]].duplicated().sum() == 0
    comp = frame["composite"].to_numpy()
    assert not np.isnan(comp).any()
    assert ((comp >= 0.0) & (comp <= 1.0)).all()
    # later: duplicates and out-of-order samples are not scored
    later = [dict(r) for r in small.records(60)] + [dict(small.records(58)[0]), dict(small.records(60)[1])]
    d = mon.score_frame(later, as_frame=False)
    assert len(d["ts"]) == 5 and mon.stats.dropped_records["out_of_order"] == 1
    assert mon.stats.dropped_records["duplicate_ts"] == 1
    assert mon.last_events == []


def test_ordering_duplicates_and_clock_resets():
    mon = fast_monitor(clock_reset_s=300.0)

    def send(ts: float, v: float = 5.0) -> dict:
        return mon.score_frame([{"endpoint_id": "a", "ts": ts, "udp_echo_rtt_ms": v}], as_frame=False)

    for i in range(10):
        send(10_000.0 + 5 * i)
    assert len(send(10_045.0)["ts"]) == 0  # equal to the last: duplicate
    assert len(send(10_040.0)["ts"]) == 0  # older, by less than clock_reset_s: out of order
    assert len(send(9_800.0)["ts"]) == 0  # 245 s back: still out of order
    assert mon.stats.dropped_records == {"duplicate_ts": 1, "out_of_order": 2}
    assert mon.stats.clock_resets == 0
    row = mon.store.lookup(["a"])[0]
    assert mon.store.count[row] == 10
    # a jump back by more than clock_reset_s restarts the window; the endpoint is still scored
    d = send(5_000.0, 6.0)
    assert mon.stats.clock_resets == 1
    assert d["ts"].tolist() == [5_000.0] and d["rule"][0] == 0.0  # 6 ms against a 30 ms rule: no surprise
    assert mon.store.count[row] == 1
    for i in range(1, 4):
        assert len(send(5_000.0 + 5 * i)["ts"]) == 1
    assert mon.store.count[row] == 4 and mon.health()["validation"]["clock_resets"] == 1


def test_validation_errors_and_counters_surface(small):
    mon = fast_monitor()
    with pytest.raises(OcadValidationError) as ei:
        mon.observe([{"endpoint_id": "a", "ts": 0.0}, {"endpoint_id": "", "ts": 0.0}])
    assert ei.value.field == "endpoint_id" and ei.value.index == 1
    mon.observe([{"endpoint_id": "a", "ts": 0.0, "udp_echo_rtt_ms": "12", "lbm_success": 2, "foo": 1}])
    v = mon.health()["validation"]
    assert v["rejected"] == {"lbm_success:out_of_range": 1, "udp_echo_rtt_ms:wrong_type": 1}
    assert v["unknown_metrics"] == {"foo": 1} and v["records"] == 1
    assert v["values_accepted"] + v["values_missing"] + v["values_rejected"] == len(mon.metrics)


def test_health_keys(small):
    mon = fast_monitor()
    for t in range(5):
        mon.observe_columns(*small.columns(t))
    h = mon.health()
    assert set(h) == {"validation", "store", "detectors", "plugin_failures", "alerts", "open_alerts",
                      "artifact_errors"}
    assert set(h["store"]) == {"endpoints", "capacity", "allocated_rows", "bytes", "evicted_idle",
                               "evicted_capacity"}
    assert h["store"]["endpoints"] == 5 and h["store"]["bytes"] > 0
    assert set(h["detectors"]) == set(mon.composite.names) == {"rule", "spike", "level", "recurrence",
                                                                    "continuity", "concurrency"}
    assert all(d["calls"] == 5 and d["failures"] == 0 for d in h["detectors"].values())
    assert h["alerts"] == {"open": 0, "update": 0, "resolve": 0} and h["open_alerts"] == 0
    assert h["validation"]["records"] == 25
    json.dumps(h)  # a NOC tool ships this as JSON


def test_capacity_eviction_with_a_tiny_capacity():
    mon = fast_monitor(capacity=2, idle_timeout_s=None)
    for i, e in enumerate(["a", "b", "c"]):
        mon.observe([{"endpoint_id": e, "ts": 100.0 + i, "udp_echo_rtt_ms": 5.0}])
    h = mon.health()["store"]
    assert h["endpoints"] == 2 and h["evicted_capacity"] == 1 and h["allocated_rows"] <= 2
    assert sorted(mon.store.endpoints()) == ["b", "c"]
    mon.observe([{"endpoint_id": "a", "ts": 200.0, "udp_echo_rtt_ms": 5.0}])  # back, with a fresh window
    assert sorted(mon.store.endpoints()) == ["a", "c"] and mon.store.count[mon.store.lookup(["a"])[0]] == 1
    with pytest.raises(ValueError, match="capacity=2"):
        mon.observe([{"endpoint_id": e, "ts": 300.0} for e in "xyz"])


def test_capacity_eviction_resolves_the_evicted_endpoints_alert():
    mon = fast_monitor(capacity=2, idle_timeout_s=None, warmup_samples=1)
    for i in range(20):
        bad = i >= 10
        mon.observe([{"endpoint_id": "a", "ts": 5.0 * i, "udp_echo_rtt_ms": 100.0 if bad else 5.0 + 0.1 * (i % 3),
                      "lbm_rtt_ms": 100.0 if bad else 5.0, "lbm_success": 0 if bad else 1,
                      "ccm_miss_count": 3 if bad else 0}])
    (alert,) = mon.policy.open_alerts()
    assert mon.observe([{"endpoint_id": "b", "ts": 200.0, "udp_echo_rtt_ms": 5.0}]) == []
    events = mon.observe([{"endpoint_id": "c", "ts": 205.0, "udp_echo_rtt_ms": 5.0}])
    # Resolved at a's own last sample (95.0), not at the newest timestamp of the fleet (205.0).
    assert [(e.event, e.alert.alert_id, e.alert.resolved_ts) for e in events] == [("resolve", alert.alert_id, 95.0)]
    assert mon.policy.open_alerts() == [] and mon.health()["store"]["evicted_capacity"] == 1


def test_idle_eviction_resolves_open_alerts(small):
    mon = fast_monitor(idle_timeout_s=600.0)
    for t in range(FAULT.start + 10):
        mon.observe_columns(*small.columns(t))
    (alert,) = mon.policy.open_alerts()
    ep = alert.endpoint_id
    others = [e for e in small.endpoint_ids() if e != ep]
    t_last = float(small.ts[FAULT.start + 9])
    events = mon.observe([{"endpoint_id": e, "ts": t_last + 700.0, "udp_echo_rtt_ms": 5.0} for e in others])
    assert [(e.event, e.alert.endpoint_id) for e in events] == [("resolve", ep)]
    assert ep not in mon.store and mon.health()["store"]["evicted_idle"] == 1


def test_end_to_end_generated_fleet_with_every_core_detector():
    fleet = generate_fleet(12, 3600.0, seed=0)
    mon = Monitor.from_defaults(use_shipped_models=False)
    events = []
    for t in range(len(fleet.ts)):
        events += mon.observe_columns(*fleet.columns(t))
    names = set(mon.composite.names)
    assert {"rule", "spike", "changepoint", "continuity", "concurrency"} <= names
    state: dict[str, str | None] = {}
    for ev in events:
        a = ev.alert
        assert ev.event in ("open", "update", "resolve") and ev.ts == a.updated_ts
        assert a.severity in ("warning", "critical") and 0.0 <= a.score <= a.peak_score <= 1.0
        assert {e.detector for e in a.evidence} <= names
        if ev.event == "open":
            assert state.get(a.endpoint_id) is None and len(a.kinds) >= 2 and a.evidence
            state[a.endpoint_id] = a.alert_id
        else:
            assert state.get(a.endpoint_id) == a.alert_id
            if ev.event == "resolve":
                assert a.resolved_ts == ev.ts
                state[a.endpoint_id] = None
    alerts = alerts_from_events(events)
    matches, false = match_events(alerts, fleet.events, end_ts=float(fleet.ts[-1]))
    detected = sum(m.detected for m in matches)
    assert len(alerts) >= 1 and detected >= len(matches) / 2
    assert len(false) <= len(alerts) / 2
    h = mon.health()
    assert h["validation"]["records"] == 12 * len(fleet.ts)
    assert all(d["failures"] == 0 for d in h["detectors"].values())
