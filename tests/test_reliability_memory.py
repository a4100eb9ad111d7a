"""Bounded memory under endpoint churn (docs/reliability.md, G4).

A million distinct endpoints pass through a Monitor of fixed capacity. The
window store never allocates more than ``capacity`` rows, holds at most
``capacity`` endpoints, evicts exactly the endpoints the documented policy
names (least recently seen first, never one of the current tick), keeps the
windows of the endpoints that keep reporting, forgets the alert state of the
evicted ones, and the process's resident memory stays flat.

Cost: about 5 s for the million on a busy 2-core box (~200k endpoints/s with one
metric and window 8). ``OCAD_CHURN_ENDPOINTS`` changes the number of distinct
churning endpoints (a multiple of 20 000), e.g. ``OCAD_CHURN_ENDPOINTS=5000000``.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError
from ocad.core.plugins import PluginRegistry

STICKY, NEW = 5_000, 20_000  # per tick: endpoints that always report, and endpoints seen once
CAPACITY = STICKY + NEW
CHURN = int(os.environ.get("OCAD_CHURN_ENDPOINTS", "1000000"))


def _rss_mib() -> float | None:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError, AttributeError):
        return None


def test_a_million_endpoints_through_a_fixed_capacity_monitor():
    assert CHURN % NEW == 0 and CHURN >= 10 * NEW
    ticks = CHURN // NEW
    mon = Monitor({"monitor": {"use_shipped_models": False, "capacity": CAPACITY, "idle_timeout_s": None,
                               "metrics": ["udp_echo_rtt_ms"], "window": 8, "warmup_samples": 4},
                   "detectors": {"changepoint": {"enabled": False}}},
                  registry=PluginRegistry(autoload=False))
    sticky = np.array([f"sticky-{i}" for i in range(STICKY)], dtype=object)
    rng = np.random.default_rng(0)
    rss_warm = nbytes_warm = None
    rss_max = 0.0
    n_events = 0
    for k in range(ticks):
        new = np.array([f"ep-{k * NEW + i}" for i in range(NEW)], dtype=object)
        ids = np.concatenate([sticky, new])
        x = rng.uniform(3.0, 6.0, CAPACITY)
        x[STICKY + 7] = 400.0  # one new endpoint per tick reports a huge RTT (one sample: no window yet)
        n_events += len(mon.observe_columns(ids, np.full(CAPACITY, 1000.0 + 5.0 * k), {"udp_echo_rtt_ms": x}))
        store = mon.store
        assert store.allocated_rows <= CAPACITY and len(store) <= CAPACITY
        if k == 4:
            rss_warm, nbytes_warm = _rss_mib(), store.nbytes()
        elif k > 4:
            rss_max = max(rss_max, _rss_mib() or 0.0)
    h = mon.health()["store"]
    assert h["endpoints"] == CAPACITY == h["allocated_rows"]
    # Exactly the once-seen endpoints of all ticks but the last were evicted, each once, for capacity.
    assert h["evicted_capacity"] == (ticks - 1) * NEW and h["evicted_idle"] == 0
    assert mon.health()["validation"]["records"] == ticks * CAPACITY
    # LRU: what is left is the sticky endpoints and the newest tick's; the sticky ones never lost a sample.
    assert set(mon.store.endpoints()) == {*sticky.tolist(), *(f"ep-{(ticks - 1) * NEW + i}" for i in range(NEW))}
    assert (mon.store.count[mon.store.lookup(sticky)] == ticks).all()
    assert mon.store.count[mon.store.lookup(new)].tolist() == [1] * NEW
    # No per-endpoint state outlives its endpoint.
    assert set(mon.policy._states) <= set(mon.store.endpoints())
    assert n_events == 0  # one sample never opens an alert; the sticky fleet is normal
    assert mon.store.nbytes() == nbytes_warm
    if rss_warm is not None:
        # A leak of one small object per evicted endpoint would be ~100 B x 900k = 90 MB.
        assert rss_max - rss_warm < 32.0, (rss_warm, rss_max)


def test_a_tick_larger_than_the_capacity_is_refused_with_a_clear_error():
    """The only way the capacity cannot hold: more distinct endpoints in one tick than rows."""
    mon = Monitor({"monitor": {"use_shipped_models": False, "capacity": 4, "metrics": ["udp_echo_rtt_ms"]}},
                  registry=PluginRegistry(autoload=False))
    mon.observe_columns(np.array(["a", "b"], dtype=object), np.array([0.0, 0.0]), {"udp_echo_rtt_ms": [1.0, 2.0]})
    with pytest.raises(OcadConfigError, match="capacity=4"):
        mon.observe_columns(np.array(list("cdefg"), dtype=object), np.zeros(5) + 5, {"udp_echo_rtt_ms": np.ones(5)})
    # Refused before anything changed: the store still holds a and b with their sample.
    assert sorted(mon.store.endpoints()) == ["a", "b"] and mon.store.allocated_rows <= 4


if __name__ == "__main__":  # pragma: no cover - manual timing
    import time

    t0 = time.perf_counter()
    test_a_million_endpoints_through_a_fixed_capacity_monitor()
    dt = time.perf_counter() - t0
    print(f"{CHURN} endpoints in {dt:.1f} s: {CHURN / dt:,.0f} endpoints/s", file=sys.stderr)
