"""The one timestamp policy: every ``ts`` that enters OCAD becomes float epoch seconds here.

Records, columns, frames, files and every command go through :func:`ts_scalar` or
:func:`ts_column` (the table is in ``docs/timestamps.md``):

- numbers are epoch seconds (UTC);
- timezone-aware values (``datetime`` with ``tzinfo``, ISO-8601 strings with an offset or
  ``Z``, tz-aware pandas / Arrow columns) are instants and are converted exactly;
- naive values (``datetime`` without ``tzinfo``, ISO-8601 strings without an offset,
  ``numpy.datetime64``, naive pandas / Arrow timestamps) are wall-clock times in an
  unknown zone: refused unless a time zone is given (``tz=``, ``--tz``), then read as
  wall-clock times in that zone (an ambiguous time in a DST fall-back takes the first
  occurrence, ``fold=0``);
- everything must lie in [1970-01-01, 2262-04-11] UTC (epoch seconds 0 to
  :data:`TS_MAX`, the range of ``datetime64[ns]``): epoch *milliseconds* for seconds
  (1.7e12) and negative times are refused with a message that says so.

Pure standard library + numpy: no pandas or pyarrow import here.
"""

from __future__ import annotations

import datetime as _dt
import math
from numbers import Real
from typing import Any

import numpy as np

from ._errors import OcadValidationError

__all__ = ["TS_MAX", "TS_MIN", "parse_tz", "ts_column", "ts_scalar"]

TS_MIN = 0.0
#: The last second ``datetime64[ns]`` (pandas' default unit) can hold: 2262-04-11T23:47:16Z.
TS_MAX = 9_223_372_036.0
_UTC = _dt.timezone.utc
_EXPECTED = ("must be epoch seconds (int/float), a timezone-aware datetime or an ISO-8601 string "
             "with an offset or 'Z'")
_NAIVE = "has no time zone; give one with tz= (Python) or --tz (CLI), or send an offset / epoch seconds"


def parse_tz(tz: Any) -> _dt.tzinfo | None:
    """``None``, a ``tzinfo``, or an IANA name / ``"UTC"`` / ``"+02:00"`` → ``tzinfo``."""
    if tz is None or isinstance(tz, _dt.tzinfo):
        return tz
    if not isinstance(tz, str) or not tz.strip():
        raise OcadValidationError("tz", tz, "must be a time zone name such as 'UTC' or 'Europe/Paris', "
                                            "or an offset such as '+02:00'")
    s = tz.strip()
    if s.upper() in ("UTC", "Z"):
        return _UTC
    if s[0] in "+-":
        try:
            off = _dt.datetime.fromisoformat("2000-01-01T00:00:00" + s).utcoffset()
        except ValueError:
            off = None
        if off is None:
            raise OcadValidationError("tz", tz, "not an offset of the form +HH:MM / -HH:MM")
        return _dt.timezone(off)
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(s)
    except (ZoneInfoNotFoundError, ValueError):
        raise OcadValidationError("tz", tz, "unknown time zone (an IANA name such as 'Europe/Paris', "
                                            "'UTC', or an offset such as '+02:00')") from None


def _in_range(f: float, v: Any, index: int | None) -> float:
    if not math.isfinite(f):
        raise OcadValidationError("ts", v, "must be finite", index=index)
    if not TS_MIN <= f <= TS_MAX:
        hint = " (epoch milliseconds or microseconds? OCAD takes seconds)" if f > TS_MAX else ""
        raise OcadValidationError("ts", v, f"out of range: epoch seconds must lie in [0, {TS_MAX:.0f}] "
                                           f"(1970-01-01 to 2262-04-11 UTC){hint}", index=index)
    return f


def _datetime(d: _dt.datetime, v: Any, tz: _dt.tzinfo | None, index: int | None) -> float:
    if d.tzinfo is None or d.utcoffset() is None:
        if tz is None:
            raise OcadValidationError("ts", v, f"naive datetime {_NAIVE}", index=index)
        d = d.replace(tzinfo=tz)
    return d.timestamp()


def ts_scalar(v: Any, tz: _dt.tzinfo | None = None, index: int | None = None) -> float:
    """One timestamp → epoch seconds, or :class:`OcadValidationError` naming the value."""
    if isinstance(v, bool) or v is None:
        raise OcadValidationError("ts", v, _EXPECTED, index=index)
    if isinstance(v, _dt.datetime):
        return _in_range(_datetime(v, v, tz, index), v, index)
    if isinstance(v, str):
        try:
            d = _dt.datetime.fromisoformat(v.strip())
        except ValueError:
            raise OcadValidationError("ts", v, _EXPECTED, index=index) from None
        return _in_range(_datetime(d, v, tz, index), v, index)
    if isinstance(v, np.datetime64):
        if np.isnat(v):
            raise OcadValidationError("ts", v, "must be a time, not NaT", index=index)
        if tz is None:
            raise OcadValidationError("ts", v, f"datetime64 (naive) {_NAIVE}", index=index)
        return _in_range(float(_naive_column(np.array([v]), tz)[0]), v, index)
    if type(v).__name__ == "Timestamp" and hasattr(v, "to_pydatetime"):  # pandas, without importing it
        if v != v:  # NaT
            raise OcadValidationError("ts", v, "must be a time, not NaT", index=index)
        return _in_range(_datetime(v.to_pydatetime(), v, tz, index), v, index)
    if not isinstance(v, Real):
        raise OcadValidationError("ts", v, _EXPECTED, index=index)
    try:
        f = float(v)
    except OverflowError:  # an int beyond float64
        f = math.inf
    return _in_range(f, v, index)


def _wall_seconds(arr: np.ndarray) -> np.ndarray:
    """datetime64 of any unit → float seconds of the wall-clock reading (as if UTC)."""
    return arr.astype("datetime64[us]").astype(np.int64) / 1e6


def _naive_column(arr: np.ndarray, tz: _dt.tzinfo | None) -> np.ndarray:
    """Naive ``datetime64`` values, wall-clock times in ``tz`` → epoch seconds."""
    bad = np.isnat(arr)
    if bad.any():
        i = int(np.argmax(bad))
        raise OcadValidationError("ts", arr[i], "must be a time, not NaT", index=i)
    if tz is None:
        raise OcadValidationError("ts", arr[0], f"datetime64 (naive) {_NAIVE}", index=0)
    wall = _wall_seconds(arr)
    if tz is _UTC:
        return wall
    # UTC offsets change on whole minutes: one utcoffset() call per distinct minute of the column.
    minutes, inv = np.unique(np.floor(wall / 60.0), return_inverse=True)
    offs = np.empty(minutes.size)
    for k, m in enumerate(minutes.tolist()):
        try:
            d = _dt.datetime(1970, 1, 1) + _dt.timedelta(minutes=m)
        except OverflowError:
            raise OcadValidationError("ts", arr[int(np.argmax(inv == k))], "out of range") from None
        off = d.replace(tzinfo=tz).utcoffset()
        offs[k] = off.total_seconds() if off is not None else 0.0
    return wall - offs[inv.ravel()]


def _check_range(out: np.ndarray, arr: Any) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        bad = ~np.isfinite(out) | (out < TS_MIN) | (out > TS_MAX)
    if bad.any():
        i = int(np.argmax(bad))
        _in_range(float(out[i]), arr[i], i)
    return out


def ts_column(ts: Any, n: int, tz: _dt.tzinfo | None = None) -> np.ndarray:
    """A column of ``n`` timestamps → float64 epoch seconds (checked, see the module docstring).

    Accepts numbers, ``datetime64`` (naive: needs ``tz``), a pandas Series / Index (tz-aware or
    not), a pyarrow Array / ChunkedArray, or any sequence of values :func:`ts_scalar` takes.
    """
    arr = _from_library(ts, tz)
    if arr is None:
        try:
            arr = np.asarray(ts)
        except (TypeError, ValueError) as exc:
            raise OcadValidationError("ts", type(ts).__name__, f"not a column of timestamps: {exc}") from None
    if arr.shape != (n,):
        raise OcadValidationError("ts", f"shape {arr.shape}", f"must have shape ({n},)")
    if arr.dtype.kind == "f" or arr.dtype.kind in "iu":
        return _check_range(arr.astype(np.float64), arr)
    if arr.dtype.kind == "M":
        return _check_range(_naive_column(arr, tz), arr)
    if arr.dtype.kind == "b":
        raise OcadValidationError("ts", arr[0] if n else None, _EXPECTED, index=0)
    out = np.empty(n, dtype=np.float64)
    cache: dict[Any, float] = {}  # strings repeat across a fleet's tick: parse each once
    for i, v in enumerate(arr.tolist() if arr.dtype.kind in "OUS" else arr):
        if isinstance(v, str):
            f = cache.get(v)
            if f is None:
                f = cache[v] = ts_scalar(v, tz, i)
            out[i] = f
        else:
            out[i] = ts_scalar(v, tz, i)
    return out


def _from_library(ts: Any, tz: _dt.tzinfo | None) -> np.ndarray | None:
    """pandas / pyarrow columns with a time zone → epoch seconds; others → None (numpy path)."""
    mod = type(ts).__module__.split(".", 1)[0]
    if mod == "pyarrow":
        import pyarrow as pa
        import pyarrow.compute as pc

        typ = ts.type
        if pa.types.is_timestamp(typ):
            if typ.tz is None:  # naive: wall-clock times, numpy path (needs tz)
                return _naive_column(np.asarray(ts.cast(pa.timestamp("us")).to_numpy(zero_copy_only=False)),
                                     tz) if len(ts) else np.empty(0)
            if ts.null_count:
                raise OcadValidationError("ts", None, "must be a time, not null")
            scale = {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[typ.unit]
            return np.asarray(pc.cast(ts, pa.int64()).to_numpy(zero_copy_only=False)) / scale
        if ts.null_count:
            raise OcadValidationError("ts", None, "must be a time, not null")
        return np.asarray(ts.to_numpy(zero_copy_only=False))
    if mod == "pandas" and hasattr(ts, "dtype"):
        dt_tz = getattr(ts.dtype, "tz", None)
        if dt_tz is not None:
            if hasattr(ts, "isna") and bool(ts.isna().any()):
                raise OcadValidationError("ts", None, "must be a time, not NaT")
            vals = ts.array if hasattr(ts, "array") else ts
            # asi8 is in the dtype's unit (ns before pandas 3, "us" or other units since).
            unit = getattr(ts.dtype, "unit", "ns")
            return np.asarray(vals.asi8, dtype=np.float64) / {"s": 1.0, "ms": 1e3, "us": 1e6, "ns": 1e9}[unit]
        return np.asarray(ts.to_numpy())
    return None
