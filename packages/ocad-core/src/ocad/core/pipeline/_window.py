"""WindowStore: fixed-size ring buffers of recent samples, one row per endpoint.

``values[row, slot, metric]`` (float32) and ``ts[row, slot]`` (float64) hold the
last ``window`` samples of every endpoint; ``head[row]`` is the slot the next
sample goes to. Appending a tick for n endpoints is one fancy-indexed write;
reading windows gathers them in chronological order.

Layout: the samples are stored time-last, ``(row, metric, slot)``, and ``values``
is a transposed view of that buffer. A window read is then a few contiguous
copies per endpoint (one per run of equal heads: a fleet that ticks in step has
one), the windows come out as ``(n, metric, time)`` blocks that the feature
engine and the detectors reduce over time without another transpose, and
``view.values[:, -w:, m]`` is a contiguous slice per endpoint.

Endpoint ids of a tick usually repeat from one tick to the next: :meth:`lookup`
keeps the rows of the last array of ids it resolved and returns them again when
the same ids come back (checked element by element, and only while no endpoint
was added or dropped), instead of one dict lookup per endpoint in Python.

Memory is bounded: rows are allocated in doubling steps up to ``capacity``.
Eviction, both counted:

* **idle**: an endpoint whose newest sample is older than ``idle_timeout_s``
  (in *sample time*: the newest timestamp the store has seen) is dropped;
* **capacity**: when a new endpoint arrives and every row is taken, the
  least-recently-seen endpoints (oldest last sample) not in the current tick
  are dropped. An endpoint that comes back later starts with an empty window.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from .._errors import OcadConfigError

__all__ = ["WindowStore"]

# Below this many ids a plain dict lookup is cheaper than comparing with the cached array.
_LOOKUP_CACHE_MIN = 64


class WindowStore:
    """Ring buffers for up to ``capacity`` endpoints × ``window`` samples × ``n_metrics``."""

    def __init__(self, n_metrics: int, window: int, *, capacity: int = 100_000,
                 idle_timeout_s: float | None = 3600.0, initial_rows: int = 256) -> None:
        if window < 1 or n_metrics < 1 or capacity < 1:
            raise ValueError("window, n_metrics and capacity must be >= 1")
        self.n_metrics = int(n_metrics)
        self.window = int(window)
        self.capacity = int(capacity)
        self.idle_timeout_s = idle_timeout_s
        self._rows: dict[str, int] = {}
        self._free: list[int] = []
        self.evicted_idle = 0
        self.evicted_capacity = 0
        #: Ids of endpoints evicted for capacity since the owner last cleared this list.
        self.evicted_lru: list[str] = []
        #: The last sample time of every endpoint evicted (idle or capacity) since the owner last
        #: cleared it: its open alert resolves at its *own* last sample, not at the fleet's newest.
        self.evicted_last_ts: dict[str, float] = {}
        self.max_ts = -np.inf
        # Bumped whenever the id -> row map changes; guards the lookup cache.
        self._version = 0
        self._lookup_cache: tuple[int, np.ndarray, np.ndarray] | None = None
        self._vals: np.ndarray | None = None
        # Per-row state of other stages (baselines, self-calibration): allocated, grown, reset,
        # evicted and snapshotted with the row, so an endpoint's state lives and dies in one place.
        self._extra_specs: dict[str, tuple[tuple[int, ...], np.dtype[Any], float]] = {}
        self.extra: dict[str, np.ndarray] = {}
        self._alloc(min(max(int(initial_rows), 1), self.capacity))

    def add_state(self, name: str, shape: tuple[int, ...], dtype: Any = np.float32, fill: float = np.nan) -> np.ndarray:
        """Register a per-row state array ``(rows, *shape)`` that follows the rows' life cycle.

        Returns the current array; after the store grows, read it again from :attr:`extra`.
        A name registered twice with the same layout is kept (its contents too).
        """
        spec = (tuple(int(k) for k in shape), np.dtype(dtype), float(fill))
        old = self._extra_specs.get(name)
        if old is not None:
            if old != spec:
                raise ValueError(f"WindowStore state {name!r} already registered as {old}, not {spec}")
            return self.extra[name]
        self._extra_specs[name] = spec
        self.extra[name] = np.full((self.allocated_rows, *spec[0]), spec[2], dtype=spec[1])
        return self.extra[name]

    # -- storage -----------------------------------------------------------
    def _alloc(self, rows: int) -> None:
        old = self._vals
        n_old = 0 if old is None else old.shape[0]
        values = np.full((rows, self.n_metrics, self.window), np.nan, dtype=np.float32)
        ts = np.full((rows, self.window), np.nan, dtype=np.float64)
        head = np.zeros(rows, dtype=np.int64)
        count = np.zeros(rows, dtype=np.int64)
        last_ts = np.full(rows, -np.inf)
        caps = np.zeros((rows, self.n_metrics), dtype=bool)
        ids = np.empty(rows, dtype=object)
        if old is not None:
            values[:n_old] = old
            ts[:n_old] = self.ts
            head[:n_old] = self.head
            count[:n_old] = self.count
            last_ts[:n_old] = self.last_ts
            caps[:n_old] = self.capabilities
            ids[:n_old] = self.ids
        self._vals, self.ts, self.head, self.count = values, ts, head, count
        self.last_ts, self.capabilities, self.ids = last_ts, caps, ids
        for name, (shape, dtype, fill) in getattr(self, "_extra_specs", {}).items():
            arr = np.full((rows, *shape), fill, dtype=dtype)
            arr[:n_old] = self.extra[name][:n_old]
            self.extra[name] = arr
        self._free.extend(range(rows - 1, n_old - 1, -1))

    @property
    def values(self) -> np.ndarray:
        """``(rows, window, n_metrics)`` float32 ring buffers (a writable view, slot order)."""
        assert self._vals is not None
        return self._vals.transpose(0, 2, 1)

    def __len__(self) -> int:
        return len(self._rows)

    def __contains__(self, endpoint_id: object) -> bool:
        return endpoint_id in self._rows

    @property
    def allocated_rows(self) -> int:
        return int(self.values.shape[0])

    def nbytes(self) -> int:
        assert self._vals is not None
        return int(self._vals.nbytes + self.ts.nbytes + self.head.nbytes + self.count.nbytes
                   + self.last_ts.nbytes + self.capabilities.nbytes + self.ids.nbytes
                   + sum(a.nbytes for a in self.extra.values()))

    def endpoints(self) -> list[str]:
        return list(self._rows)

    # -- rows -----------------------------------------------------------------
    def lookup(self, endpoint_ids: Iterable[str]) -> np.ndarray:
        """Rows of known endpoints, -1 for unknown ones."""
        cacheable = isinstance(endpoint_ids, np.ndarray) and endpoint_ids.ndim == 1 \
            and endpoint_ids.shape[0] >= _LOOKUP_CACHE_MIN
        if cacheable:
            c = self._lookup_cache
            if c is not None and c[0] == self._version and c[1].shape == endpoint_ids.shape \
                    and np.array_equal(c[1], endpoint_ids):
                return c[2].copy()
        get = self._rows.get
        rows = np.fromiter((get(e, -1) for e in endpoint_ids), dtype=np.int64)
        if cacheable:
            self._lookup_cache = (self._version, endpoint_ids.copy(), rows.copy())
        return rows

    def rows(self, endpoint_ids: np.ndarray) -> np.ndarray:
        """Rows for ``endpoint_ids`` (unique within the call), creating rows for new endpoints."""
        rows = self.lookup(endpoint_ids)
        new = np.flatnonzero(rows < 0)
        if new.size:
            rows[new] = self._take_rows(new.size, protect=rows[rows >= 0])
            ids = endpoint_ids[new]
            for e, r in zip(ids, rows[new].tolist()):
                self._rows[e] = r
            self.ids[rows[new]] = ids
            self._version += 1
        return rows

    def _take_rows(self, k: int, protect: np.ndarray) -> np.ndarray:
        if len(self._free) < k and self.allocated_rows < self.capacity:
            # Grow as far as needed, up to the capacity; evict only what still does not fit.
            want = len(self._rows) + k
            size = self.allocated_rows
            while size < want:
                size *= 2
            self._alloc(min(size, self.capacity))
        short = k - len(self._free)
        if short > 0:
            self._evict_lru(short, protect)
        taken = [self._free.pop() for _ in range(k)]
        return np.asarray(taken, dtype=np.int64)

    def _evict_lru(self, k: int, protect: np.ndarray) -> None:
        used = np.fromiter(self._rows.values(), dtype=np.int64)
        cand = np.setdiff1d(used, protect, assume_unique=True)
        if cand.size < k:
            raise OcadConfigError(
                f"a tick with more distinct endpoints than capacity={self.capacity}; raise the capacity "
                "or shard the Monitor by endpoint")
        order = np.argpartition(self.last_ts[cand], k - 1)[:k] if k < cand.size else np.arange(cand.size)
        victims = cand[order]
        self.evicted_lru += [str(self.ids[r]) for r in victims.tolist()]
        self.evicted_last_ts.update(zip(self.evicted_lru[-victims.size:], self.last_ts[victims].tolist()))
        self._release(victims)
        self.evicted_capacity += int(victims.size)

    def _release(self, rows: np.ndarray) -> None:
        self._version += 1
        for r in rows.tolist():
            e = self.ids[r]
            if e is not None:
                del self._rows[e]
            self.ids[r] = None
        self.reset(rows)
        self._free.extend(rows.tolist())

    def reset(self, rows: np.ndarray) -> None:
        """Forget the history of ``rows`` (clock reset, eviction)."""
        self._vals[rows] = np.nan  # type: ignore[index]
        self.ts[rows] = np.nan
        self.head[rows] = 0
        self.count[rows] = 0
        self.last_ts[rows] = -np.inf
        self.capabilities[rows] = False
        for name, (_, _, fill) in self._extra_specs.items():
            self.extra[name][rows] = fill

    def evict_idle(self, now: float | None = None, protect: np.ndarray | None = None) -> int:
        """Drop endpoints idle for longer than ``idle_timeout_s`` of sample time; returns how many.

        ``now`` is the sample-time clock (default: the newest timestamp seen); rows in
        ``protect`` (e.g. those that just reported) are never idle.
        """
        return len(self.evict_idle_ids(now, protect))

    def evict_idle_ids(self, now: float | None = None, protect: np.ndarray | None = None) -> list[str]:
        """:meth:`evict_idle`, returning the evicted endpoint ids (the Monitor resolves their alerts)."""
        if self.idle_timeout_s is None or not self._rows:
            return []
        held = self.last_ts > -np.inf
        limit = (self.max_ts if now is None else now) - self.idle_timeout_s
        stale = (self.last_ts < limit) & held
        if protect is not None:
            stale[protect] = False
        idle = np.flatnonzero(stale)
        if not idle.size:
            return []
        ids = [str(e) for e in self.ids[idle]]
        self.evicted_last_ts.update(zip(ids, self.last_ts[idle].tolist()))
        self._release(idle)
        self.evicted_idle += int(idle.size)
        return ids

    def evict(self, endpoint_ids: Iterable[str]) -> int:
        rows = self.lookup(endpoint_ids)
        rows = rows[rows >= 0]
        if rows.size:
            self._release(rows)
        return int(rows.size)

    # -- data -------------------------------------------------------------
    def append(self, rows: np.ndarray, ts: np.ndarray, values: np.ndarray) -> None:
        """Write one sample per row (rows unique): ``ts`` (n,), ``values`` (n, M)."""
        slot = self.head[rows]
        self._vals[rows, :, slot] = values  # type: ignore[index]
        self.ts[rows, slot] = ts
        self.head[rows] = (slot + 1) % self.window
        self.count[rows] += 1
        self.last_ts[rows] = ts
        self.capabilities[rows] |= ~np.isnan(values)
        if ts.size:
            self.max_ts = max(self.max_ts, float(ts.max()))

    def window_of(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Chronological windows (oldest first): values (n, W, M) float32, ts (n, W).

        ``values`` is the transposed view of a C-contiguous ``(n, M, W)`` array (see the
        module docs); both arrays are copies the caller owns.
        """
        rows = np.asarray(rows, dtype=np.int64)
        n, w = rows.shape[0], self.window
        buf, tbuf = self._vals, self.ts
        assert buf is not None
        out = np.empty((n, self.n_metrics, w), dtype=np.float32)
        tout = np.empty((n, w), dtype=np.float64)
        if n == 0:
            return out.transpose(0, 2, 1), tout
        heads = self.head[rows]
        h0 = int(heads[0])
        if n == 1 or not (heads != h0).any():
            groups: list[tuple[Any, Any, int]] = [(slice(None), rows, h0)]
        else:
            # Endpoints that joined at different times: one pair of copies per distinct head.
            order = np.argsort(heads, kind="stable")
            hs = heads[order]
            cut = np.flatnonzero(hs[1:] != hs[:-1]) + 1
            groups = [(sel, rows[sel], int(heads[sel[0]]))
                      for sel in np.split(order, cut)]
        for sel, r, h in groups:
            if r.size > 1 and r[-1] - r[0] == r.size - 1 and (r[1:] > r[:-1]).all():
                r = slice(int(r[0]), int(r[-1]) + 1)  # consecutive rows: plain slices, no gather
            # The oldest sample is at the head: slots h..W-1, then 0..h-1.
            if h == 0:
                out[sel] = buf[r]
                tout[sel] = tbuf[r]
            else:
                out[sel, :, : w - h] = buf[r, :, h:]
                out[sel, :, w - h:] = buf[r, :, :h]
                tout[sel, : w - h] = tbuf[r, h:]
                tout[sel, w - h:] = tbuf[r, :h]
        return out.transpose(0, 2, 1), tout

    # -- state ----------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """Arrays of the used rows, for ``Monitor.snapshot`` (npz, no pickle)."""
        rows = np.fromiter(self._rows.values(), dtype=np.int64)
        ids = np.array(list(self._rows), dtype=str) if rows.size else np.array([], dtype=str)
        return {
            "ids": ids, "values": self.values[rows], "ts": self.ts[rows], "head": self.head[rows],
            "count": self.count[rows], "last_ts": self.last_ts[rows], "caps": self.capabilities[rows],
            "counters": np.array([self.evicted_idle, self.evicted_capacity], dtype=np.int64),
            "max_ts": np.array(self.max_ts),
            **{f"x_{name}": arr[rows] for name, arr in self.extra.items()},
        }

    def load_state(self, st: Mapping[str, np.ndarray]) -> None:
        n = int(st["ids"].shape[0])
        if st["values"].shape[1:] != (self.window, self.n_metrics):
            raise ValueError(f"snapshot window/metrics {st['values'].shape[1:]} do not match the store "
                             f"({self.window}, {self.n_metrics})")
        self._rows.clear()
        self._free.clear()
        self._version += 1
        self._vals = None
        size = 1
        while size < max(n, 1):
            size *= 2
        self._alloc(min(max(size, 256), self.capacity) if n <= self.capacity else n)
        rows = np.array([self._free.pop() for _ in range(n)], dtype=np.int64)
        self.values[rows] = st["values"]
        self.ts[rows] = st["ts"]
        self.head[rows] = st["head"]
        self.count[rows] = st["count"]
        self.last_ts[rows] = st["last_ts"]
        self.capabilities[rows] = st["caps"]
        ids = [str(e) for e in st["ids"]]
        self.ids[rows] = np.array(ids, dtype=object)
        self._rows = dict(zip(ids, rows.tolist()))
        for name, (shape, _, fill) in self._extra_specs.items():
            saved = st.get(f"x_{name}")
            if saved is None:  # a snapshot from before this stage existed: the stage starts afresh
                continue
            if tuple(saved.shape) != (n, *shape):
                raise ValueError(f"snapshot state {name!r} has shape {tuple(saved.shape)}, expected {(n, *shape)}")
            self.extra[name][rows] = saved
        self.evicted_idle, self.evicted_capacity = (int(v) for v in st["counters"])
        self.max_ts = float(st["max_ts"])
