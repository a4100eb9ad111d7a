"""Chronological splits and sequence (window → next value) datasets.

Splitting
---------
Each endpoint's series is split *by time*, never shuffled first: overlapping
windows shuffled across train and test leak the test data into training.
:func:`split_boundaries` cuts ``n`` samples into train / validation / test
(fractions 0.6 / 0.2 / 0.2 by default) with ``gap >= window`` samples dropped
between consecutive parts. Every window is built entirely inside one part, so no
window straddles two parts, and the gap keeps the first validation window's
inputs more than ``window`` samples away from the last training target.

Windows
-------
A window ending at target index ``t`` has inputs ``x = v[t-W:t]`` (``W`` samples)
and target ``y = v[t]``; it *spans* samples ``[t-W, t]`` (:func:`window_spans`).

Fill policy (:data:`FILL_POLICY`, recorded in every manifest; the runtime does the same)
----------------------------------------------------------------------------------------
1. Inside a window's ``W`` inputs, a missing value (NaN) is replaced by the last
   observed value *of the same window* before it, for at most ``limit``
   consecutive missing samples (forward fill, default ``limit = 2``; it never
   looks into the future nor before the window's first sample).
2. A window whose inputs still hold a NaN after that (its first sample is
   missing, or an outage longer than ``limit``) is skipped: training drops it,
   the runtime returns no prediction / score for it.
3. The target ``y`` must be an observed value: filled values are never targets.
4. Training (and the validation / test sets used for early stopping, calibration
   and metrics) keep only windows whose ``W + 1`` samples are all labelled normal
   (labels from the fleet or the data's ``label`` column; without labels, all are).

Files
-----
:func:`write_sequence_dataset` stores a :class:`SequenceDataset` as Parquet
(pyarrow) with the dataset's description and :data:`DATASET_SCHEMA_VERSION` in
the file's key-value metadata under ``b"ocad"``; :func:`read_sequence_dataset`
checks it.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ocad.core import OcadConfigError

from ._data import SeriesTable

__all__ = [
    "DATASET_SCHEMA_VERSION",
    "FILL_POLICY",
    "SPLITS",
    "SequenceDataset",
    "Split",
    "build_sequence_datasets",
    "fill_policy",
    "forward_fill",
    "read_sequence_dataset",
    "split_boundaries",
    "window_spans",
    "window_targets",
    "write_sequence_dataset",
]

DATASET_SCHEMA_VERSION = 1
SPLITS = ("train", "validation", "test")
DEFAULT_FILL_LIMIT = 2


def fill_policy(limit: int = DEFAULT_FILL_LIMIT) -> dict[str, Any]:
    """The fill policy as recorded in manifests (see module docs)."""
    return {
        "method": "ffill",
        "limit": int(limit),
        "remaining_nan": "skip",
        "target": "observed",
        "description": (
            f"forward-fill at most {int(limit)} consecutive missing input samples with the last observed "
            "value; a window still holding NaN gets no prediction / score; the target must be observed"),
    }


FILL_POLICY: Mapping[str, Any] = fill_policy()


# -- splits ------------------------------------------------------------------------

@attrs.frozen
class Split:
    """Half-open sample-index ranges ``[start, stop)`` of the three parts of one series."""

    train: tuple[int, int]
    validation: tuple[int, int]
    test: tuple[int, int]
    gap: int

    def part(self, name: str) -> tuple[int, int]:
        if name not in SPLITS:
            raise ValueError(f"unknown split {name!r}; use one of {SPLITS}")
        return getattr(self, name)  # type: ignore[no-any-return]


def split_boundaries(n: int, window: int, fractions: Sequence[float] = (0.6, 0.2, 0.2),
                     gap: int | None = None) -> Split:
    """Chronological train / validation / test ranges of a series of ``n`` samples.

    ``gap`` (default ``window``, must be ``>= window``) samples are dropped
    between consecutive parts. The remaining ``n - 2 * gap`` samples are divided
    by ``fractions``. Parts too short to hold a window are simply empty of windows.

    >>> split_boundaries(1000, 10)
    Split(train=(0, 588), validation=(598, 794), test=(804, 1000), gap=10)
    """
    if window < 1:
        raise OcadConfigError(f"window must be >= 1, got {window}")
    gap = window if gap is None else int(gap)
    if gap < window:
        raise OcadConfigError(f"split gap {gap} must be >= window {window} so no window straddles two parts")
    fr = [float(f) for f in fractions]
    if len(fr) != 3 or any(f <= 0 for f in fr) or abs(sum(fr) - 1.0) > 1e-6:
        raise OcadConfigError(f"split fractions must be three positive numbers summing to 1, got {list(fractions)}")
    usable = max(int(n) - 2 * gap, 0)
    n_train = int(usable * fr[0])
    n_val = int(usable * fr[1])
    a = n_train
    b = a + gap
    c = b + n_val
    d = c + gap
    return Split(train=(0, min(a, n)), validation=(min(b, n), min(c, n)), test=(min(d, n), int(n)), gap=gap)


def window_targets(part: tuple[int, int], window: int) -> np.ndarray:
    """Every target index ``t`` whose window ``[t-W, t]`` lies inside ``part``."""
    start, stop = part
    return np.arange(start + window, stop, dtype=np.int64)


def window_spans(targets: np.ndarray, window: int) -> np.ndarray:
    """``(N, 2)`` inclusive ``[first, last]`` sample index of each window (inputs and target)."""
    t = np.asarray(targets, dtype=np.int64)
    return np.stack([t - window, t], axis=1)


# -- windows -----------------------------------------------------------------------

def forward_fill(v: np.ndarray, limit: int) -> np.ndarray:
    """Forward-fill NaN along the last axis, at most ``limit`` consecutive samples.

    >>> forward_fill(np.array([1.0, np.nan, np.nan, np.nan, 5.0]), 2)
    array([ 1.,  1.,  1., nan,  5.])
    """
    v = np.asarray(v)
    if limit <= 0:
        return v.copy()
    finite = np.isfinite(v)
    idx = np.arange(v.shape[-1])
    last = np.where(finite, idx, -1)
    last = np.maximum.accumulate(last, axis=-1)
    src = np.maximum(last, 0)
    filled = np.take_along_axis(v, src, axis=-1) if v.ndim > 1 else v[src]
    ok = finite | ((last >= 0) & (idx - last <= limit))
    return np.where(ok, filled, np.nan).astype(v.dtype, copy=False)


def _valid_targets(series: np.ndarray, normal: np.ndarray, part: tuple[int, int], window: int,
                   fill_limit: int, normal_only: bool) -> tuple[np.ndarray, np.ndarray]:
    """Target indices of usable windows in ``part`` and the part's filled values."""
    start, stop = part
    seg = series[start:stop]
    filled = forward_fill(seg, fill_limit)
    n = seg.shape[0]
    if n <= window:
        return np.zeros(0, np.int64), filled
    bad_in = ~np.isfinite(filled)
    if normal_only:
        bad_in = bad_in | ~normal[start:stop]
    cs = np.concatenate([[0], np.cumsum(bad_in, dtype=np.int64)])
    t_local = np.arange(window, n)
    ok = (cs[t_local] - cs[t_local - window]) == 0  # inputs [t-W, t) all usable
    # Fill only from inside the window (as the runtime does): its first sample must be observed.
    ok &= np.isfinite(seg[t_local - window])
    ok &= np.isfinite(seg[t_local])  # observed target, not a filled one
    if normal_only:
        ok &= normal[start:stop][t_local]
    return (t_local[ok] + start).astype(np.int64), filled


@attrs.frozen(eq=False)
class SequenceDataset:
    """Windows of one metric: ``x`` ``(N, W)`` float32 → next value ``y`` ``(N,)`` float32.

    ``endpoint`` indexes ``endpoint_ids``; ``target_index`` is the sample index of
    ``y`` in its endpoint's series and ``ts`` its timestamp.
    """

    metric: str
    window: int
    split: str
    x: np.ndarray
    y: np.ndarray
    endpoint: np.ndarray
    target_index: np.ndarray
    ts: np.ndarray
    endpoint_ids: tuple[str, ...] = attrs.field(converter=tuple)
    fill_limit: int = DEFAULT_FILL_LIMIT

    def __len__(self) -> int:
        return int(self.y.shape[0])

    @property
    def naive(self) -> np.ndarray:
        """The last-value forecast (last input of each window)."""
        return self.x[:, -1]

    def take(self, idx: np.ndarray) -> SequenceDataset:
        return attrs.evolve(self, x=self.x[idx], y=self.y[idx], endpoint=self.endpoint[idx],
                            target_index=self.target_index[idx], ts=self.ts[idx])

    def subsample(self, n: int | None, seed: int) -> SequenceDataset:
        """At most ``n`` windows, drawn without replacement (seeded), kept in time order."""
        if n is None or len(self) <= n:
            return self
        rng = np.random.default_rng(seed)
        return self.take(np.sort(rng.choice(len(self), size=int(n), replace=False)))


def build_sequence_datasets(
    table: SeriesTable, metric: str, window: int, *, fractions: Sequence[float] = (0.6, 0.2, 0.2),
    gap: int | None = None, fill_limit: int = DEFAULT_FILL_LIMIT, normal_only: bool = True,
    max_windows: Mapping[str, int | None] | None = None, seed: int = 0,
) -> dict[str, SequenceDataset]:
    """Train / validation / test :class:`SequenceDataset` of ``metric`` (see module docs).

    ``max_windows`` optionally caps each split (``{"train": 40000}``); windows are
    then drawn at random (``seed``) *within* the split, which is safe: only the
    chronological cut between parts matters for leakage.
    """
    j = table.metric_index(metric)
    max_windows = dict(max_windows or {})
    chosen: dict[str, list[tuple[int, np.ndarray]]] = {s: [] for s in SPLITS}
    filled_parts: dict[tuple[int, str], np.ndarray] = {}
    for e in range(table.n_endpoints):
        series = table.values[e][:, j]
        if not np.isfinite(series).any():
            continue  # the endpoint does not report this metric
        sp = split_boundaries(series.shape[0], window, fractions, gap)
        normal = table.normal(e)
        for s in SPLITS:
            t, filled = _valid_targets(series, normal, sp.part(s), window, fill_limit, normal_only)
            if t.size:
                chosen[s].append((e, t))
                filled_parts[(e, s)] = filled
    out: dict[str, SequenceDataset] = {}
    for k, s in enumerate(SPLITS):
        pairs = chosen[s]
        ep = np.concatenate([np.full(t.size, e, np.int32) for e, t in pairs]) if pairs else np.zeros(0, np.int32)
        tt = np.concatenate([t for _, t in pairs]) if pairs else np.zeros(0, np.int64)
        cap = max_windows.get(s)
        if cap is not None and tt.size > cap:
            rng = np.random.default_rng([seed, k])
            keep = np.sort(rng.choice(tt.size, size=int(cap), replace=False))
            ep, tt = ep[keep], tt[keep]
        x = np.empty((tt.size, window), np.float32)
        y = np.empty(tt.size, np.float32)
        ts = np.empty(tt.size, np.float64)
        offs = np.arange(-window, 0)
        for e in np.unique(ep):
            m = ep == e
            start = split_boundaries(table.values[e].shape[0], window, fractions, gap).part(s)[0]
            filled = filled_parts[(int(e), s)]
            loc = tt[m] - start
            x[m] = filled[loc[:, None] + offs]
            y[m] = table.values[e][tt[m], j]
            ts[m] = table.ts[e][tt[m]]
        out[s] = SequenceDataset(metric=metric, window=window, split=s, x=x, y=y, endpoint=ep,
                                 target_index=tt, ts=ts, endpoint_ids=table.endpoint_ids,
                                 fill_limit=fill_limit)
    return out


# -- Parquet -----------------------------------------------------------------------

def write_sequence_dataset(ds: SequenceDataset, path: str | os.PathLike[str]) -> Path:
    """Write ``ds`` as Parquet (atomically: temp file + rename) and return the path."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n, w = ds.x.shape
    x = pa.FixedSizeListArray.from_arrays(pa.array(ds.x.reshape(-1), type=pa.float32()), w)
    ids = np.asarray(ds.endpoint_ids, dtype=object)[ds.endpoint] if n else np.zeros(0, dtype=object)
    tbl = pa.table({
        "endpoint_id": pa.array(ids, type=pa.string()),
        "target_index": pa.array(ds.target_index, type=pa.int64()),
        "ts": pa.array(ds.ts, type=pa.float64()),
        "x": x,
        "y": pa.array(ds.y, type=pa.float32()),
    })
    meta = {"schema_version": DATASET_SCHEMA_VERSION, "metric": ds.metric, "window": int(w),
            "split": ds.split, "endpoint_ids": list(ds.endpoint_ids), "fill_policy": fill_policy(ds.fill_limit)}
    tbl = tbl.replace_schema_metadata({b"ocad": json.dumps(meta).encode()})
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        pq.write_table(tbl, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def read_sequence_dataset(path: str | os.PathLike[str]) -> SequenceDataset:
    """Read a dataset written by :func:`write_sequence_dataset` (checks ``schema_version``)."""
    import pyarrow.parquet as pq

    tbl = pq.read_table(path)
    raw = (tbl.schema.metadata or {}).get(b"ocad")
    if raw is None:
        raise OcadConfigError(f"{path}: not an OCAD sequence dataset (no 'ocad' metadata)")
    meta = json.loads(raw)
    sv = meta.get("schema_version")
    if sv != DATASET_SCHEMA_VERSION:
        raise OcadConfigError(
            f"{path}: dataset schema_version {sv!r} is not supported (this ocad-train reads "
            f"{DATASET_SCHEMA_VERSION}); rebuild the dataset")
    w = int(meta["window"])
    ids = tuple(meta["endpoint_ids"])
    index = {e: i for i, e in enumerate(ids)}
    x = tbl.column("x").combine_chunks().flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    col_ids = tbl.column("endpoint_id").to_pylist()
    return SequenceDataset(
        metric=meta["metric"], window=w, split=meta["split"], x=x.reshape(-1, w),
        y=tbl.column("y").to_numpy().astype(np.float32),
        endpoint=np.array([index[e] for e in col_ids], dtype=np.int32),
        target_index=tbl.column("target_index").to_numpy().astype(np.int64),
        ts=tbl.column("ts").to_numpy().astype(np.float64), endpoint_ids=ids,
        fill_limit=int(meta.get("fill_policy", {}).get("limit", DEFAULT_FILL_LIMIT)))
