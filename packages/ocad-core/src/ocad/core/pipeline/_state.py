"""Per-endpoint state of a Monitor as plain lists and JSON: export, import, reset.

:meth:`Monitor.snapshot` saves a whole Monitor to a directory. A runner that
shards endpoints (Spark's ``applyInPandasWithState``, a Kafka Streams or Flink
job, a key-value store) needs the state of *one* endpoint, or of one group of
endpoints, as values it can keep in a row between two batches. Everything an
endpoint carries from one sample to the next is in two places:

* the WindowStore: its last ``window`` samples and their times, how many samples
  it has seen (warm-up), the metrics it has ever reported (capabilities), the
  time of its last sample (ordering, idle eviction);
* the AlertPolicy: the pending count before an alert opens, the open alert, the
  hold-down and update timers.

Detectors are pure functions of the window, so nothing else is needed: a Monitor
that imports an endpoint's state and then gets its next samples produces exactly
the events and scores the Monitor that exported it would have produced.

The exported document is columnar, one list entry per endpoint::

    {"layout": {"state_version": 1, "window": W, "metrics": [M names]},
     "max_ts": float,                        # newest sample time of the Monitor
     "endpoint_id": [str, ...],
     "values": [[W*M floats], ...],          # window, oldest sample first, row-major (slot, metric); NaN = none
     "ts": [[W floats], ...],                # sample times of those slots; NaN = empty slot
     "count": [int, ...],                    # samples seen since the window (re)started
     "last_ts": [float, ...],
     "caps": [[M bools], ...],
     "alert": [str | None, ...]}             # JSON of the alert-policy state; None = quiet endpoint

Only lists, floats, ints, bools, strings and None: it maps onto Spark / Arrow
array columns, Parquet or JSON (``json.dumps(state)``), never pickle. Values are
the WindowStore's float32 samples widened to float, so a round trip is exact.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ._alerts import Alert, _State
from .._errors import OcadConfigError
from ._statecheck import check_endpoint_ids, check_policy_state
from ._validate import ValidationStats
from ._window import WindowStore

__all__ = ["STATE_VERSION", "export_state", "import_state", "reset_state", "state_layout"]

STATE_VERSION = 2  # 2: per-row stage state (baselines, self-calibration) in "stages"

_FIELDS = ("endpoint_id", "values", "ts", "count", "last_ts", "caps", "alert")


def state_layout(monitor: Any) -> dict[str, Any]:
    """What a state document must match to be imported: version, window length, metric order."""
    return {"state_version": STATE_VERSION, "window": int(monitor.window),
            "metrics": list(monitor.metrics.names())}


def export_state(monitor: Any, endpoint_ids: Iterable[str] | None = None) -> dict[str, Any]:
    """The window and alert state of ``endpoint_ids`` (default: every endpoint the Monitor holds).

    Endpoints the Monitor does not hold (never seen, or evicted) are left out, so
    ``result["endpoint_id"]`` says which ones were exported. The Monitor is not changed.

    Example
    -------
    >>> from ocad.core import Monitor, export_state, import_state
    >>> a = Monitor.from_defaults(use_shipped_models=False)
    >>> _ = a.observe([{"endpoint_id": "oru-1", "ts": 0.0, "udp_echo_rtt_ms": 4.2}])
    >>> st = export_state(a, ["oru-1"])
    >>> st["endpoint_id"], st["count"], st["ts"][0][-1]
    (['oru-1'], [1], 0.0)
    >>> b = import_state(Monitor.from_defaults(use_shipped_models=False), st)
    >>> b.store.count[b.store.lookup(["oru-1"])].tolist()
    [1]
    """
    store: WindowStore = monitor.store
    if endpoint_ids is None:
        ids = store.endpoints()
    else:
        ids = [e for e in dict.fromkeys(endpoint_ids) if e in store]
    rows = store.lookup(ids)
    values, ts = store.window_of(rows)
    policy_states = monitor.policy._states
    alerts: list[str | None] = []
    for e in ids:
        st = policy_states.get(e)
        alerts.append(None if st is None else json.dumps(_policy_state(st)))
    n = len(ids)
    return {
        "layout": state_layout(monitor),
        "max_ts": float(store.max_ts),
        "endpoint_id": list(ids),
        # float32 → float64 is exact; tolist() gives Python floats (NaN stays NaN).
        "values": values.reshape(n, store.window * store.n_metrics).astype(np.float64).tolist(),
        "ts": ts.tolist(),
        "count": store.count[rows].tolist(),
        "last_ts": store.last_ts[rows].tolist(),
        "caps": store.capabilities[rows].tolist(),
        "alert": alerts,
        # Per-row state of the other stages (baselines, self-calibration), flattened per endpoint.
        "stages": {name: arr[rows].reshape(n, int(np.prod(arr.shape[1:]))).astype(np.float64).tolist() for name, arr in store.extra.items()},
    }


def import_state(monitor: Any, state: Mapping[str, Any], *, replace: bool = False) -> Any:
    """Load a document from :func:`export_state` into ``monitor``; returns the Monitor.

    The endpoints in ``state`` get exactly the exported window and alert state (an
    endpoint the Monitor already holds is overwritten). ``replace=True`` first forgets
    every endpoint (see :func:`reset_state`), so the Monitor holds only ``state``'s.

    Raises
    ------
    OcadConfigError
        ``state`` was exported by a Monitor with another window length or metric order,
        another state version, or its lists do not have one entry per endpoint.
    """
    if not isinstance(state, Mapping):
        raise OcadConfigError(f"endpoint state must be a mapping, not {type(state).__name__}")
    layout = state.get("layout")
    want = state_layout(monitor)
    if layout != want:
        raise OcadConfigError(
            f"endpoint state has layout {layout!r:.300}; this Monitor needs {want!r} (same window length, "
            "metrics in the same order, state_version): export it from an identically configured Monitor")
    store: WindowStore = monitor.store
    w, m = store.window, store.n_metrics
    # Everything is parsed and checked before the Monitor is touched: a bad entry (an alert document,
    # a count, an id) refuses the whole import and leaves the Monitor as it was.
    try:
        ids = check_endpoint_ids(state["endpoint_id"])
        n = len(ids)
        if n > store.capacity:
            raise ValueError(f"{n} endpoints, more than this Monitor's capacity {store.capacity}")
        for f in _FIELDS:
            if len(state[f]) != n:
                raise ValueError(f"{f!r} has {len(state[f])} entries for {n} endpoints")
        values = np.asarray(state["values"], dtype=np.float64).reshape(n, w, m)
        ts = np.asarray(state["ts"], dtype=np.float64).reshape(n, w)
        caps = np.asarray(state["caps"], dtype=bool).reshape(n, m)
        count = np.asarray(state["count"]) if n else np.zeros(0, dtype=np.int64)
        last_ts = np.asarray(state["last_ts"], dtype=np.float64).reshape(n)
        if count.shape != (n,) or count.dtype.kind not in "iu" or (n and count.min() < 0):
            raise ValueError(f"'count' must be {n} integers >= 0")
        if np.isinf(values).any() or np.isinf(ts).any() or not np.isfinite(last_ts).all():
            raise ValueError("'values' and 'ts' must be finite or NaN, 'last_ts' finite")
        if np.abs(values[np.isfinite(values)]).max(initial=0.0) > np.finfo(np.float32).max:
            raise ValueError("'values' beyond float32's range")
        max_ts = float(state.get("max_ts", -math.inf))
        if math.isnan(max_ts):
            raise ValueError("'max_ts' is NaN")
        # Per-row stage state (baselines, self-calibration), parsed before anything changes.
        given = state.get("stages", {}) or {}
        if not isinstance(given, Mapping):
            raise ValueError("'stages' must be a mapping")
        stages: dict[str, np.ndarray] = {}
        for name, arr in store.extra.items():
            if name in given:
                stages[name] = np.asarray(given[name], dtype=np.float64).reshape((n, *arr.shape[1:]))
        alerts: list[_State | None] = []
        for e, doc in zip(ids, state["alert"]):
            if doc is None:
                alerts.append(None)
                continue
            st = _policy_state_from(json.loads(doc) if isinstance(doc, str) else doc)
            check_policy_state(e, st)
            alerts.append(st)
    except OcadConfigError:
        raise
    except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError) as exc:
        raise OcadConfigError(f"endpoint state refused (nothing imported): {type(exc).__name__}: "
                              f"{str(exc)[:300]}") from None
    if replace:
        reset_state(monitor)
        store = monitor.store
    if n:
        rows = store.rows(np.asarray(ids, dtype=object))
        # Windows are stored oldest first, so the next sample goes to slot 0 (the oldest).
        store.values[rows] = values.astype(np.float32)
        store.ts[rows] = ts
        store.head[rows] = 0
        store.count[rows] = count.astype(np.int64)
        store.last_ts[rows] = last_ts
        store.capabilities[rows] = caps
        for name, arr in store.extra.items():
            arr[rows] = stages[name] if name in stages else store._extra_specs[name][2]
    if max_ts > store.max_ts:
        store.max_ts = max_ts
    policy_states = monitor.policy._states
    for e, st in zip(ids, alerts):
        if st is None:
            policy_states.pop(e, None)
        else:
            policy_states[e] = st
    return monitor


def reset_state(monitor: Any) -> Any:
    """Forget every endpoint: empty window store, no alert state, zeroed validation counters.

    Detectors (and their onnxruntime sessions) are kept, which is the point: a runner
    that handles many shards one after the other builds one Monitor and resets it per shard.
    """
    monitor.store = monitor.new_store()
    monitor.policy.load_state({"counts": {"open": 0, "update": 0, "resolve": 0}, "states": {}})
    monitor.stats = ValidationStats()
    return monitor


def _policy_state(st: _State) -> dict[str, Any]:
    # Same shape as one entry of AlertPolicy.state()["states"], so both formats read alike.
    return {"pending": st.pending, "last_active_ts": st.last_active_ts, "last_event_ts": st.last_event_ts,
            "last_event_score": st.last_event_score, "quiet": st.quiet,
            "alert": st.alert.to_dict() if st.alert else None}


def _policy_state_from(d: Mapping[str, Any]) -> _State:
    return _State(pending=d["pending"], last_active_ts=d["last_active_ts"], last_event_ts=d["last_event_ts"],
                  last_event_score=d["last_event_score"], quiet=int(d.get("quiet", 0)),
                  alert=Alert.from_dict(d["alert"]) if d["alert"] else None)
