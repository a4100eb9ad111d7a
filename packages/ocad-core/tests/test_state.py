"""Per-endpoint state as plain lists / JSON: export, import, reset (``ocad.core.pipeline._state``)."""

from __future__ import annotations

import doctest
import json
import math

import numpy as np
import pytest

import ocad.core.pipeline._state as state_mod
from ocad.core import Monitor, OcadConfigError, export_state, import_state, reset_state
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

CFG = {"monitor": {"use_shipped_models": False}}


def _monitor(cfg=CFG):
    return Monitor(cfg, registry=PluginRegistry(autoload=False))


def _key(ev):
    a = ev.alert
    return (ev.event, a.endpoint_id, ev.ts, a.alert_id, a.severity, round(a.score, 9), a.kinds)


def _json_round_trip(doc):
    # What a state store sees: JSON text (NaN tokens included), no Python objects.
    return json.loads(json.dumps(doc))


@pytest.fixture(scope="module")
def fleet():
    return generate_fleet(n_endpoints=6, duration_s=3600, seed=1)


@pytest.fixture(scope="module")
def uninterrupted(fleet):
    mon = _monitor()
    events = []
    for cols in fleet.iter_ticks():
        events += mon.observe_columns(*cols)
    return mon, events


def _feed(mon, fleet, start, stop, ids=None):
    events = []
    for e, ts, vals in fleet.iter_ticks(start, stop):
        if ids is not None:
            keep = np.isin(e, ids)
            e, ts, vals = e[keep], ts[keep], {k: v[keep] for k, v in vals.items()}
        events += mon.observe_columns(e, ts, vals)
    return events


def test_per_endpoint_state_resumes_exactly(fleet, uninterrupted):
    """Stop mid-fault, move each endpoint's state alone through JSON, go on: the same events."""
    _, ref_events = uninterrupted
    cut = 520  # alerts are open on several endpoints here
    first = _monitor()
    events = _feed(first, fleet, 0, cut)
    for e in fleet.endpoint_ids():
        doc = _json_round_trip(export_state(first, [e]))
        assert doc["endpoint_id"] == [e]
        mon = import_state(_monitor(), doc)
        events += _feed(mon, fleet, cut, None, ids=[e])
    assert sorted(map(_key, events)) == sorted(map(_key, ref_events))
    assert any(ev.event == "open" for ev in ref_events) and any(ev.event == "resolve" for ev in ref_events)


def test_group_state_resumes_exactly(fleet, uninterrupted):
    _, ref_events = uninterrupted
    first = _monitor()
    events = _feed(first, fleet, 0, 611)
    mon = import_state(_monitor(), _json_round_trip(export_state(first)))
    events += _feed(mon, fleet, 611, None)
    assert sorted(map(_key, events)) == sorted(map(_key, ref_events))


def test_state_carries_an_open_alert_across_the_cut(fleet, uninterrupted):
    _, ref_events = uninterrupted
    opened = {ev.alert.alert_id: ev.ts for ev in ref_events if ev.event == "open"}
    resolved = {ev.alert.alert_id: ev.ts for ev in ref_events if ev.event == "resolve"}
    a_id = next(a for a in opened if a in resolved and resolved[a] - opened[a] > 60)
    t_open = opened[a_id]
    cut = int(np.searchsorted(fleet.ts, t_open)) + 3
    mon = _monitor()
    _feed(mon, fleet, 0, cut)
    doc = export_state(mon)
    alerts = [json.loads(a) for a in doc["alert"] if a is not None]
    assert any(a["alert"] and a["alert"]["alert_id"] == a_id for a in alerts)
    resumed = import_state(_monitor(), _json_round_trip(doc))
    later = _feed(resumed, fleet, cut, None)
    # The alert resolves in the resumed Monitor without a second "open" for it.
    assert [ev.event for ev in later if ev.alert.alert_id == a_id][-1] == "resolve"
    assert not any(ev.event == "open" and ev.alert.alert_id == a_id for ev in later)


def test_export_layout_and_types(fleet):
    mon = _monitor()
    _feed(mon, fleet, 0, 5)
    ids = list(fleet.endpoint_ids()[:2])
    doc = export_state(mon, [*ids, "never-seen"])
    assert doc["endpoint_id"] == ids
    assert state_mod.STATE_VERSION == 2
    assert doc["layout"] == {"state_version": 2, "window": mon.window, "metrics": list(mon.metrics.names())}
    w, m = mon.window, len(mon.metrics)
    assert [len(v) for v in doc["values"]] == [w * m, w * m]
    assert [len(t) for t in doc["ts"]] == [w, w] and doc["count"] == [5, 5]
    # Oldest first: the 5 samples are the last 5 slots, the rest is empty (NaN).
    ts0 = doc["ts"][0]
    assert all(math.isnan(t) for t in ts0[:-5]) and ts0[-5:] == [float(t) for t in fleet.ts[:5]]
    assert doc["last_ts"] == [float(fleet.ts[4])] * 2 and doc["max_ts"] == float(fleet.ts[4])
    row = np.asarray(doc["values"][0]).reshape(w, m)
    ep_row = list(fleet.endpoint_ids()).index(ids[0])
    np.testing.assert_array_equal(row[-5:], fleet.values[ep_row, :5].astype(np.float64))
    # Only plain JSON types, no numpy scalars and no pickle.
    assert json.loads(json.dumps(doc, allow_nan=True)) is not None
    for k in ("count", "last_ts", "caps", "alert", "values"):
        assert isinstance(doc[k], list)
    assert type(doc["count"][0]) is int and type(doc["values"][0][-1]) is float
    # Version 2: every per-row stage state (baselines, self-calibration), flattened per endpoint.
    store = mon.store
    rows = store.lookup(ids)
    assert set(doc["stages"]) == set(store.extra) and {"sc_n", "sc_exc", "sc_tupd"} <= set(doc["stages"])
    for name, arr in store.extra.items():
        got = doc["stages"][name]
        assert isinstance(got, list) and len(got) == 2 and all(type(x) is float for x in got[0])
        np.testing.assert_array_equal(np.asarray(got).reshape(arr[rows].shape), arr[rows].astype(np.float64))
    # the self-calibration has learned the 5 samples (decayed counts: 20 s of a 3-day half-life)
    assert max(doc["stages"]["sc_n"][0]) == pytest.approx(5.0, rel=1e-4)
    # ... and comes back exactly (through JSON) in another Monitor
    other = import_state(_monitor(), _json_round_trip(doc))
    orows = other.store.lookup(ids)
    for name, arr in store.extra.items():
        np.testing.assert_array_equal(other.store.extra[name][orows], arr[rows])


def test_import_overwrites_and_replace_forgets(fleet):
    a, b = _monitor(), _monitor()
    _feed(a, fleet, 0, 40)
    _feed(b, fleet, 0, 10)
    e0, e1 = fleet.endpoint_ids()[:2]
    import_state(b, export_state(a, [e0]))
    assert b.store.count[b.store.lookup([e0])].tolist() == [40]
    assert b.store.count[b.store.lookup([e1])].tolist() == [10]
    np.testing.assert_array_equal(b.store.window_of(b.store.lookup([e0]))[1],
                                  a.store.window_of(a.store.lookup([e0]))[1])
    import_state(b, export_state(a, [e0]), replace=True)
    assert b.store.endpoints() == [e0]


def test_layout_mismatch_is_refused(fleet):
    a = _monitor()
    _feed(a, fleet, 0, 3)
    doc = export_state(a)
    other = _monitor({"monitor": {"use_shipped_models": False, "window": 64}})
    with pytest.raises(OcadConfigError, match="layout"):
        import_state(other, doc)
    bad = dict(doc, count=doc["count"][:-1])
    with pytest.raises(OcadConfigError, match="'count' has 5 entries for 6 endpoints"):
        import_state(_monitor(), bad)


def test_reset_state_keeps_detectors(fleet):
    mon = _monitor()
    dets = mon.detectors
    _feed(mon, fleet, 0, 10)
    reset_state(mon)
    assert len(mon.store) == 0 and mon.policy.open_alerts() == [] and mon.stats.records == 0
    assert mon.detectors is dets
    assert export_state(mon)["endpoint_id"] == []


def test_docstring_examples_run():
    assert doctest.testmod(state_mod, optionflags=doctest.ELLIPSIS).failed == 0
