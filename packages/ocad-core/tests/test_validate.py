"""Validation policy (``ocad.core.pipeline._validate``): one test per row of the policy table, then properties."""

from __future__ import annotations

import datetime as dt
import math
import numbers
from collections import Counter
from decimal import Decimal
from fractions import Fraction
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import MetricKind, MetricSpec, OcadValidationError
from ocad.core.pipeline import ValidationStats, Validator
from ocad.core.plugins import ORAN_METRICS, MetricRegistry

SPECS = {s.name: s for s in ORAN_METRICS}
NAMES = tuple(SPECS)
M = len(NAMES)
RTT, ECPRI, LBM_RTT, LBM_OK, CCM = NAMES


@pytest.fixture
def v() -> Validator:
    return Validator(MetricRegistry(ORAN_METRICS))


def one(v: Validator, metric: str, value: Any) -> tuple[ValidationStats, np.ndarray]:
    stats = ValidationStats()
    b = v.from_records([{"endpoint_id": "e", "ts": 1.0, metric: value}], stats)
    return stats, b.values[0]


def test_missing_none_nan_and_absent_key_are_missing_not_zero(v):
    stats = ValidationStats()
    b = v.from_records([
        {"endpoint_id": "a", "ts": 0, RTT: None, LBM_OK: float("nan")},
        {"endpoint_id": "b", "ts": 0, CCM: np.float32("nan")},
    ], stats)
    assert stats.records == 2
    assert stats.values_missing == 2 * M
    assert stats.values_accepted == 0 and stats.values_rejected == 0
    assert np.isnan(b.values).all()


@pytest.mark.parametrize("value", [math.inf, -math.inf, np.float32("inf"), np.float64("-inf")])
def test_infinities_are_rejected_non_finite(v, value):
    stats, row = one(v, ECPRI, value)
    assert stats.rejected == Counter({(ECPRI, "non_finite"): 1})
    assert stats.values_missing == M - 1 and stats.values_accepted == 0
    assert np.isnan(row).all()


@pytest.mark.parametrize("value", ["12", "12.5", "", b"12", object(), [1.0], {"v": 1}, 1 + 2j, Decimal("3"),
                                   np.str_("4"), np.datetime64("2026-01-01")])
def test_non_numbers_are_wrong_type_even_numeric_strings(v, value):
    stats, row = one(v, RTT, value)
    assert stats.rejected == Counter({(RTT, "wrong_type"): 1})
    assert stats.values_accepted == 0 and stats.values_missing == M - 1
    assert np.isnan(row[NAMES.index(RTT)])


@pytest.mark.parametrize("metric", [RTT, ECPRI, CCM])
@pytest.mark.parametrize("value", [True, False, np.bool_(True)])
def test_bool_for_gauge_or_count_is_wrong_type(v, metric, value):
    stats, row = one(v, metric, value)
    assert stats.rejected == Counter({(metric, "wrong_type"): 1})
    assert np.isnan(row).all()


@pytest.mark.parametrize("value, expected", [(True, 1.0), (False, 0.0), (np.bool_(False), 0.0), (1, 1.0),
                                             (0.0, 0.0), (np.int64(1), 1.0)])
def test_bool_and_0_1_for_boolean_metric_accepted(v, value, expected):
    stats, row = one(v, LBM_OK, value)
    assert stats.values_accepted == 1 and stats.values_rejected == 0
    assert row[NAMES.index(LBM_OK)] == expected


@pytest.mark.parametrize("metric, value", [(RTT, -0.001), (RTT, 60_000.5), (ECPRI, 1e7 + 1), (CCM, -1),
                                           (LBM_RTT, -5), pytest.param(RTT, 10**400, id="rtt-huge-int"),
                                           pytest.param(CCM, -(10**400), id="ccm-huge-negative-int")])
def test_out_of_range(v, metric, value):
    stats, row = one(v, metric, value)
    assert stats.rejected == Counter({(metric, "out_of_range"): 1})
    assert np.isnan(row).all()


@pytest.mark.parametrize("value", [0.5, 2, -1, 1.0000001])
def test_boolean_not_0_or_1_is_out_of_range(v, value):
    stats, _ = one(v, LBM_OK, value)
    assert stats.rejected == Counter({(LBM_OK, "out_of_range"): 1})


def test_range_bounds_are_inclusive(v):
    for metric, value in [(RTT, 0.0), (RTT, 60_000.0), (CCM, 1_000_000)]:
        stats, row = one(v, metric, value)
        assert stats.values_accepted == 1, (metric, value)
        assert row[NAMES.index(metric)] == value


@pytest.mark.parametrize("value", [2.5, 0.1, np.float32(1.5), Fraction(7, 2)])
def test_count_not_integer(v, value):
    stats, _ = one(v, CCM, value)
    assert stats.rejected == Counter({(CCM, "not_integer"): 1})


@pytest.mark.parametrize("value", [3, 3.0, np.int32(3), np.float32(3.0), Fraction(6, 2)])
def test_count_integer_valued_accepted(v, value):
    stats, row = one(v, CCM, value)
    assert stats.values_accepted == 1
    assert row[NAMES.index(CCM)] == 3.0


def test_rejected_value_keeps_the_record_and_its_other_values(v):
    stats = ValidationStats()
    b = v.from_records([{"endpoint_id": "a", "ts": 5, RTT: "12", ECPRI: 80.5, LBM_OK: True}], stats)
    assert len(b) == 1 and b.endpoint_id[0] == "a" and b.ts[0] == 5.0
    np.testing.assert_array_equal(b.values[0], [np.nan, 80.5, np.nan, 1.0, np.nan])
    assert stats.values_accepted == 2 and stats.values_rejected == 1 and stats.values_missing == 2


def test_unknown_metrics_counted_by_name_and_ignored(v):
    stats = ValidationStats()
    b = v.from_records([
        {"endpoint_id": "a", "ts": 0, "bfd_flaps": 3, RTT: 4.0},
        {"endpoint_id": "b", "ts": 0, "bfd_flaps": "x", "ptp_offset": 1, 7: 1},
    ], stats)
    assert stats.unknown_metrics == Counter({"bfd_flaps": 2, "ptp_offset": 1, "7": 1})
    assert b.values.shape == (2, M)
    assert stats.values_accepted == 1 and stats.values_missing == 2 * M - 1
    # to_dict() must stay sortable / JSON-ready whatever the keys were
    assert stats.to_dict()["unknown_metrics"] == {"7": 1, "bfd_flaps": 2, "ptp_offset": 1}


def test_duplicate_endpoint_ts_in_one_batch_first_kept(v):
    stats = ValidationStats()
    b = v.from_records([
        {"endpoint_id": "a", "ts": 10, RTT: 1.0},
        {"endpoint_id": "b", "ts": 10, RTT: 2.0},
        {"endpoint_id": "a", "ts": 10, RTT: 3.0},
        {"endpoint_id": "a", "ts": 11, RTT: 4.0},
        {"endpoint_id": "a", "ts": 10.0, RTT: 5.0},
    ], stats)
    assert stats.dropped_records == Counter({"duplicate_ts": 2})
    assert stats.records == 5  # every record was validated and counted
    assert list(b.endpoint_id) == ["a", "b", "a"]
    assert list(b.ts) == [10.0, 10.0, 11.0]
    assert list(b.values[:, 0]) == [1.0, 2.0, 4.0]


def test_same_ts_for_different_endpoints_is_not_a_duplicate(v):
    stats = ValidationStats()
    b = v.from_records([{"endpoint_id": e, "ts": 0} for e in "abc"], stats)
    assert len(b) == 3 and not stats.dropped_records


_NAIVE = dt.datetime(2026, 1, 1, 0, 0)


@pytest.mark.parametrize("record, field, value", [
    ("not a record", "record", "str"),
    (["endpoint_id", "a"], "record", "list"),
    (None, "record", "NoneType"),
    ({"ts": 1.0}, "endpoint_id", None),
    ({"endpoint_id": "", "ts": 1.0}, "endpoint_id", ""),
    ({"endpoint_id": None, "ts": 1.0}, "endpoint_id", None),
    ({"endpoint_id": 17, "ts": 1.0}, "endpoint_id", 17),
    ({"endpoint_id": b"a", "ts": 1.0}, "endpoint_id", b"a"),
    ({"endpoint_id": "a"}, "ts", None),
    ({"endpoint_id": "a", "ts": None}, "ts", None),
    ({"endpoint_id": "a", "ts": True}, "ts", True),
    ({"endpoint_id": "a", "ts": "1767225600"}, "ts", "1767225600"),
    ({"endpoint_id": "a", "ts": _NAIVE}, "ts", _NAIVE),
    pytest.param({"endpoint_id": "a", "ts": 10**400}, "ts", 10**400, id="ts-huge-int"),
])
def test_structurally_invalid_records_raise_naming_field_and_value(v, record, field, value):
    stats = ValidationStats()
    good = {"endpoint_id": "ok", "ts": 0.0}
    with pytest.raises(OcadValidationError) as ei:
        v.from_records([good, record], stats)
    err = ei.value
    assert err.field == field
    assert err.value == value
    assert err.index == 1
    assert field in str(err) and "record 1" in str(err)
    assert stats == ValidationStats()  # a refused batch counts nothing


@pytest.mark.parametrize("ts", [math.nan, math.inf, -math.inf, np.float32("nan"), np.datetime64("NaT")])
def test_non_finite_ts_raises(v, ts):
    with pytest.raises(OcadValidationError) as ei:
        v.from_records([{"endpoint_id": "a", "ts": ts}], ValidationStats())
    assert ei.value.field == "ts"
    assert ei.value.index == 0


def test_aware_datetimes_and_datetime64_accepted(v):
    utc = dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc)
    plus2 = dt.datetime(2026, 1, 1, 2, 0, 5, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    b = v.from_records([
        {"endpoint_id": "a", "ts": utc},
        {"endpoint_id": "b", "ts": plus2},
        {"endpoint_id": "c", "ts": np.datetime64("2026-01-01T00:00:10", "s")},
        {"endpoint_id": "d", "ts": np.int64(1_767_225_615)},
    ], ValidationStats(), tz=dt.timezone.utc)  # datetime64 is naive: read in the given zone
    assert list(b.ts) == [1_767_225_600.0, 1_767_225_605.0, 1_767_225_610.0, 1_767_225_615.0]


# -- the accounting property ----------------------------------------------------------------------------

def classify(spec: MetricSpec, value: Any) -> str:
    """The policy table, written independently of the implementation."""
    if value is None:
        return "missing"
    if isinstance(value, (bool, np.bool_)):
        if spec.kind is not MetricKind.BOOLEAN:
            return "wrong_type"
        f = float(value)
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
    if not spec.low <= f <= spec.high:
        return "out_of_range"
    if spec.kind is MetricKind.BOOLEAN and f not in (0.0, 1.0):
        return "out_of_range"
    if spec.kind is MetricKind.COUNT and f != round(f):
        return "not_integer"
    return "accepted"


ODD_VALUES = [10**400, -(10**400), 2**64, -1.2345678901234567e308, 1e308, -0.0, "12", "nan", b"1", "",
              np.bool_(True), np.bool_(False), np.float32(2.5), np.float32("nan"), np.int64(-3), np.uint8(7),
              np.float16(1.0), Fraction(1, 3), Decimal("2"), 3 + 0j, [1], (), object()]

values_st = st.one_of(
    st.none(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.floats(min_value=-2.0, max_value=3.0),
    st.integers(min_value=-5, max_value=5),
    st.integers(),
    st.booleans(),
    st.text(max_size=3),
    st.sampled_from(ODD_VALUES),
)
UNKNOWN_KEYS = ["bfd_flaps", "my_kpi", "RTT"]


@st.composite
def record_st(draw) -> dict[str, Any]:
    rec: dict[str, Any] = {"endpoint_id": draw(st.sampled_from(["a", "b", "c"])),
                           "ts": draw(st.integers(min_value=0, max_value=4))}
    for key in draw(st.lists(st.sampled_from(NAMES + tuple(UNKNOWN_KEYS)), unique=True, max_size=8)):
        rec[key] = draw(values_st)
    return rec


def expected_stats(records: list[dict[str, Any]]) -> tuple[Counter, int, int, Counter]:
    rejected: Counter = Counter()
    accepted = missing = 0
    unknown: Counter = Counter()
    for rec in records:
        for name, spec in SPECS.items():
            c = classify(spec, rec.get(name))
            if c == "accepted":
                accepted += 1
            elif c == "missing":
                missing += 1
            else:
                rejected[(name, c)] += 1
        unknown.update(k for k in rec if k not in SPECS and k not in ("endpoint_id", "ts"))
    return rejected, accepted, missing, unknown


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(record_st(), max_size=12))
def test_every_value_is_accounted_for_records(records):
    v = Validator(MetricRegistry(ORAN_METRICS))
    stats = ValidationStats()
    b = v.from_records(records, stats)
    assert stats.records == len(records)
    assert stats.values_accepted + stats.values_missing + stats.values_rejected == len(records) * M
    rejected, accepted, missing, unknown = expected_stats(records)
    assert stats.rejected == rejected
    assert stats.values_accepted == accepted and stats.values_missing == missing
    assert stats.unknown_metrics == unknown
    # duplicates: first of each (endpoint, ts) kept, in input order
    first: dict[tuple[str, float], int] = {}
    for i, r in enumerate(records):
        first.setdefault((r["endpoint_id"], float(r["ts"])), i)
    kept = sorted(first.values())
    assert stats.dropped_records.get("duplicate_ts", 0) == len(records) - len(kept)
    assert len(b) == len(kept)
    for row, i in enumerate(kept):
        for j, (name, spec) in enumerate(SPECS.items()):
            val = records[i].get(name)
            if classify(spec, val) == "accepted":
                assert b.values[row, j] == float(val)
            else:
                assert np.isnan(b.values[row, j])


bad_record_st = st.one_of(
    st.sampled_from(["x", 3, None, ["endpoint_id"]]),
    st.fixed_dictionaries({"ts": st.integers(0, 3)}),
    st.fixed_dictionaries({"endpoint_id": st.sampled_from(["", None, 5, b"a"]), "ts": st.integers(0, 3)}),
    st.fixed_dictionaries({"endpoint_id": st.just("a"),
                           "ts": st.sampled_from([None, math.nan, math.inf, "5", True, 10**400, _NAIVE])}),
)


@settings(max_examples=40, deadline=None)
@given(good=st.lists(record_st(), max_size=5), bad=bad_record_st, tail=st.lists(record_st(), max_size=3))
def test_only_ocad_validation_error_escapes_and_nothing_is_counted(good, bad, tail):
    v = Validator(MetricRegistry(ORAN_METRICS))
    stats = ValidationStats()
    with pytest.raises(OcadValidationError) as ei:
        v.from_records(good + [bad] + tail, stats)
    assert ei.value.index == len(good)
    assert ei.value.field in ("record", "endpoint_id", "ts")
    assert stats == ValidationStats()


# -- columns ------------------------------------------------------------------------------------------

@st.composite
def column_st(draw, r: int) -> np.ndarray:
    kind = draw(st.sampled_from(["float", "int", "bool", "object", "str"]))
    if kind == "float":
        return np.array(draw(st.lists(st.floats(allow_nan=True, allow_infinity=True) | st.floats(-2, 3),
                                      min_size=r, max_size=r)), dtype=np.float64)
    if kind == "int":
        return np.array(draw(st.lists(st.integers(-3, 70_000), min_size=r, max_size=r)), dtype=np.int64)
    if kind == "bool":
        return np.array(draw(st.lists(st.booleans(), min_size=r, max_size=r)), dtype=bool)
    if kind == "str":
        return np.array(draw(st.lists(st.sampled_from(["1", "x", ""]), min_size=r, max_size=r)))
    col = np.empty(r, dtype=object)
    col[:] = draw(st.lists(values_st, min_size=r, max_size=r))
    return col


@st.composite
def columns_st(draw):
    r = draw(st.integers(min_value=1, max_value=8))
    eps = draw(st.lists(st.sampled_from(["a", "b", "c"]), min_size=r, max_size=r))
    ts = np.array(draw(st.lists(st.integers(0, 3), min_size=r, max_size=r)), dtype=np.float64)
    present = draw(st.lists(st.sampled_from(NAMES + ("bfd_flaps",)), unique=True))
    return eps, ts, {k: draw(column_st(r)) for k in present}


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=columns_st())
def test_every_value_is_accounted_for_columns(data):
    eps, ts, cols = data
    r = len(eps)
    v = Validator(MetricRegistry(ORAN_METRICS))
    stats = ValidationStats()
    b = v.from_columns(np.array(eps, dtype=object), ts, cols, stats)
    assert stats.records == r
    assert stats.values_accepted + stats.values_missing + stats.values_rejected == r * M
    records = [{"endpoint_id": eps[i], "ts": ts[i], **{k: c[i] for k, c in cols.items()}} for i in range(r)]
    rejected, accepted, missing, unknown = expected_stats(records)
    assert stats.rejected == rejected
    assert (stats.values_accepted, stats.values_missing) == (accepted, missing)
    assert stats.unknown_metrics == unknown
    # the same data as records gives the same batch and the same counters
    stats2 = ValidationStats()
    b2 = v.from_records(records, stats2)
    assert stats2 == stats
    np.testing.assert_array_equal(b.values, b2.values)
    np.testing.assert_array_equal(b.ts, b2.ts)
    assert list(b.endpoint_id) == list(b2.endpoint_id)


def test_columns_bool_dtype_for_gauge_rejected_and_for_boolean_accepted(v):
    stats = ValidationStats()
    b = v.from_columns(["a", "b"], [0, 0], {RTT: np.array([True, False]), LBM_OK: np.array([True, False])}, stats)
    assert stats.rejected == Counter({(RTT, "wrong_type"): 2})
    np.testing.assert_array_equal(b.values[:, NAMES.index(LBM_OK)], [1.0, 0.0])
    assert stats.values_missing == 2 * (M - 2)


@pytest.mark.parametrize("eps, ts, cols, field", [
    (["a", ""], [0, 1], {}, "endpoint_id"),
    (["a", 3], [0, 1], {}, "endpoint_id"),
    (["a", "b"], [0], {}, "ts"),
    (["a", "b"], [0, np.nan], {}, "ts"),
    (["a", "b"], np.array(["2026-01-01", "NaT"], dtype="datetime64[s]"), {}, "ts"),
    (["a", "b"], [0, 1], {RTT: [1.0]}, RTT),
    (["a", "b"], [0, 1], {RTT: [1.0, 2.0], ECPRI: [[1.0], [2.0, 3.0]]}, ECPRI),
])
def test_columns_structural_errors(v, eps, ts, cols, field):
    stats = ValidationStats()
    with pytest.raises(OcadValidationError) as ei:
        v.from_columns(eps, ts, cols, stats)
    assert ei.value.field == field
    assert stats == ValidationStats()


def test_columns_datetime64_ts(v):
    ts = np.array(["2026-01-01T00:00:00", "2026-01-01T00:00:05"], dtype="datetime64[ms]")
    with pytest.raises(OcadValidationError, match="no time zone"):
        v.from_columns(["a", "b"], ts, {RTT: [1.0, 2.0]}, ValidationStats())
    b = v.from_columns(["a", "b"], ts, {RTT: [1.0, 2.0]}, ValidationStats(), tz=dt.timezone.utc)
    assert list(b.ts) == [1_767_225_600.0, 1_767_225_605.0]
