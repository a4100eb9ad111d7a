"""The concurrency model, used as documented (docs/reliability.md, G6).

A Monitor is not thread-safe; the supported way to use cores is a Monitor per
shard of endpoints (per thread, process or machine). Detectors are pure and
their models read-only, so the shards' Monitors may share one set of detector
objects, ONNX sessions included (onnxruntime's ``InferenceSession.run`` is
thread-safe). Checked here:

* N threads, each building its own Monitor on the *shared* detectors and
  feeding its own shard at the same time as the others, produce exactly the
  events and scores of the same shards run one after the other;
* the union of the shards' events is the single whole-fleet Monitor's
  (per-endpoint state only: sharding by endpoint changes nothing).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import attrs
import numpy as np
import pytest

from ocad.core import Monitor
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

N_SHARDS, T = 3, 90
REGISTRY = PluginRegistry(autoload=False, plugins=[ml_plugin])


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    base = generate_fleet(9, T * 5.0, seed=12, faults=False)
    v = base.values.copy()
    ids = base.endpoint_ids().tolist()
    # A fault in every shard, at different times.
    faulty = [next(i for i, e in enumerate(ids) if shard_of(e) == k) for k in range(N_SHARDS)]
    for e, start in zip(faulty, (40, 50, 60)):
        sl = slice(start, start + 20)
        v[e, sl, 0] *= 8.0
        v[e, sl, 2] *= 8.0
        v[e, sl, 3] = 0.0
        v[e, sl, 4] = 3.0
    return attrs.evolve(base, values=v)


@pytest.fixture(scope="module")
def shared():  # type: ignore[no-untyped-def]
    """One set of detectors (two ONNX models among them) for every Monitor of the module."""
    dets = Monitor({"monitor": {"warmup_samples": 16}}, registry=REGISTRY, strict=True).detectors
    assert {"residual", "multivariate"} <= {d.name for d in dets}
    return dets


def shard_of(endpoint_id: str) -> int:
    return sum(endpoint_id.encode()) % N_SHARDS  # stable across processes, unlike hash()


def run_shard(k: int, fleet, detectors, barrier: threading.Barrier | None = None):  # type: ignore[no-untyped-def]
    mon = Monitor({"monitor": {"warmup_samples": 16}}, registry=REGISTRY, detectors=detectors)
    ticks = [[r for r in fleet.records(t) if shard_of(r["endpoint_id"]) == k] for t in range(T)]
    if barrier is not None:
        barrier.wait()  # every thread starts feeding at the same moment
    events, parts = [], []
    for recs in ticks:
        parts.append(mon.score_frame(recs, as_frame=False))
        events += [e.to_dict() for e in mon.last_events]
    scores = {c: np.concatenate([p[c] for p in parts]) for c in parts[0]}
    return events, scores, mon.health()["detectors"]


@pytest.fixture(scope="module")
def sequential(fleet, shared):  # type: ignore[no-untyped-def]
    return [run_shard(k, fleet, shared) for k in range(N_SHARDS)]


def test_threads_with_a_monitor_per_shard_equal_the_sequential_run(fleet, shared, sequential):
    barrier = threading.Barrier(N_SHARDS)
    with ThreadPoolExecutor(N_SHARDS) as pool:
        threaded = list(pool.map(lambda k: run_shard(k, fleet, shared, barrier), range(N_SHARDS)))
    assert all(any(e["event"] == "open" for e in ev) for ev, _, _ in sequential)  # the comparison bites
    for k in range(N_SHARDS):
        (ev_s, sc_s, h_s), (ev_t, sc_t, h_t) = sequential[k], threaded[k]
        assert ev_t == ev_s, f"shard {k}"
        assert sc_t.keys() == sc_s.keys()
        for c in sc_s:
            if c == "endpoint_id":
                assert sc_t[c].tolist() == sc_s[c].tolist()
            else:
                np.testing.assert_array_equal(sc_t[c], sc_s[c], err_msg=f"shard {k} {c}")
        assert all(h["failures"] == 0 and h["calls"] == T for h in h_t.values()), h_t


def _canon(events):  # type: ignore[no-untyped-def]
    out = []
    for e in events:
        d = dict(e)
        for k in ("score", "peak_score"):
            d[k] = round(d[k], 9)
        d["evidence"] = [{**x, "score": round(x["score"], 9), "contribution": round(x["contribution"], 9)}
                         for x in d["evidence"]]
        out.append(d)
    return sorted(out, key=lambda d: (d["ts"], d["endpoint_id"], d["event"]))


def test_the_shards_together_alert_like_one_whole_fleet_monitor(fleet, shared, sequential):
    whole = Monitor({"monitor": {"warmup_samples": 16}}, registry=REGISTRY, detectors=shared)
    events = []
    for t in range(T):
        events += [e.to_dict() for e in whole.observe(fleet.records(t))]
    sharded = [e for ev, _, _ in sequential for e in ev]
    assert len({e["endpoint_id"] for e in events if e["event"] == "open"}) >= N_SHARDS
    # Batch composition may move a model's output by an ulp (ONNX kernels by batch size): round.
    assert _canon(sharded) == _canon(events)
