"""WindowStore (``ocad.core.pipeline._window``) against a pure-Python model: a dict of deques."""

from __future__ import annotations

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from ocad.core.pipeline import WindowStore

POOL = [f"ep{i}" for i in range(9)]
M = 2


class _Ref:
    """What the store must hold: per endpoint the last W samples, count, last ts, capabilities."""

    def __init__(self, window: int) -> None:
        self.window = window
        self.samples: dict[str, deque] = {}
        self.count: dict[str, int] = {}
        self.last_ts: dict[str, float] = {}
        self.caps: dict[str, np.ndarray] = {}

    def add(self, e: str) -> None:
        self.samples[e] = deque(maxlen=self.window)
        self.count[e] = 0
        self.last_ts[e] = -math.inf
        self.caps[e] = np.zeros(M, dtype=bool)

    def drop(self, e: str) -> None:
        for d in (self.samples, self.count, self.last_ts, self.caps):
            del d[e]

    def append(self, e: str, t: float, vals: np.ndarray) -> None:
        self.samples[e].append((t, vals.astype(np.float32)))
        self.count[e] += 1
        self.last_ts[e] = t
        self.caps[e] |= ~np.isnan(vals)

    def expected_window(self, e: str) -> tuple[np.ndarray, np.ndarray]:
        s = list(self.samples[e])
        pad = self.window - len(s)
        ts = np.array([np.nan] * pad + [t for t, _ in s], dtype=np.float64)
        vals = np.full((self.window, M), np.nan, dtype=np.float32)
        for k, (_, v) in enumerate(s):
            vals[pad + k] = v
        return vals, ts


value_st = st.one_of(st.just(np.nan), st.floats(-1e6, 1e6, width=32))


class WindowStoreMachine(RuleBasedStateMachine):
    @initialize(window=st.integers(1, 5), capacity=st.integers(1, 6), data=st.data(),
                idle=st.sampled_from([None, 30.0, 120.0]))
    def setup(self, window, capacity, data, idle):
        initial = data.draw(st.integers(1, capacity), label="initial_rows")
        self.args = dict(n_metrics=M, window=window, capacity=capacity, idle_timeout_s=idle, initial_rows=initial)
        self.store = WindowStore(**self.args)
        self.ref = _Ref(window)
        self.clock = 1_000.0
        self.max_ts = -math.inf
        self.evicted_capacity = 0
        self.evicted_idle = 0

    @rule(data=st.data(), dt=st.sampled_from([0.0, 1.0, 5.0, 50.0, 200.0]))
    def tick(self, data, dt):
        cap = self.store.capacity
        eps = data.draw(st.lists(st.sampled_from(POOL), unique=True, min_size=1, max_size=min(cap, 4)), label="eps")
        self.clock += dt
        # Distinct endpoints of a tick may carry slightly different times (and equal ones across ticks).
        offs = data.draw(st.lists(st.sampled_from([0.0, 0.5]), min_size=len(eps), max_size=len(eps)))
        ts = np.array([self.clock + o for o in offs])
        vals = np.array(data.draw(st.lists(st.lists(value_st, min_size=M, max_size=M),
                                           min_size=len(eps), max_size=len(eps))), dtype=np.float64)
        known = [e for e in eps if e in self.ref.samples]
        new = [e for e in eps if e not in self.ref.samples]
        short = len(self.ref.samples) + len(new) - cap
        before = set(self.ref.samples)

        rows = self.store.rows(np.array(eps, dtype=object))
        self.store.append(rows, ts, vals)

        victims = before - set(self.store.endpoints())
        if short > 0:
            # LRU: exactly the shortfall, never an endpoint of this tick, none newer than a survivor.
            assert len(victims) == short
            assert not victims & set(known)
            survivors = before - victims - set(known)
            if survivors:
                assert max(self.ref.last_ts[v] for v in victims) <= min(self.ref.last_ts[s] for s in survivors)
            self.evicted_capacity += short
        else:
            assert not victims
        for v in victims:
            self.ref.drop(v)
        for e in new:
            self.ref.add(e)
        for e, t, x in zip(eps, ts, vals):
            self.ref.append(e, float(t), x)
        self.max_ts = max(self.max_ts, float(ts.max()))

    @rule()
    def evict_idle(self):
        n = self.store.evict_idle()
        timeout = self.args["idle_timeout_s"]
        if timeout is None:
            assert n == 0
            return
        idle = [e for e, t in self.ref.last_ts.items() if -math.inf < t < self.max_ts - timeout]
        assert n == len(idle)
        for e in idle:
            self.ref.drop(e)
        self.evicted_idle += n

    @precondition(lambda self: len(self.ref.samples) > 0)
    @rule(data=st.data())
    def reset(self, data):
        e = data.draw(st.sampled_from(sorted(self.ref.samples)), label="reset")
        self.store.reset(self.store.lookup([e]))
        self.ref.drop(e)
        self.ref.add(e)

    @rule()
    def round_trip(self):
        st_ = self.store.state()
        fresh = WindowStore(**self.args)
        fresh.load_state(st_)
        for k, a in fresh.state().items():
            b = st_[k]
            if k == "ids":
                assert sorted(a.tolist()) == sorted(b.tolist())
        self.store = fresh

    @invariant()
    def matches_reference(self):
        s = self.store
        assert len(s) == len(self.ref.samples) <= s.capacity
        assert s.allocated_rows <= s.capacity
        assert set(s.endpoints()) == set(self.ref.samples)
        assert s.evicted_capacity == self.evicted_capacity
        assert s.evicted_idle == self.evicted_idle
        if not self.ref.samples:
            return
        eps = sorted(self.ref.samples)
        rows = s.lookup(eps)
        assert (rows >= 0).all() and len(set(rows.tolist())) == len(eps)
        vals, ts = s.window_of(rows)
        assert vals.dtype == np.float32 and vals.shape == (len(eps), s.window, M)
        for i, e in enumerate(eps):
            ev, et = self.ref.expected_window(e)
            np.testing.assert_array_equal(vals[i], ev, err_msg=e)
            np.testing.assert_array_equal(ts[i], et, err_msg=e)
            assert s.count[rows[i]] == self.ref.count[e]
            assert s.last_ts[rows[i]] == self.ref.last_ts[e]
            np.testing.assert_array_equal(s.capabilities[rows[i]], self.ref.caps[e])


WindowStoreMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=25, deadline=None,
                                                suppress_health_check=[HealthCheck.too_slow])
TestWindowStoreAgainstReference = WindowStoreMachine.TestCase


# -- example-based ---------------------------------------------------------------------------------

def _tick(store: WindowStore, eps: list[str], t: float, v: float = 1.0) -> np.ndarray:
    rows = store.rows(np.array(eps, dtype=object))
    store.append(rows, np.full(len(eps), t), np.full((len(eps), store.n_metrics), v))
    return rows


def test_window_is_chronological_with_nan_padding_first():
    s = WindowStore(1, 4)
    for t in range(6):
        _tick(s, ["a"], float(t), v=10.0 + t)
    vals, ts = s.window_of(s.lookup(["a"]))
    assert ts[0].tolist() == [2.0, 3.0, 4.0, 5.0]
    assert vals[0, :, 0].tolist() == [12.0, 13.0, 14.0, 15.0]
    _tick(s, ["b"], 6.0, v=7.0)
    vals, ts = s.window_of(s.lookup(["b"]))
    assert np.isnan(ts[0, :3]).all() and ts[0, 3] == 6.0
    assert np.isnan(vals[0, :3, 0]).all() and vals[0, 3, 0] == 7.0


def test_lru_evicts_oldest_last_ts_and_counts():
    s = WindowStore(1, 2, capacity=3, idle_timeout_s=None, initial_rows=1)
    _tick(s, ["a"], 1.0)
    _tick(s, ["b"], 2.0)
    _tick(s, ["c"], 3.0)
    _tick(s, ["a"], 4.0)  # a is now the most recent
    assert s.allocated_rows == 3 and s.evicted_capacity == 0
    _tick(s, ["d"], 5.0)
    assert sorted(s.endpoints()) == ["a", "c", "d"] and s.evicted_capacity == 1
    assert s.evicted_lru == ["b"]
    _tick(s, ["e", "f", "a"], 6.0)  # a is protected: it is in the tick
    assert sorted(s.endpoints()) == ["a", "e", "f"] and s.evicted_capacity == 3
    assert sorted(s.evicted_lru) == ["b", "c", "d"]
    # an evicted endpoint comes back with an empty window
    _tick(s, ["b"], 7.0, v=3.0)
    _, ts = s.window_of(s.lookup(["b"]))
    assert np.isnan(ts[0, 0]) and ts[0, 1] == 7.0
    assert int(s.count[s.lookup(["b"])[0]]) == 1


def test_grows_to_capacity_before_evicting():
    s = WindowStore(1, 2, capacity=10, initial_rows=4)
    _tick(s, list("abcd"), 1.0)
    _tick(s, list("efghijkl"), 2.0)  # 12 endpoints for 10 rows: 2 evicted, not an error
    assert len(s) == 10 and s.allocated_rows == 10 and s.evicted_capacity == 2
    assert set("efghijkl") <= set(s.endpoints())


def test_more_endpoints_in_one_tick_than_capacity_is_an_error():
    s = WindowStore(1, 2, capacity=3)
    with pytest.raises(ValueError, match="capacity=3"):
        _tick(s, list("abcd"), 1.0)


def test_idle_eviction_uses_sample_time():
    s = WindowStore(1, 2, capacity=10, idle_timeout_s=100.0)
    _tick(s, ["a"], 0.0)
    _tick(s, ["b"], 50.0)
    _tick(s, ["c"], 100.0)
    assert s.evict_idle() == 0  # a is exactly 100 s old: not *older* than the timeout
    _tick(s, ["c"], 120.0)
    assert s.evict_idle() == 1 and sorted(s.endpoints()) == ["b", "c"] and s.evicted_idle == 1
    assert WindowStore(1, 2, idle_timeout_s=None).evict_idle() == 0


def test_state_round_trip_through_npz(tmp_path):
    s = WindowStore(3, 4, capacity=50, idle_timeout_s=60.0)
    rng = np.random.default_rng(0)
    for t in range(7):
        eps = [f"e{i}" for i in rng.choice(10, size=5, replace=False)]
        rows = s.rows(np.array(eps, dtype=object))
        s.append(rows, np.full(5, float(t)), rng.normal(size=(5, 3)))
    np.savez(tmp_path / "w.npz", **s.state())
    with np.load(tmp_path / "w.npz", allow_pickle=False) as z:
        st_ = {k: z[k] for k in z.files}
    r = WindowStore(3, 4, capacity=50, idle_timeout_s=60.0)
    r.load_state(st_)
    assert sorted(r.endpoints()) == sorted(s.endpoints())
    eps = sorted(s.endpoints())
    for a, b in zip(s.window_of(s.lookup(eps)), r.window_of(r.lookup(eps))):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(s.count[s.lookup(eps)], r.count[r.lookup(eps)])
    assert r.max_ts == s.max_ts == 6.0
    # both continue identically
    for st2 in (s, r):
        _tick(st2, ["e1", "new"], 10.0, v=2.0)
    for a, b in zip(s.window_of(s.lookup(eps + ["new"])), r.window_of(r.lookup(eps + ["new"]))):
        np.testing.assert_array_equal(a, b)


def test_load_state_refuses_other_shape():
    s = WindowStore(2, 4)
    _tick(s, ["a"], 1.0)
    with pytest.raises(ValueError, match="do not match"):
        WindowStore(2, 5).load_state(s.state())


@pytest.mark.parametrize("kw", [dict(window=0), dict(n_metrics=0), dict(capacity=0)])
def test_bad_sizes(kw):
    args = dict(n_metrics=1, window=2, capacity=3) | kw
    with pytest.raises(ValueError):
        WindowStore(**args)


@settings(max_examples=30, deadline=None)
@given(w=st.integers(1, 6), n=st.integers(0, 20))
def test_ring_buffer_wraps(w, n):
    assume(n > 0)
    s = WindowStore(1, w)
    for t in range(n):
        _tick(s, ["a"], float(t), v=float(t))
    vals, ts = s.window_of(s.lookup(["a"]))
    k = min(n, w)
    expect = [np.nan] * (w - k) + [float(t) for t in range(n - k, n)]
    np.testing.assert_array_equal(ts[0], expect)
    np.testing.assert_array_equal(vals[0, :, 0], np.array(expect, dtype=np.float32))
