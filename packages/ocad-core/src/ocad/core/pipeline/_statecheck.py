"""Value checks for restored state (``Monitor.restore``, ``import_state``): refuse, never half-load.

A snapshot or exported state is data from outside the process (a file, a
stream processor's state store). Shapes alone are not enough: a ring head out
of range, a negative count, NaN clocks, ids numpy would truncate, more
endpoints than the Monitor's capacity or an alert with a score of ``"x"`` load
fine and fail later, in ``observe`` or ``health()``. These functions raise
``ValueError`` naming the field and the value; the callers turn it into an
``OcadConfigError`` before anything of the Monitor is replaced.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._errors import OcadValidationError
from ._validate import _check_endpoint

__all__ = ["check_endpoint_ids", "check_policy_state", "check_window_state"]

_KINDS = {"ids": "U", "values": "f", "ts": "f", "head": "iu", "count": "iu", "last_ts": "f", "caps": "b",
          "counters": "iu", "max_ts": "f"}


def check_endpoint_ids(ids: Iterable[Any]) -> list[str]:
    """The ids as strings, each a valid endpoint id, pairwise distinct."""
    out = []
    for i, e in enumerate(ids):
        try:
            out.append(_check_endpoint(e, i))
        except OcadValidationError as exc:
            raise ValueError(f"ids[{i}]: {exc}") from None
    if len(set(out)) != len(out):
        raise ValueError("ids: an endpoint appears twice")
    return out


def check_window_state(st: Mapping[str, np.ndarray], *, window: int, n_metrics: int, capacity: int) -> None:
    """The arrays of ``WindowStore.state()`` (keys not listed here are left to their owner)."""
    for k, kinds in _KINDS.items():
        if k not in st:
            raise ValueError(f"{k!r} is missing")
        a = st[k]
        if not isinstance(a, np.ndarray) or a.dtype.kind not in kinds:
            raise ValueError(f"{k!r} has dtype {getattr(a, 'dtype', type(a).__name__)}, expected kind {kinds!r}")
    ids = st["ids"]
    if ids.ndim != 1:
        raise ValueError(f"'ids' must be 1-D, has shape {ids.shape}")
    n = ids.shape[0]
    if n > capacity:
        raise ValueError(f"the snapshot holds {n} endpoints, more than this Monitor's capacity {capacity}")
    shapes = {"values": (n, window, n_metrics), "ts": (n, window), "head": (n,), "count": (n,),
              "last_ts": (n,), "caps": (n, n_metrics), "counters": (2,), "max_ts": ()}
    for k, shape in shapes.items():
        if st[k].shape != shape:
            raise ValueError(f"{k!r} has shape {st[k].shape}, expected {shape}")
    check_endpoint_ids(ids.tolist())
    head, count = st["head"], st["count"]
    if n and (head.min() < 0 or head.max() >= window):
        raise ValueError(f"'head' must be in [0, {window}), got {int(head.min())}..{int(head.max())}")
    if n and count.min() < 0:
        raise ValueError(f"'count' must be >= 0, got {int(count.min())}")
    if (st["counters"] < 0).any():
        raise ValueError(f"'counters' must be >= 0, got {st['counters'].tolist()}")
    if np.isinf(st["values"]).any():
        raise ValueError("'values' holds ±inf (only finite values or NaN are ever stored)")
    ts = st["ts"]
    if np.isinf(ts).any():
        raise ValueError("'ts' holds ±inf")
    if n and not np.isfinite(st["last_ts"]).all():
        raise ValueError("'last_ts' must be finite for every held endpoint")
    if n and (np.nanmax(np.where(np.isnan(ts), -np.inf, ts), axis=1) > st["last_ts"]).any():
        raise ValueError("'ts' holds a sample newer than the endpoint's 'last_ts'")
    if math.isnan(float(st["max_ts"])):
        raise ValueError("'max_ts' is NaN")


def _num(where: str, v: Any, *, finite: bool = True) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        raise ValueError(f"{where} = {v!r:.80} must be a number")
    f = float(v)
    if finite and not math.isfinite(f):
        raise ValueError(f"{where} = {v!r} must be finite")
    return f


def check_policy_state(e: str, st: Any) -> None:
    """One endpoint's alert-policy state (``_State``) after loading: types and values."""
    where = f"alert state of {e!r}"
    if isinstance(st.pending, bool) or not isinstance(st.pending, int) or st.pending < 0:
        raise ValueError(f"{where}: pending = {st.pending!r:.80} must be an integer >= 0")
    for f in ("last_active_ts", "last_event_ts", "last_event_score"):
        _num(f"{where}: {f}", getattr(st, f), finite=f != "last_active_ts")
    a = st.alert
    if a is None:
        return
    if a.endpoint_id != e:
        raise ValueError(f"{where}: the alert belongs to {a.endpoint_id!r:.80}")
    if not isinstance(a.alert_id, str) or not a.alert_id or not isinstance(a.severity, str):
        raise ValueError(f"{where}: alert_id and severity must be strings")
    for f in ("opened_ts", "updated_ts", "score", "peak_score"):
        _num(f"{where}: alert.{f}", getattr(a, f))
    if a.resolved_ts is not None:
        _num(f"{where}: alert.resolved_ts", a.resolved_ts)
    if not all(isinstance(k, str) for k in a.kinds):
        raise ValueError(f"{where}: alert.kinds must be strings")
