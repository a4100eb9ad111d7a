"""Bad input through a whole Monitor: Hypothesis-driven streams (docs/reliability.md, G1).

``packages/ocad-core/tests/test_validate.py`` checks the Validator alone, one
batch at a time. Here whole *streams* go through a Monitor with the full
detector stack (core detectors + the shipped ONNX models): many calls, records
or columns, NaN, ±inf, None, strings, bytes, negative and huge values, booleans
where numbers belong, missing and unknown metrics, duplicate and out-of-order
timestamps, clock jumps backwards and forwards (to the ends of the timestamp
range; milliseconds instead of seconds are refused, docs/timestamps.md),
endpoints appearing, vanishing and idle-evicted.

Properties, checked after every call against a reference model written from
the documented policy (docs/architecture.md, "Validation policy"):

* nothing but ``OcadValidationError`` escapes ``observe`` / ``observe_columns``,
  and it escapes exactly when the call holds a structurally invalid record;
  a refused call changes nothing (counters, windows, alerts);
* every value is counted once: accepted, missing, or rejected with its reason;
  unknown metrics are counted by name;
* every record is accounted for: scored, or dropped with a reason
  (``duplicate_ts`` / ``out_of_order``); clock resets and idle evictions are
  exactly the reference model's;
* memory stays bounded: rows ≤ capacity, alert state only for held endpoints;
* no detector fails on accepted values, and every score is in [0, 1] or NaN.
"""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import MetricKind, MetricSpec, Monitor, OcadValidationError
from ocad.core._time import TS_MAX
from ocad.core.plugins import ORAN_METRICS, PluginRegistry

ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

SPECS = {s.name: s for s in ORAN_METRICS}
NAMES = tuple(SPECS)
M = len(NAMES)
POOL = ["e0", "e1", "e2", "e3", "e4"]
CAPACITY, IDLE_S, RESET_S, T0 = 8, 600.0, 300.0, 1_767_225_600.0
CFG = {"monitor": {"capacity": CAPACITY, "idle_timeout_s": IDLE_S, "clock_reset_s": RESET_S, "warmup_samples": 3}}

_REGISTRY = PluginRegistry(autoload=False, plugins=[ml_plugin])
#: Built once (the ONNX sessions take a while); detectors are pure, so every example's Monitor shares them.
_DETECTORS = Monitor(CFG, registry=_REGISTRY, strict=True).detectors


def new_monitor() -> Monitor:
    return Monitor(CFG, registry=_REGISTRY, detectors=_DETECTORS)


def test_the_stack_under_test_is_the_full_one():
    assert {"rule", "spike", "changepoint", "continuity", "concurrency", "residual", "multivariate"} <= \
        {d.name for d in _DETECTORS}


# -- the policy, written independently of the implementation ------------------------------------

F32_MAX = float(np.finfo(np.float32).max)  # the window store holds float32


def classify(spec: MetricSpec, value: Any) -> str:
    if value is None or value is pd.NA:
        return "missing"
    if isinstance(value, (bool, np.bool_)):
        if spec.kind is not MetricKind.BOOLEAN:
            return "wrong_type"
        f = float(value)
    elif isinstance(value, np.timedelta64):  # numpy calls it an integer; it is a duration
        return "wrong_type"
    elif isinstance(value, numbers.Real):
        try:
            f = float(value)
        except OverflowError:
            return "out_of_range"
    else:
        return "wrong_type"
    if math.isnan(f):
        return "missing"
    if math.isinf(f):
        return "non_finite"
    if not max(spec.low, -F32_MAX) <= f <= min(spec.high, F32_MAX) or \
            (spec.kind is MetricKind.BOOLEAN and f not in (0.0, 1.0)):
        return "out_of_range"
    if spec.kind is MetricKind.COUNT and f != round(f):
        return "not_integer"
    return "accepted"


def ts_float(v: Any) -> float:
    return v.timestamp() if isinstance(v, dt.datetime) else float(v)


class Reference:
    """Ordering, clock resets and idle eviction as documented, per endpoint, in sample time."""

    def __init__(self) -> None:
        self.last: dict[str, float] = {}
        self.scored = 0
        self.dropped: Counter[str] = Counter()
        self.clock_resets = 0
        self.evicted_idle = 0

    def call(self, pairs: list[tuple[str, float]]) -> None:
        first: dict[tuple[str, float], None] = {}
        for p in pairs:
            if p in first:
                self.dropped["duplicate_ts"] += 1  # same (endpoint, ts) twice in one call
            first.setdefault(p, None)
        by_ep: dict[str, list[float]] = {}
        for e, t in first:
            by_ep.setdefault(e, []).append(t)
        per = {e: sorted(ts) for e, ts in by_ep.items()}
        for k in range(max(map(len, per.values()), default=0)):  # tick k: each endpoint's k-th sample
            accepted: dict[str, float] = {}
            for e, ts in per.items():
                if k >= len(ts):
                    continue
                t = ts[k]
                last = self.last.get(e)
                if last is not None and t <= last:
                    if t == last:
                        self.dropped["duplicate_ts"] += 1
                        continue
                    if last - t <= RESET_S:
                        self.dropped["out_of_order"] += 1
                        continue
                    self.clock_resets += 1
                accepted[e] = t
            if not accepted:
                continue
            self.scored += len(accepted)
            self.last.update(accepted)
            limit = self.fleet_clock() - IDLE_S
            for e in [e for e, t in self.last.items() if t < limit and e not in accepted]:
                del self.last[e]
                self.evicted_idle += 1

    def fleet_clock(self) -> float:
        held = sorted(self.last.values())  # the lower median of the held endpoints' last sample times
        return held[(len(held) - 1) // 2]


# -- strategies ------------------------------------------------------------------------------------------

NORMAL = {"udp_echo_rtt_ms": st.floats(3.0, 6.0), "ecpri_delay_us": st.floats(50.0, 80.0),
          "lbm_rtt_ms": st.floats(3.0, 6.0), "lbm_success": st.sampled_from([1, 1, 1, 0, True]),
          "ccm_miss_count": st.sampled_from([0, 0, 0, 1, 2])}
ODD = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(),
    st.booleans(),
    st.text(max_size=3),
    st.sampled_from([math.nan, math.inf, -math.inf, -1.0, -1e-9, 1e308, -1e308, 10**400, 2**64, 60_000.0,
                     60_000.5, 1_000_000, 0.5, "12", b"1", "", np.float32(2.5), np.int64(-3), np.uint8(7),
                     np.bool_(True), np.float32("nan"), Fraction(1, 3), Decimal("2"), 3 + 0j, [1], object(),
                     # beyond float32 (would be ±inf in the store), durations, pandas' missing marker
                     3.5e38, -3.5e38, 1e39, np.float64(1e300), np.timedelta64(5, "s"), np.timedelta64("NaT"),
                     pd.NA, np.datetime64("2026-01-01")]),
)
UNKNOWN = ["bfd_flaps", "RTT", "ptp_offset_ns"]
#: Offsets of a record's ts from its call's clock: in step, jitter, duplicates, out of order, jumps back
#: beyond clock_reset_s, forward beyond idle_timeout_s, a device reporting milliseconds, far past, epoch 0.
OFFSETS = st.one_of(st.sampled_from([0.0, 0.0, 0.0, 5.0, -5.0, 2.5, -10.0, -200.0]),
                    st.sampled_from([-400.0, -2000.0, 650.0, 900.0, 4000.0, 86_400.0,
                                     # Far ahead (a clock in the year 2262) and epoch 0: the ends of the
                                     # timestamp range; beyond them a record is refused (BAD_RECORD).
                                     TS_MAX - T0 - 1e4, -T0]))


@st.composite
def record_st(draw, clock: float) -> dict[str, Any]:
    t = clock + draw(OFFSETS)
    form = draw(st.sampled_from(["float", "float", "int", "datetime"]))
    ts: Any = t
    if form == "int" and t == int(t):
        ts = int(t)
    elif form == "datetime" and 0 <= t < 2e11 and t == int(t):
        ts = dt.datetime.fromtimestamp(int(t), dt.timezone.utc)
    rec: dict[str, Any] = {"endpoint_id": draw(st.sampled_from(POOL)), "ts": ts}
    for name in NAMES:
        how = draw(st.sampled_from(["normal", "normal", "normal", "absent", "odd"]))
        if how == "normal":
            rec[name] = draw(NORMAL[name])
        elif how == "odd":
            rec[name] = draw(ODD)
    for key in draw(st.lists(st.sampled_from(UNKNOWN), unique=True, max_size=2)):
        rec[key] = draw(ODD)
    return rec


_NAIVE = dt.datetime(2026, 1, 1)
BAD_RECORD = st.one_of(
    st.sampled_from(["e0", 3, None, ["endpoint_id"]]),  # not a mapping (records only)
    st.fixed_dictionaries({"ts": st.just(T0)}),  # no endpoint_id (records only)
    # not a string, empty, a control character (a trailing NUL would merge "e0\x00" into "e0" in numpy),
    # a lone surrogate, longer than MAX_ENDPOINT_ID_LEN
    st.fixed_dictionaries({"endpoint_id": st.sampled_from(["", None, 5, b"e0", "e0\x00", "e\n1", "\x7fe",
                                                           "e\ud800", "x" * 257]), "ts": st.just(T0)}),
    st.fixed_dictionaries({"endpoint_id": st.just("e0"),
                           "ts": st.sampled_from([None, math.nan, math.inf, -math.inf, "5", True, 10**400,
                                                  _NAIVE, T0 * 1000.0, -1.0, 1e12])}),
)


@st.composite
def stream_st(draw) -> list[tuple[str, list[Any], int | None]]:
    calls = []
    for c in range(draw(st.integers(1, 7))):
        clock = T0 + 30.0 * c
        recs: list[Any] = draw(st.lists(record_st(clock), min_size=1, max_size=7))
        mode = draw(st.sampled_from(["records", "columns", "frame"]))
        bad_at = None
        if draw(st.integers(0, 9)) == 0:
            bad = draw(BAD_RECORD)
            if mode != "records" and not (isinstance(bad, dict) and "endpoint_id" in bad):
                mode = "records"
            bad_at = draw(st.integers(0, len(recs)))
            recs.insert(bad_at, bad)
        calls.append((mode, recs, bad_at))
    return calls


def as_columns(recs: list[dict[str, Any]]) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    r = len(recs)
    ep = np.empty(r, dtype=object)
    ep[:] = [rec["endpoint_id"] for rec in recs]
    ts = np.empty(r, dtype=object)
    ts[:] = [rec["ts"] for rec in recs]
    keys = list(dict.fromkeys(k for rec in recs for k in rec if k not in ("endpoint_id", "ts")))
    cols = {}
    for k in keys:
        col = np.empty(r, dtype=object)
        col[:] = [rec.get(k) for rec in recs]
        cols[k] = col
    return ep, ts, cols


def expected_values(mode: str, recs: list[dict[str, Any]]) -> tuple[Counter, int, int, Counter]:
    rejected: Counter = Counter()
    accepted = missing = 0
    for rec in recs:
        for name, spec in SPECS.items():
            c = classify(spec, rec.get(name))
            if c == "accepted":
                accepted += 1
            elif c == "missing":
                missing += 1
            else:
                rejected[f"{name}:{c}"] += 1
    unknown: Counter = Counter()
    if mode == "records":
        unknown.update(k for rec in recs for k in rec if k not in SPECS and k not in ("endpoint_id", "ts"))
    else:  # a column of an unknown metric counts once per row
        for k in {k for rec in recs for k in rec if k not in SPECS and k not in ("endpoint_id", "ts")}:
            unknown[k] += len(recs)
    return rejected, accepted, missing, unknown


def _state(mon: Monitor) -> tuple[Any, ...]:
    h = mon.health()
    return (h["validation"], h["store"], sorted(mon.store.endpoints()), mon.policy.state(),
            mon.store.last_ts.tobytes(), mon.store.ts.tobytes())


@settings(max_examples=45, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(stream=stream_st())
def test_streams_of_bad_input_are_counted_never_fatal(stream):
    mon = new_monitor()
    ref = Reference()
    for mode, recs, bad_at in stream:
        before = _state(mon)
        v0 = mon.health()["validation"]
        try:
            if mode == "records":
                out = mon.score_frame(recs, as_frame=False)
            elif mode == "frame":  # a wide DataFrame: object columns where the cells are odd
                frame = pd.DataFrame({k: pd.Series(v, dtype=object) for k, v in as_columns(recs)[2].items()})
                frame.insert(0, "ts", pd.Series(as_columns(recs)[1], dtype=object))
                frame.insert(0, "endpoint_id", pd.Series(as_columns(recs)[0], dtype=object))
                mon.observe(frame)
                out = None
            else:
                mon.observe_columns(*as_columns(recs))
                out = None
        except OcadValidationError as exc:
            assert bad_at is not None, f"refused a structurally valid call: {exc}"
            assert exc.field in ("record", "endpoint_id", "ts")
            if mode == "records":
                assert exc.index == bad_at
            assert _state(mon) == before  # a refused call changes nothing
            continue
        assert bad_at is None, "a structurally invalid record was accepted"

        v1 = mon.health()["validation"]
        rejected, accepted, missing, unknown = expected_values(mode, recs)
        assert v1["records"] - v0["records"] == len(recs)
        assert v1["values_accepted"] - v0["values_accepted"] == accepted
        assert v1["values_missing"] - v0["values_missing"] == missing
        assert Counter(v1["rejected"]) - Counter(v0["rejected"]) == rejected
        assert v1["values_rejected"] - v0["values_rejected"] == sum(rejected.values())
        assert Counter(v1["unknown_metrics"]) - Counter(v0["unknown_metrics"]) == unknown
        assert accepted + missing + sum(rejected.values()) == len(recs) * M  # nothing silently lost

        scored_before = ref.scored
        ref.call([(rec["endpoint_id"], ts_float(rec["ts"])) for rec in recs])
        assert v1["dropped_records"] == {k: n for k, n in ref.dropped.items() if n}
        assert v1["clock_resets"] == ref.clock_resets
        assert mon.store.evicted_idle == ref.evicted_idle
        assert sorted(mon.store.endpoints()) == sorted(ref.last)
        assert {e: float(mon.store.last_ts[mon.store.lookup([e])[0]]) for e in ref.last} == ref.last
        if out is not None:
            assert len(out["ts"]) == ref.scored - scored_before  # every record scored or dropped
            for k in ("composite", *mon.composite.names):
                s = out[k]
                assert ((s >= 0.0) & (s <= 1.0) | np.isnan(s)).all(), k

        # Bounded memory; no alert state for an endpoint the store forgot.
        assert mon.store.allocated_rows <= CAPACITY and len(mon.store) <= CAPACITY
        assert set(mon.policy._states) <= set(mon.store.endpoints())
    # Accepted values, however extreme, never make a detector fail.
    assert {n: h["failures"] for n, h in mon.health()["detectors"].items() if h["failures"]} == {}


def test_a_long_stream_of_garbage_keeps_every_detector_alive():
    """Deterministic companion of the property: 400 ticks, 30 % odd values, clocks jumping around."""
    rng = np.random.default_rng(7)
    odd = [None, math.nan, math.inf, -math.inf, -5.0, 1e308, 10**400, "7", b"x", True, [1], 0.5, 2**70]
    mon = new_monitor()
    n_rec = 0
    for t in range(400):
        recs = []
        for e in POOL:
            rec: dict[str, Any] = {"endpoint_id": e, "ts": T0 + 5.0 * t}
            if rng.random() < 0.03:
                rec["ts"] += float(rng.choice([-1000.0, -20.0, 0.0, 7200.0, 1e9]))
            for name in NAMES:
                u = rng.random()
                if u < 0.3:
                    rec[name] = odd[rng.integers(len(odd))]
                elif u < 0.9:
                    rec[name] = float(rng.uniform(3, 6)) if SPECS[name].kind is MetricKind.GAUGE else 1
            recs.append(rec)
        n_rec += len(recs)
        mon.observe(recs)
    h = mon.health()
    v = h["validation"]
    assert v["records"] == n_rec
    assert v["values_accepted"] + v["values_missing"] + v["values_rejected"] == n_rec * M
    assert v["values_rejected"] > 0.1 * n_rec * M
    assert {n: d["failures"] for n, d in h["detectors"].items() if d["failures"]} == {}
    assert not any(d["disabled"] for d in h["detectors"].values())
    assert h["store"]["allocated_rows"] <= CAPACITY


# Milliseconds for seconds (t * 1000) are beyond the timestamp range and refused outright
# (tests/test_timestamps.py); a clock a century ahead is the worst that gets through.
@pytest.mark.parametrize("rogue_ts", [lambda t: t + 100 * 365 * 86_400.0, lambda t: t + 10 * 365 * 86_400.0],
                         ids=["a-century-ahead", "ten-years-ahead"])
def test_one_endpoint_with_a_clock_far_ahead_does_not_blind_the_monitor(rogue_ts):
    """Idle eviction runs on sample time; one device's bad clock must not make the whole fleet idle.

    Records arrive one endpoint per call, as from a message queue. Endpoint r0 reports its
    timestamps in milliseconds (or ten years ahead) from tick 20 on; the other endpoints keep
    their windows and a fault on one of them still opens an alert.
    """
    mon = Monitor({"monitor": {"use_shipped_models": False, "idle_timeout_s": 600.0, "warmup_samples": 10}},
                  registry=PluginRegistry(autoload=False))
    eps = [f"r{i}" for i in range(8)]
    opened = []
    for t in range(120):
        ts = T0 + 5.0 * t
        for i, e in enumerate(eps):
            bad = i == 3 and 80 <= t < 100
            rec = {"endpoint_id": e, "ts": rogue_ts(ts) if (i == 0 and t >= 20) else ts,
                   "udp_echo_rtt_ms": 40.0 if bad else 4.0 + 0.1 * ((t * 7 + i) % 5),
                   "lbm_rtt_ms": 40.0 if bad else 4.0, "lbm_success": 0 if bad else 1,
                   "ccm_miss_count": 3 if bad else 0}
            opened += [ev for ev in mon.observe([rec]) if ev.event == "open"]
    assert mon.store.evicted_idle == 0
    rows = mon.store.lookup(eps[1:])
    assert (mon.store.count[rows] == 120).all()  # the others never lost their windows
    assert [ev.alert.endpoint_id for ev in opened] == ["r3"]
