"""Training data in: CSV / Parquet files or a synthetic fleet → :class:`SeriesTable`.

A file is read with pandas in one of two layouts, detected from its columns:

* **wide**: ``endpoint_id, ts, <metric>, <metric>, ...`` — one row per endpoint and
  time, one column per metric. Any other numeric column is a metric: a user's own
  KPI (``my_kpi``) is handled exactly like ``udp_echo_rtt_ms``.
* **long**: ``endpoint_id, ts, metric, value`` — one row per endpoint, time and metric.

``ts`` is epoch seconds (int / float) or an ISO-8601 datetime (naive times are UTC).
Empty cells are missing values (NaN), never zero.

Labels: the labelled-file format that ``ocad simulate`` writes and ``ocad evaluate
--data`` reads (``ocad.core.tooling._io``: one definition) — a ``fault_type`` column, ``""`` /
``"none"`` / ``"normal"`` / empty for normal samples, else the fault's type, and an
optional ``failure_ts`` column (read by evaluation, ignored here). A numeric ``label``
column (0 = normal, anything else = anomalous) is understood too. Samples labelled
as a fault are never learnt from; without labels every sample counts as normal.

Order and duplicates, handled as the Monitor handles a live feed: rows may come in
any order (each endpoint is sorted by time); a repeated ``(endpoint_id, ts)`` — or
``(endpoint_id, ts, metric)`` in the long layout — keeps the first row of the file and
drops the others, counted in :attr:`SeriesTable.dropped` (``duplicate_ts``).

Bad input raises :class:`ocad.core.OcadValidationError` naming the column, the
offending value and its row, so the user can fix the file.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import attrs
import numpy as np

from ocad.core import OcadConfigError, OcadValidationError

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LABEL_COLUMN", "SeriesTable", "as_table", "from_fleet", "load_table", "table_from_frame"]

LABEL_COLUMN = "label"
_LONG_COLUMNS = frozenset({"metric", "value"})
_KEY_COLUMNS = ("endpoint_id", "ts")
_LABEL = "__ocad_label__"  # the folded label column inside table_from_frame


def _arrays(v: Iterable[np.ndarray]) -> tuple[np.ndarray, ...]:
    return tuple(v)


@attrs.frozen(eq=False)
class SeriesTable:
    """Per-endpoint time series, aligned on each endpoint's own timestamps.

    Attributes
    ----------
    endpoint_ids:
        One id per endpoint, in a stable (sorted or fleet) order.
    metrics:
        Metric names; column ``j`` of every ``values[e]`` is ``metrics[j]``.
    ts:
        Per endpoint, ``(T_e,)`` float64 epoch seconds, strictly increasing.
    values:
        Per endpoint, ``(T_e, M)`` float32; NaN = missing or not reported.
    labels:
        Per endpoint, ``(T_e,)`` int8 (0 = normal), or ``None`` when unknown
        (then every sample is treated as normal).
    source:
        Where the data came from (a path or ``"simulate:..."``), for manifests.
    dropped:
        Rows the reader dropped, by reason (``{"duplicate_ts": 3}``), for logs and manifests.

    >>> t = SeriesTable.from_arrays(["a"], ["m"], [np.arange(3.0)], [np.ones((3, 1))])
    >>> t.n_samples, t.metric_index("m")
    (3, 0)
    """

    endpoint_ids: tuple[str, ...] = attrs.field(converter=tuple)
    metrics: tuple[str, ...] = attrs.field(converter=tuple)
    ts: tuple[np.ndarray, ...] = attrs.field(converter=_arrays)
    values: tuple[np.ndarray, ...] = attrs.field(converter=_arrays)
    labels: tuple[np.ndarray, ...] | None = attrs.field(default=None)
    source: str = ""
    dropped: Mapping[str, int] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        n = len(self.endpoint_ids)
        if len(self.ts) != n or len(self.values) != n or (self.labels is not None and len(self.labels) != n):
            raise ValueError("SeriesTable needs one ts / values (/ labels) array per endpoint")
        if len(set(self.endpoint_ids)) != n:
            raise ValueError("SeriesTable endpoint ids must be unique")
        for e, (t, v) in enumerate(zip(self.ts, self.values)):
            if t.ndim != 1 or v.shape != (t.shape[0], len(self.metrics)):
                raise ValueError(
                    f"endpoint {self.endpoint_ids[e]!r}: ts {t.shape} and values {v.shape} do not match "
                    f"{len(self.metrics)} metric(s)")

    @classmethod
    def from_arrays(cls, endpoint_ids: Sequence[str], metrics: Sequence[str],
                    ts: Sequence[np.ndarray], values: Sequence[np.ndarray],
                    labels: Sequence[np.ndarray] | None = None, source: str = "arrays") -> SeriesTable:
        """Build a table from plain arrays (converted to float64 / float32 / int8)."""
        return cls(
            endpoint_ids=[str(e) for e in endpoint_ids], metrics=list(metrics),
            ts=[np.asarray(t, dtype=np.float64) for t in ts],
            values=[np.asarray(v, dtype=np.float32).reshape(len(t), len(metrics)) for t, v in zip(ts, values)],
            labels=None if labels is None else tuple(np.asarray(lab, dtype=np.int8) for lab in labels),
            source=source)

    @property
    def n_endpoints(self) -> int:
        return len(self.endpoint_ids)

    @property
    def n_samples(self) -> int:
        """Total number of (endpoint, time) rows."""
        return int(sum(t.shape[0] for t in self.ts))

    def metric_index(self, name: str) -> int:
        try:
            return self.metrics.index(name)
        except ValueError:
            raise OcadConfigError(
                f"metric {name!r} is not in the data; it has {list(self.metrics)}") from None

    def series(self, e: int, metric: str) -> np.ndarray:
        """``(T_e,)`` float32 values of one metric for endpoint ``e`` (NaN = missing)."""
        return self.values[e][:, self.metric_index(metric)]

    def normal(self, e: int) -> np.ndarray:
        """``(T_e,)`` bool: True where the sample is labelled normal (all True without labels)."""
        if self.labels is None:
            return np.ones(self.ts[e].shape[0], dtype=bool)
        return self.labels[e] == 0

    def select(self, metrics: Sequence[str]) -> SeriesTable:
        """The same table restricted to ``metrics`` (in that order)."""
        idx = [self.metric_index(m) for m in metrics]
        return attrs.evolve(self, metrics=list(metrics), values=[v[:, idx] for v in self.values])


# -- fleets ------------------------------------------------------------------------

def from_fleet(fleet: Any, *, source: str | None = None) -> SeriesTable:
    """Convert a synthetic :class:`ocad.core` fleet (``generate_fleet(...)``) to a table.

    Uses ``fleet.endpoints[i].endpoint_id``, ``fleet.metrics``, ``fleet.ts``
    (shared by every endpoint), ``fleet.values`` ``(E, T, M)`` and ``fleet.labels``
    ``(E, T)`` (0 = normal; metrics an endpoint does not report stay NaN). With
    ``fleet.normal_mask()`` available, samples in a fault's recovery margin are
    not normal either (label -1), so training never learns from them.
    """
    ts = np.asarray(fleet.ts, dtype=np.float64)
    values = np.asarray(fleet.values, dtype=np.float32)
    labels = getattr(fleet, "labels", None)
    if labels is not None and hasattr(fleet, "normal_mask"):
        # The fleet's normal mask also excludes the recovery margin after each fault:
        # those samples are labelled -1 (not normal, not a fault type).
        nm = np.asarray(fleet.normal_mask(), dtype=bool)
        labels = np.where(nm, 0, np.where(np.asarray(labels) != 0, labels, -1)).astype(np.int8)
    ids = [str(getattr(ep, "endpoint_id", ep)) for ep in fleet.endpoints]
    if source is None:
        source = f"fleet:{len(ids)} endpoints x {ts.shape[0]} samples"
    return SeriesTable(
        endpoint_ids=ids, metrics=list(fleet.metrics),
        ts=[ts] * len(ids), values=[values[e] for e in range(len(ids))],
        labels=None if labels is None else tuple(np.asarray(labels[e], dtype=np.int8) for e in range(len(ids))),
        source=source)


# -- files -------------------------------------------------------------------------

def load_table(path: str | os.PathLike[str], *, metrics: Sequence[str] | None = None,
               label_column: str | None = LABEL_COLUMN) -> SeriesTable:
    """Read a CSV or Parquet file (wide or long layout, see module docs) into a table.

    Parameters
    ----------
    path:
        ``*.csv`` (optionally ``.gz``) or ``*.parquet`` / ``*.pq``.
    metrics:
        Keep only these metrics (error naming the missing ones if absent).
    label_column:
        Name of the optional label column (``None`` to treat every column as data).
    """
    import pandas as pd

    p = Path(path)
    if not p.is_file():
        raise OcadConfigError(f"data file {str(p)!r} does not exist")
    suffixes = "".join(p.suffixes).lower()
    try:
        if ".parquet" in suffixes or suffixes.endswith(".pq"):
            df = pd.read_parquet(p)
        elif ".csv" in suffixes or ".txt" in suffixes:
            df = pd.read_csv(p, dtype={"endpoint_id": str}, keep_default_na=True)
        else:
            raise OcadConfigError(f"data file {str(p)!r}: unknown format; use .csv or .parquet")
    except (OSError, ValueError) as exc:
        if isinstance(exc, OcadConfigError):
            raise
        raise OcadConfigError(f"data file {str(p)!r} could not be read: {exc}") from exc
    return table_from_frame(df, metrics=metrics, label_column=label_column, source=str(p))


def table_from_frame(df: pd.DataFrame, *, metrics: Sequence[str] | None = None,
                     label_column: str | None = LABEL_COLUMN, source: str = "frame") -> SeriesTable:
    """Like :func:`load_table` for an in-memory pandas DataFrame."""
    from ocad.core.tooling._io import FAILURE_TS_COLUMN, FAULT_TYPE_COLUMN, fault_type_name

    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    for col in _KEY_COLUMNS:
        if col not in df.columns:
            raise OcadValidationError(col, None, f"required column is missing; columns are {list(df.columns)}")
    if len(df) == 0:
        raise OcadValidationError("endpoint_id", None, "the data has no rows")
    bad_id = df["endpoint_id"].isna()
    if bad_id.any():
        i = int(np.flatnonzero(bad_id.to_numpy())[0])
        raise OcadValidationError("endpoint_id", None, "empty endpoint id", index=i)
    df["endpoint_id"] = df["endpoint_id"].astype(str)
    df["ts"] = _parse_ts(df["ts"])
    label_cols: set[str] = set()
    if label_column is not None:
        # Labels from the labelled-file format (fault_type) and / or a numeric label column,
        # folded into one int8 column: 0 = normal, 1 = not to be learnt from.
        lab = np.zeros(len(df), np.int8)
        if label_column in df.columns:
            num = _numeric(df[label_column], label_column)
            lab |= np.where(num.isna(), 0, num != 0).astype(np.int8)
            label_cols.add(label_column)
        if FAULT_TYPE_COLUMN in df.columns:
            ft = df[FAULT_TYPE_COLUMN].map(fault_type_name)
            lab |= (ft != "").to_numpy(np.int8)
            label_cols.add(FAULT_TYPE_COLUMN)
        if FAILURE_TS_COLUMN in df.columns:
            label_cols.add(FAILURE_TS_COLUMN)
        if label_cols - {FAILURE_TS_COLUMN}:
            df = df.drop(columns=sorted(label_cols))
            df[_LABEL] = lab
            label_cols = {_LABEL}
        else:
            df = df.drop(columns=sorted(label_cols))
            label_cols = set()
    has_label = bool(label_cols)
    long = _LONG_COLUMNS <= set(df.columns) and not (
        set(df.columns) - _LONG_COLUMNS - set(_KEY_COLUMNS) - label_cols)
    dropped: dict[str, int] = {}
    if long:
        df = _long_to_wide(df, _LABEL if has_label else None, dropped)
    data_cols = [c for c in df.columns if c not in _KEY_COLUMNS and c not in label_cols]
    if metrics is not None:
        missing = [m for m in metrics if m not in data_cols]
        if missing:
            raise OcadConfigError(f"metric(s) {missing} not found in {source}; it has {data_cols}")
        data_cols = list(metrics)
    if not data_cols:
        raise OcadValidationError("metric", None, f"no metric columns in {source}")
    for c in data_cols:
        df[c] = _numeric(df[c], c)
    dup = df.duplicated(["endpoint_id", "ts"], keep="first")
    if dup.any():
        # The Monitor keeps the first sample of an (endpoint, ts) and counts the others
        # (duplicate_ts): training sees the data the way the runtime will.
        dropped["duplicate_ts"] = dropped.get("duplicate_ts", 0) + int(dup.sum())
        df = df[~dup.to_numpy()]
    df = df.sort_values(["endpoint_id", "ts"], kind="stable")
    ids, ts, values, labels = [], [], [], []
    for eid, g in df.groupby("endpoint_id", sort=True):
        ids.append(str(eid))
        ts.append(g["ts"].to_numpy(np.float64))
        values.append(g[data_cols].to_numpy(np.float32))
        if has_label:
            labels.append(g[_LABEL].to_numpy(np.int8))
    return SeriesTable(endpoint_ids=ids, metrics=data_cols, ts=ts, values=values,
                       labels=tuple(labels) if has_label else None, source=source, dropped=dropped)


def _parse_ts(col: pd.Series) -> pd.Series:
    """Epoch seconds (float64) from numbers or ISO datetimes; error naming the first bad value."""
    import pandas as pd

    if pd.api.types.is_datetime64_any_dtype(col):
        dt = col if col.dt.tz is not None else col.dt.tz_localize("UTC")
        out = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    elif pd.api.types.is_numeric_dtype(col) and not pd.api.types.is_bool_dtype(col):
        out = col.astype(np.float64)
    else:
        num = pd.to_numeric(col, errors="coerce")
        if num.notna().all():
            out = num.astype(np.float64)
        else:
            dt = pd.to_datetime(col, errors="coerce", utc=True, format="ISO8601")
            bad = dt.isna().to_numpy()
            if bad.any():
                i = int(np.flatnonzero(bad)[0])
                raise OcadValidationError(
                    "ts", col.iloc[i], "not epoch seconds nor an ISO-8601 datetime", index=i)
            out = (dt - pd.Timestamp(0, tz="UTC")) / pd.Timedelta(seconds=1)
    bad = ~np.isfinite(out.to_numpy(np.float64))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise OcadValidationError("ts", col.iloc[i], "timestamp must be a finite number", index=i)
    return out


def _numeric(col: pd.Series, name: str) -> pd.Series:
    """Column as float64; empty cells → NaN; anything else non-numeric, infinite or beyond float32 is an error."""
    import pandas as pd

    if pd.api.types.is_bool_dtype(col):
        return col.astype(np.float64)
    if pd.api.types.is_numeric_dtype(col):
        out = col.astype(np.float64)
    else:
        stripped = col.astype("string").str.strip()
        empty = stripped.isna() | (stripped == "")
        out = pd.to_numeric(stripped.mask(empty), errors="coerce").astype(np.float64)
        bad = (out.isna() & ~empty).to_numpy()
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise OcadValidationError(name, col.iloc[i], "not a number (leave the cell empty for missing)",
                                      index=i)
    inf = np.isinf(out.to_numpy())
    if inf.any():
        i = int(np.flatnonzero(inf)[0])
        raise OcadValidationError(name, col.iloc[i], "infinite values are not allowed", index=i)
    big = (np.abs(out.to_numpy()) > np.finfo(np.float32).max)  # values are stored as float32: they would be inf
    if big.any():
        i = int(np.flatnonzero(big)[0])
        raise OcadValidationError(name, col.iloc[i], f"beyond the float32 range (|value| > "
                                  f"{float(np.finfo(np.float32).max):.4g})", index=i)
    return out


def _long_to_wide(df: pd.DataFrame, label_column: str | None, dropped: dict[str, int]) -> pd.DataFrame:
    bad = df["metric"].isna()
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise OcadValidationError("metric", None, "empty metric name in long-format data", index=i)
    df["metric"] = df["metric"].astype(str)
    df["value"] = _numeric(df["value"], "value")
    dup = df.duplicated(["endpoint_id", "ts", "metric"], keep="first")
    if dup.any():
        dropped["duplicate_ts"] = dropped.get("duplicate_ts", 0) + int(dup.sum())
        df = df[~dup.to_numpy()]
    order = list(dict.fromkeys(df["metric"]))
    wide = df.pivot(index=["endpoint_id", "ts"], columns="metric", values="value")[order]
    wide.columns = [str(c) for c in wide.columns]
    if label_column is not None:
        lab = df[label_column].astype(np.int8)
        wide[label_column] = lab.groupby([df["endpoint_id"], df["ts"]]).max()
    out = wide.reset_index()
    out.columns.name = None
    return out


def metric_columns_summary(table: SeriesTable) -> Mapping[str, float]:
    """Fraction of non-missing values per metric (for logs and error messages)."""
    tot = max(table.n_samples, 1)
    return {m: float(sum(np.isfinite(v[:, j]).sum() for v in table.values) / tot)
            for j, m in enumerate(table.metrics)}


def as_table(data: Any, *, metrics: Sequence[str] | None = None) -> SeriesTable:
    """A :class:`SeriesTable` from a table, a synthetic fleet, or a CSV / Parquet path."""
    if isinstance(data, SeriesTable):
        table = data
    elif isinstance(data, (str, os.PathLike)):
        return load_table(data, metrics=metrics)
    elif all(hasattr(data, a) for a in ("endpoints", "metrics", "ts", "values")):
        table = from_fleet(data)
    else:
        raise OcadConfigError(
            f"training data must be a SeriesTable, a fleet or a file path, not {type(data).__name__}")
    if metrics is not None:
        missing = [m for m in metrics if m not in table.metrics]
        if missing:
            raise OcadConfigError(f"metric(s) {missing} not in the data; it has {list(table.metrics)}")
    return table
