"""The one timestamp policy (docs/timestamps.md): every path, every kind of value."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from ocad.core import Monitor, OcadValidationError
from ocad.core._time import TS_MAX, parse_tz, ts_column, ts_scalar

T0 = 1_767_225_600.0  # 2026-01-01T00:00:00Z
PARIS = "Europe/Paris"
RTT = "udp_echo_rtt_ms"


def _mon(**kw):
    return Monitor.from_defaults(use_shipped_models=False, **kw) if not kw else \
        Monitor({"monitor": {"use_shipped_models": False}}, **kw)


# -- scalars: records ---------------------------------------------------------------------------------
@pytest.mark.parametrize("value", [
    T0, int(T0), np.float64(T0), np.int64(int(T0)),
    dt.datetime(2026, 1, 1, tzinfo=dt.timezone.utc),
    dt.datetime(2026, 1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1))),
    "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", "2026-01-01T02:00:00+02:00",
    "2026-01-01 00:00:00.000Z",
])
def test_instants_accepted_without_tz(value):
    assert ts_scalar(value) == T0


@pytest.mark.parametrize("value", [
    dt.datetime(2026, 1, 1), "2026-01-01T00:00:00", "2026-01-01 00:00", np.datetime64("2026-01-01T00:00:00"),
])
def test_naive_values_refused_without_tz(value):
    with pytest.raises(OcadValidationError, match="no time zone") as ei:
        ts_scalar(value, index=3)
    assert ei.value.field == "ts" and ei.value.index == 3


@pytest.mark.parametrize("value", [dt.datetime(2026, 1, 1, 1), "2026-01-01T01:00:00",
                                   np.datetime64("2026-01-01T01:00:00")])
def test_naive_values_read_in_the_given_zone(value):
    assert ts_scalar(value, parse_tz(PARIS)) == T0  # 01:00 in Paris (CET, +01:00) = 00:00Z
    assert ts_scalar(value, parse_tz("+01:00")) == T0
    assert ts_scalar(value, parse_tz("UTC")) == T0 + 3600


def test_summer_time_of_the_zone_is_used():
    # 2026-07-01T02:00 CEST (+02:00) = 00:00Z
    assert ts_scalar("2026-07-01T02:00:00", parse_tz(PARIS)) == 1_782_864_000.0


@pytest.mark.parametrize("value, msg", [
    (T0 * 1000, "milliseconds"), (-1.0, "out of range"), (TS_MAX + 1, "out of range"),
    ("0001-01-01T00:00:00Z", "out of range"), (float("nan"), "finite"), (float("inf"), "finite"),
    (10**400, "finite"), (True, "epoch seconds"), (None, "epoch seconds"), ("yesterday", "ISO-8601"),
    (b"2026", "epoch seconds"), (np.datetime64("NaT"), "NaT"),
])
def test_bad_values_refused(value, msg):
    with pytest.raises(OcadValidationError, match=msg):
        ts_scalar(value, parse_tz("UTC"))


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "+25:00", 3])
def test_unknown_zone_refused(tz):
    with pytest.raises(OcadValidationError) as ei:
        parse_tz(tz)
    assert ei.value.field == "tz"


# -- columns --------------------------------------------------------------------------------------------
def test_columns_numbers_strings_and_datetimes():
    assert list(ts_column([T0, T0 + 5], 2)) == [T0, T0 + 5]
    assert list(ts_column(np.array(["2026-01-01T00:00:00Z", "2026-01-01T01:00:05+01:00"]), 2)) == [T0, T0 + 5]
    naive = np.array(["2026-01-01T01:00:00", "2026-07-01T02:00:00"], dtype="datetime64[s]")
    with pytest.raises(OcadValidationError, match="no time zone"):
        ts_column(naive, 2)
    # Both offsets of the zone in one column: winter +01:00, summer +02:00.
    assert list(ts_column(naive, 2, parse_tz(PARIS))) == [T0, 1_782_864_000.0]
    with pytest.raises(OcadValidationError, match="milliseconds"):
        ts_column(np.array([T0, T0 * 1000]), 2)
    with pytest.raises(OcadValidationError, match="out of range") as ei:
        ts_column(np.array([T0, -5, T0]), 3)
    assert ei.value.index == 1


def test_pandas_and_arrow_columns():
    pd = pytest.importorskip("pandas")
    pa = pytest.importorskip("pyarrow")
    aware = pd.Series(pd.to_datetime([T0, T0 + 5], unit="s", utc=True)).dt.tz_convert(PARIS)
    assert list(ts_column(aware, 2)) == [T0, T0 + 5]
    naive = pd.Series(pd.to_datetime(["2026-01-01T01:00:00", "2026-01-01T01:00:05"]))
    with pytest.raises(OcadValidationError, match="no time zone"):
        ts_column(naive, 2)
    assert list(ts_column(naive, 2, parse_tz(PARIS))) == [T0, T0 + 5]
    for unit in ("s", "ms", "us", "ns"):
        arr = pa.array([int(T0) * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[unit]],
                       pa.timestamp(unit, tz="Asia/Tokyo"))
        assert list(ts_column(arr, 1)) == [T0]
    with pytest.raises(OcadValidationError, match="no time zone"):
        ts_column(pa.array([int(T0)], pa.timestamp("s")), 1)
    assert list(ts_column(pa.array([int(T0) + 3600], pa.timestamp("s")), 1, parse_tz(PARIS))) == [T0]
    assert list(ts_column(pa.chunked_array([pa.array([T0]), pa.array([T0 + 5])]), 2)) == [T0, T0 + 5]


# -- the Monitor: records, columns, frames, tz= on the Monitor and per call -----------------------------
def test_monitor_records_and_columns_follow_the_policy():
    mon = _mon()
    mon.observe([{"endpoint_id": "a", "ts": "2026-01-01T00:00:00Z", RTT: 1.0}])
    with pytest.raises(OcadValidationError, match="no time zone"):
        mon.observe([{"endpoint_id": "a", "ts": "2026-01-01T00:00:05", RTT: 1.0}])
    mon.observe([{"endpoint_id": "a", "ts": "2026-01-01T01:00:05", RTT: 1.0}], tz=PARIS)
    with pytest.raises(OcadValidationError, match="no time zone"):
        mon.observe_columns(["a"], np.array(["2026-01-01T01:00:10"], dtype="datetime64[s]"), {RTT: [1.0]})
    mon.observe_columns(["a"], np.array(["2026-01-01T01:00:10"], dtype="datetime64[s]"), {RTT: [1.0]}, tz=PARIS)
    assert float(mon.store.last_ts[mon.store.lookup(np.array(["a"], dtype=object))[0]]) == T0 + 10
    assert mon.stats.records == 3

    paris = _mon(tz=PARIS)  # the Monitor's zone, used when a call gives none
    paris.observe([{"endpoint_id": "a", "ts": dt.datetime(2026, 1, 1, 1), RTT: 1.0}])
    assert float(paris.store.last_ts[0]) == T0


def test_monitor_frames_follow_the_policy():
    pd = pytest.importorskip("pandas")
    aware = pd.DataFrame({"endpoint_id": ["a", "b"], "ts": pd.to_datetime([T0, T0], unit="s", utc=True), RTT: 1.0})
    _mon().observe(aware)
    naive = aware.assign(ts=aware["ts"].dt.tz_localize(None))
    with pytest.raises(OcadValidationError, match="no time zone"):
        _mon().observe(naive)
    _mon().observe(naive, tz="UTC")
    with pytest.raises(OcadValidationError, match="milliseconds"):
        _mon().observe(aware.assign(ts=[T0 * 1000, T0 * 1000]))


# -- score_frame: ts in the input's type and zone, rows in input order ----------------------------------
def _shuffled_rows(n_ep=3, n_t=40):
    rng = np.random.default_rng(0)
    rows = [{"endpoint_id": f"e{e}", "ts": T0 + 5 * t, RTT: float(rng.normal(5, 0.3))}
            for t in range(n_t) for e in range(n_ep)]
    # Input order: endpoints interleaved, but not time-sorted across endpoints.
    return [r for e in range(n_ep) for r in rows if r["endpoint_id"] == f"e{e}"]


def test_score_frame_keeps_input_order_and_ts_type_for_frames():
    pd = pytest.importorskip("pandas")
    df = pd.DataFrame(_shuffled_rows())
    ref = _mon().score_frame(df)
    assert list(ref["endpoint_id"]) == list(df["endpoint_id"])
    assert list(ref["ts"]) == list(df["ts"]) and ref["ts"].dtype == np.float64
    paris = df.assign(ts=pd.to_datetime(df["ts"], unit="s", utc=True).dt.tz_convert(PARIS))
    got = _mon().score_frame(paris)
    assert str(got["ts"].dtype) == str(paris["ts"].dtype)  # datetime64[.., Europe/Paris]
    assert (got["ts"] == paris["ts"]).all()
    np.testing.assert_array_equal(got["composite"].to_numpy(), ref["composite"].to_numpy())
    naive = paris.assign(ts=paris["ts"].dt.tz_localize(None))
    got = _mon().score_frame(naive, tz=PARIS)
    assert got["ts"].dt.tz is None and (got["ts"] == naive["ts"]).all()
    np.testing.assert_array_equal(got["composite"].to_numpy(), ref["composite"].to_numpy())


def test_score_frame_keeps_input_order_and_ts_values_for_records():
    rows = _shuffled_rows()
    ref = _mon().score_frame(rows, as_frame=False)
    assert list(ref["endpoint_id"]) == [r["endpoint_id"] for r in rows]
    assert ref["ts"].dtype == np.float64 and list(ref["ts"]) == [r["ts"] for r in rows]
    iso = [{**r, "ts": dt.datetime.fromtimestamp(r["ts"], dt.timezone.utc).isoformat()} for r in rows]
    got = _mon().score_frame(iso, as_frame=False)
    assert list(got["ts"]) == [r["ts"] for r in iso]  # the strings, as given
    np.testing.assert_array_equal(got["composite"], ref["composite"])
    ints = [{**r, "ts": int(r["ts"])} for r in rows]
    assert _mon().score_frame(ints, as_frame=False)["ts"].dtype.kind == "i"


def test_score_frame_long_format_in_first_appearance_order():
    pd = pytest.importorskip("pandas")
    wide = pd.DataFrame(_shuffled_rows(n_ep=2, n_t=10))
    long = wide.melt(id_vars=["endpoint_id", "ts"], var_name="metric", value_name="value")
    got = _mon().score_frame(long)
    assert list(zip(got["endpoint_id"], got["ts"])) == list(zip(wide["endpoint_id"], wide["ts"]))
