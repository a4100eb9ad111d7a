"""Validation: raw records or columns → a clean batch, with every bad value counted.

Policy (documented in ``docs/architecture.md`` and tested):

====================================  ===========================================
input                                  handling
====================================  ===========================================
record not a mapping                   ``OcadValidationError`` (field ``record``)
``endpoint_id`` missing / not a        ``OcadValidationError`` naming the field
non-empty string                       and the value
``ts`` missing, unusable, naive        ``OcadValidationError``; the timestamp policy
without a ``tz``, out of range, or     is in ``ocad.core._time`` and
float32 / float16                      ``docs/timestamps.md``
``endpoint_id`` with a control char    ``OcadValidationError`` (ids are compared as
(``\x00``-``\x1f``, ``\x7f``-``\x9f``),  exact strings; numpy would drop a trailing
a lone surrogate, or longer than       NUL and merge two ids; one huge id would
:data:`MAX_ENDPOINT_ID_LEN` chars      size every id column)
metric value ``None``, NaN, ``pd.NA``  missing (counted ``missing``), never zero
metric value ±inf                      rejected, reason ``non_finite``
str / bytes / other types, or a bool   rejected, reason ``wrong_type`` (a numeric
for a gauge / count metric, a number   string is *not* parsed: "12" is a bug
``float()`` refuses (``timedelta64``)  upstream, not a measurement)
outside the metric's [low, high], or   rejected, reason ``out_of_range``
an int too large for a float64, or
beyond float32 (``|x| > 3.4e38``: the
window store holds float32)
boolean metric not 0/1                 rejected, reason ``out_of_range``
count metric not an integer            rejected, reason ``not_integer``
unknown metric key                     ignored, counted under ``unknown_metrics``
                                       (the first :data:`MAX_UNKNOWN_NAMES` names,
                                       the rest together under ``"<other>"``)
same (endpoint, ts) twice in a batch   first kept, later dropped: ``duplicate_ts``
====================================  ===========================================

Order against earlier batches (older or equal timestamps, clock resets) is
enforced by the Monitor with the WindowStore's last timestamp per endpoint.
A rejected value becomes missing (NaN) in the batch: the record itself is kept.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from numbers import Real
from typing import Any

import attrs
import numpy as np

from .._errors import OcadValidationError
from .._time import ts_column, ts_scalar
from .._metrics import RESERVED, MetricKind, MetricRegistry, MetricSpec

__all__ = ["MAX_ENDPOINT_ID_LEN", "MAX_UNKNOWN_NAMES", "Batch", "ValidationStats", "Validator"]

#: Longest endpoint id accepted (characters).
MAX_ENDPOINT_ID_LEN = 256
#: Distinct unknown metric names counted by name; later ones are counted under :data:`OTHER_UNKNOWN`.
MAX_UNKNOWN_NAMES = 1000
OTHER_UNKNOWN = "<other>"
#: Unknown names longer than this are counted under :data:`OTHER_UNKNOWN` too.
MAX_UNKNOWN_NAME_LEN = 128
# C0 and C1 control characters, DEL, lone surrogates: never part of an endpoint id.
_BAD_ID_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_NARROW_FLOATS = frozenset({np.float32, np.float16})
#: The window store holds float32: a larger magnitude would become ±inf there.
F32_MAX = float(np.finfo(np.float32).max)

_FAST_NUM = frozenset({float, int, type(None), np.float64, np.float32, np.int64, np.int32})
_FAST_BOOL = _FAST_NUM | {bool, np.bool_}
# From this many ids on, comparing with the last validated id column beats checking each id.
_IDS_CACHE_MIN = 64


@attrs.define
class ValidationStats:
    """Counters of everything validation and ordering did; nothing is dropped uncounted."""

    records: int = 0
    values_accepted: int = 0
    values_missing: int = 0
    rejected: Counter[tuple[str, str]] = attrs.field(factory=Counter)  # (metric, reason) → n
    unknown_metrics: Counter[str] = attrs.field(factory=Counter)
    dropped_records: Counter[str] = attrs.field(factory=Counter)  # reason → n
    clock_resets: int = 0

    @property
    def values_rejected(self) -> int:
        return sum(self.rejected.values())

    def count_unknown(self, name: Any, n: int) -> None:
        """Count ``n`` values of an unknown metric, by name for the first :data:`MAX_UNKNOWN_NAMES` names."""
        key = name if isinstance(name, str) else repr(name)
        u = self.unknown_metrics
        if key not in u and (len(u) >= MAX_UNKNOWN_NAMES or len(key) > MAX_UNKNOWN_NAME_LEN):
            key = OTHER_UNKNOWN
        u[key] += n

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "values_accepted": self.values_accepted,
            "values_missing": self.values_missing,
            "values_rejected": self.values_rejected,
            "rejected": {f"{m}:{r}": n for (m, r), n in sorted(self.rejected.items())},
            "unknown_metrics": dict(sorted(self.unknown_metrics.items())),
            "dropped_records": dict(sorted(self.dropped_records.items())),
            "clock_resets": self.clock_resets,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ValidationStats:
        """From :meth:`to_dict`'s output; every count checked (``ValueError`` naming the field)."""
        if not isinstance(d, Mapping):
            raise ValueError(f"validation counters must be an object, not {type(d).__name__}")

        def count(field: str, v: Any) -> int:
            if isinstance(v, bool) or not isinstance(v, int) or v < 0:
                raise ValueError(f"validation.{field} = {v!r:.80} must be an integer >= 0")
            return v

        def counter(field: str, keys_with_colon: bool = False) -> Counter[Any]:
            raw = d.get(field, {})
            if not isinstance(raw, Mapping):
                raise ValueError(f"validation.{field} must be an object")
            out: Counter[Any] = Counter()
            for k, v in raw.items():
                if not isinstance(k, str) or (keys_with_colon and ":" not in k):
                    raise ValueError(f"validation.{field}: bad key {k!r:.80}")
                out[tuple(k.rsplit(":", 1)) if keys_with_colon else k] = count(f"{field}.{k[:80]}", v)
            return out

        unknown = counter("unknown_metrics")
        if len(unknown) > MAX_UNKNOWN_NAMES + 1:
            raise ValueError(f"validation.unknown_metrics has {len(unknown)} names (at most {MAX_UNKNOWN_NAMES} + 1)")
        return cls(records=count("records", d.get("records")),
                   values_accepted=count("values_accepted", d.get("values_accepted")),
                   values_missing=count("values_missing", d.get("values_missing")),
                   rejected=counter("rejected", True), unknown_metrics=unknown,
                   dropped_records=counter("dropped_records"),
                   clock_resets=count("clock_resets", d.get("clock_resets", 0)))


@attrs.frozen(eq=False)
class Batch:
    """Validated samples: row r is (endpoint_id[r], ts[r], values[r, :]) with NaN = missing."""

    endpoint_id: np.ndarray  # (R,) object
    ts: np.ndarray  # (R,) float64
    values: np.ndarray  # (R, M) float64
    #: The endpoint ids are known to be pairwise distinct (one tick); False: not known.
    unique_ids: bool = attrs.field(default=False, kw_only=True, repr=False)
    #: Each row's position in the input (records, columns or frame): score_frame restores input order.
    rows: np.ndarray | None = attrs.field(default=None, kw_only=True, repr=False)

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def take(self, idx: np.ndarray) -> Batch:
        return Batch(self.endpoint_id[idx], self.ts[idx], self.values[idx],
                     rows=None if self.rows is None else self.rows[idx])


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    """Element-wise equal (an id whose == misbehaves counts as different)."""
    try:
        return bool(np.array_equal(a, b))
    except (TypeError, ValueError):
        return False


def _check_endpoint(v: Any, index: int | None) -> str:
    if not isinstance(v, str) or not v:
        raise OcadValidationError("endpoint_id", v, "must be a non-empty string", index=index)
    if len(v) > MAX_ENDPOINT_ID_LEN:
        raise OcadValidationError("endpoint_id", v[:64] + "…", f"is {len(v)} characters long; at most "
                                  f"{MAX_ENDPOINT_ID_LEN}", index=index)
    m = _BAD_ID_CHARS.search(v)
    if m is not None:
        raise OcadValidationError("endpoint_id", v, f"holds the control character {m.group()!r} at position "
                                  f"{m.start()}; ids must be printable (a trailing NUL would merge two ids)",
                                  index=index)
    return v


def _check_id_text(ids: Any) -> None:
    """Non-empty strings already: one pass over the joined ids finds a control character or a long id."""
    if len(ids) and (max(map(len, ids)) > MAX_ENDPOINT_ID_LEN or _BAD_ID_CHARS.search("".join(ids))):
        for i, e in enumerate(ids):
            _check_endpoint(e, i)


def _refuse_narrow_float_ts(dtype: Any, ts: Any, index: int | None = None) -> None:
    """float32 / float16 cannot hold epoch seconds (float32: 128 s steps in 2026): refused, not widened.

    Widening would not bring the lost seconds back: the samples would collapse onto the same few
    timestamps and be dropped as ``duplicate_ts``. Send float64 (or int64) epoch seconds.
    """
    if dtype is not None and getattr(dtype, "kind", None) == "f" and getattr(dtype, "itemsize", 8) < 8:
        v = ts if index is not None else (np.asarray(ts).ravel()[0] if len(ts) else ts)
        raise OcadValidationError("ts", v, f"a {dtype} timestamp cannot hold epoch seconds (float32 has "
                                  "128-second steps in 2026); send float64 or int64 epoch seconds",
                                  index=index if index is not None else 0)


def _is_pd_na(v: Any) -> bool:
    """``pandas.NA`` (the missing marker of nullable columns), recognised without importing pandas."""
    t = type(v)
    return t.__name__ == "NAType" and t.__module__.startswith("pandas")


class Validator:
    """Turns records, columns or frames into a :class:`Batch` according to the policy above."""

    def __init__(self, metrics: MetricRegistry) -> None:
        self.metrics = metrics
        self.specs: tuple[MetricSpec, ...] = tuple(metrics)
        self.names: tuple[str, ...] = metrics.names()
        self._index = {n: i for i, n in enumerate(self.names)}
        # Per metric, for checking all numeric columns at once (see _check_block).
        # Clipped to float32's range: the window store holds float32, a larger value would be ±inf there.
        self._low = np.maximum(np.array([sp.low for sp in self.specs], dtype=np.float64), -F32_MAX)
        self._high = np.minimum(np.array([sp.high for sp in self.specs], dtype=np.float64), F32_MAX)
        self._is_bool = np.array([sp.kind is MetricKind.BOOLEAN for sp in self.specs])
        self._is_count = np.array([sp.kind is MetricKind.COUNT for sp in self.specs])
        # The last endpoint-id column that passed the checks, and whether its ids are distinct:
        # a fleet sends the same ids tick after tick.
        self._ids_cache: tuple[np.ndarray, bool] | None = None

    # -- entry points -----------------------------------------------------
    def from_records(self, records: Iterable[Mapping[str, Any]], stats: ValidationStats, *,
                     tz: _dt.tzinfo | None = None) -> Batch:
        eps: list[str] = []
        tss: list[float] = []
        cols: dict[str, list[Any]] = {n: [] for n in self.names}
        unknown: Counter[str] = Counter()
        for i, rec in enumerate(records):
            if not isinstance(rec, Mapping):
                raise OcadValidationError("record", type(rec).__name__, "each record must be a mapping", index=i)
            if "endpoint_id" not in rec:
                raise OcadValidationError("endpoint_id", None, "missing", index=i)
            if "ts" not in rec:
                raise OcadValidationError("ts", None, "missing", index=i)
            e = rec["endpoint_id"]
            if not isinstance(e, str) or not e:
                _check_endpoint(e, i)
            eps.append(e)
            t = rec["ts"]
            if type(t) in _NARROW_FLOATS:
                _refuse_narrow_float_ts(t.dtype, t, i)
            tss.append(ts_scalar(t, tz, i))
            for n in self.names:
                cols[n].append(rec.get(n))
            if len(rec) > 2:
                for k in rec:
                    if k not in self._index and k not in RESERVED:
                        unknown[k if isinstance(k, str) else repr(k)] += 1
        _check_id_text(eps)
        for k, n in unknown.items():
            stats.count_unknown(k, n)
        r = len(eps)
        ep_arr = np.empty(r, dtype=object)
        ep_arr[:] = eps
        values = np.full((r, len(self.names)), np.nan)
        for j, spec in enumerate(self.specs):
            values[:, j] = self._coerce(spec, cols[spec.name], stats)
        return self._finish(ep_arr, np.asarray(tss, dtype=np.float64), values, stats)

    def from_columns(self, endpoint_id: Any, ts: Any, values: Mapping[str, Any],
                     stats: ValidationStats, *, tz: _dt.tzinfo | None = None) -> Batch:
        """Columnar input: the fast path for large fleets. Arrays of equal length R."""
        ep = np.asarray(endpoint_id, dtype=object).ravel()
        r = ep.shape[0]
        unique = self._check_ids(ep)
        _refuse_narrow_float_ts(getattr(ts, "dtype", None), ts)
        ts_arr = ts_column(ts, r, tz)
        # Every column is checked before anything is counted: a refused batch leaves stats as they were.
        cols: dict[int, np.ndarray] = {}
        for key, col in values.items():
            j = self._index.get(key)
            if j is None:
                continue
            try:
                arr = np.asarray(col)
            except (TypeError, ValueError) as exc:
                raise OcadValidationError(key, type(col).__name__, f"not a column of values: {exc}") from None
            if arr.shape != (r,):
                raise OcadValidationError(key, f"shape {arr.shape}", f"column must have shape ({r},)")
            cols[j] = arr
        for key in values:
            if key not in self._index:
                stats.count_unknown(key, r)
        out = np.full((r, len(self.names)), np.nan)
        numeric = [j for j, arr in cols.items() if arr.dtype.kind in "iuf"]
        if numeric:
            # Plain number columns (the usual case): one range check for all of them.
            js = np.array(numeric, dtype=np.intp)
            block = np.empty((r, js.size))
            for c, j in enumerate(numeric):
                block[:, c] = cols[j]
            out[:, js] = self._check_block(js, block, stats)
        for j, arr in cols.items():
            if arr.dtype.kind not in "iuf":
                out[:, j] = self._coerce(self.specs[j], arr, stats)
        missing_cols = [n for n in self.names if n not in values]
        if missing_cols:
            # A metric absent from the columns is "not reported" this tick: missing, not zero.
            stats.values_missing += r * len(missing_cols)
        return self._finish(ep, ts_arr, out, stats, unique=unique)

    def _check_ids(self, ep: np.ndarray) -> bool:
        """Refuse a bad endpoint id; returns whether the ids are pairwise distinct."""
        r = ep.shape[0]
        c = self._ids_cache
        if r >= _IDS_CACHE_MIN and c is not None and c[0].shape == ep.shape and _same(c[0], ep):
            return c[1]
        for i, e in enumerate(ep):
            if not isinstance(e, str) or not e:
                _check_endpoint(e, i)
        _check_id_text(ep)
        unique = r <= 1 or len(set(ep.tolist())) == r
        if r >= _IDS_CACHE_MIN:
            self._ids_cache = (ep.copy(), unique)
        return unique

    def _check_block(self, js: np.ndarray, x: np.ndarray, stats: ValidationStats) -> np.ndarray:
        """:meth:`_check_range` for numeric columns ``x`` (R, K) of the metrics ``js``, at once."""
        low, high = self._low[js], self._high[js]
        is_bool, is_count = self._is_bool[js], self._is_count[js]
        nan = np.isnan(x)
        finite = np.isfinite(x)
        with np.errstate(invalid="ignore"):
            oor = finite & ((x < low) | (x > high))
            if is_bool.any():
                oor |= finite & is_bool & (x != 0.0) & (x != 1.0)
            non_int = finite & ~oor & is_count & (x != np.round(x)) if is_count.any() else None
        ok = finite & ~oor
        if non_int is not None:
            ok &= ~non_int
        n_nan = int(nan.sum())
        n_ok = int(ok.sum())
        n_bad = x.size - n_nan - n_ok
        if n_bad:
            n_inf = (~finite & ~nan).sum(axis=0).tolist()
            n_oor = oor.sum(axis=0).tolist()
            n_int = non_int.sum(axis=0).tolist() if non_int is not None else [0] * js.size
            for c, j in enumerate(js.tolist()):
                name = self.specs[j].name
                if n_inf[c]:
                    stats.rejected[(name, "non_finite")] += n_inf[c]
                if n_oor[c]:
                    stats.rejected[(name, "out_of_range")] += n_oor[c]
                if n_int[c]:
                    stats.rejected[(name, "not_integer")] += n_int[c]
        stats.values_missing += n_nan
        stats.values_accepted += n_ok
        return x if n_ok == x.size else np.where(ok, x, np.nan)

    # -- per-metric coercion ---------------------------------------------
    def _coerce(self, spec: MetricSpec, col: Any, stats: ValidationStats) -> np.ndarray:
        is_bool = spec.kind is MetricKind.BOOLEAN
        arr = col if isinstance(col, np.ndarray) else None
        # Values rejected here (wrong type, int too large for float64) are NaN in ``x`` and
        # True in ``rejected``, so that _check_range does not count them as missing too.
        rejected: np.ndarray | None = None
        x: np.ndarray | None = None
        if arr is not None and arr.dtype.kind in "iuf":
            x = arr.astype(np.float64)
        elif arr is not None and arr.dtype.kind == "b":
            if is_bool:
                x = arr.astype(np.float64)
            else:
                stats.rejected[(spec.name, "wrong_type")] += int(arr.size)
                return np.full(arr.shape[0], np.nan)
        else:
            seq = list(col)
            types = set(map(type, seq))
            if types <= (_FAST_BOOL if is_bool else _FAST_NUM):
                try:
                    x = np.array([np.nan if v is None else float(v) for v in seq], dtype=np.float64) \
                        if type(None) in types or bool in types else np.asarray(seq, dtype=np.float64)
                except OverflowError:  # an int beyond float64: the loop below counts it
                    x = None
            if x is None:
                x = np.empty(len(seq), dtype=np.float64)
                rejected = np.zeros(len(seq), dtype=bool)
                wrong = huge = 0
                for i, v in enumerate(seq):
                    if v is None or _is_pd_na(v):
                        x[i] = np.nan
                    elif isinstance(v, (bool, np.bool_)):
                        if is_bool:
                            x[i] = float(v)
                        else:
                            x[i] = np.nan
                            rejected[i] = True
                            wrong += 1
                    elif isinstance(v, Real):
                        try:
                            x[i] = float(v)
                        except OverflowError:
                            x[i] = np.nan
                            rejected[i] = True
                            huge += 1
                        except Exception:  # noqa: BLE001 - np.timedelta64 is "Real" but float() refuses it
                            x[i] = np.nan
                            rejected[i] = True
                            wrong += 1
                    else:
                        x[i] = np.nan
                        rejected[i] = True
                        wrong += 1
                if wrong:
                    stats.rejected[(spec.name, "wrong_type")] += wrong
                if huge:
                    stats.rejected[(spec.name, "out_of_range")] += huge
        return self._check_range(spec, x, rejected, stats)

    def _check_range(self, spec: MetricSpec, x: np.ndarray, rejected: np.ndarray | None,
                     stats: ValidationStats) -> np.ndarray:
        nan = np.isnan(x)
        if rejected is not None:
            nan &= ~rejected
        inf = np.isinf(x)
        finite = np.isfinite(x)
        low, high = max(spec.low, -F32_MAX), min(spec.high, F32_MAX)
        with np.errstate(invalid="ignore"):
            oor = finite & ((x < low) | (x > high))
            if spec.kind is MetricKind.BOOLEAN:
                oor |= finite & (x != 0.0) & (x != 1.0)
            non_int = finite & ~oor & (spec.kind is MetricKind.COUNT) & (x != np.round(x))
        n_inf, n_oor, n_int = int(inf.sum()), int(oor.sum()), int(non_int.sum())
        if n_inf:
            stats.rejected[(spec.name, "non_finite")] += n_inf
        if n_oor:
            stats.rejected[(spec.name, "out_of_range")] += n_oor
        if n_int:
            stats.rejected[(spec.name, "not_integer")] += n_int
        stats.values_missing += int(nan.sum())
        ok = finite & ~oor & ~non_int
        stats.values_accepted += int(ok.sum())
        return np.where(ok, x, np.nan)

    def _finish(self, ep: np.ndarray, ts: np.ndarray, values: np.ndarray, stats: ValidationStats, *,
                unique: bool = False) -> Batch:
        stats.records += int(ep.shape[0])
        batch = Batch(ep, ts, values, unique_ids=unique, rows=np.arange(ep.shape[0]))
        if ep.shape[0] > 1 and not unique:
            # Duplicate (endpoint, ts) pairs inside one batch: keep the first.
            order = np.lexsort((np.arange(ep.shape[0]), ts, ep.astype(str)))
            e_s, t_s = ep[order], ts[order]
            dup = np.zeros(ep.shape[0], dtype=bool)
            dup[1:] = (e_s[1:] == e_s[:-1]) & (t_s[1:] == t_s[:-1])
            if dup.any():
                stats.dropped_records["duplicate_ts"] += int(dup.sum())
                keep = np.sort(order[~dup])
                batch = batch.take(keep)
        return batch
