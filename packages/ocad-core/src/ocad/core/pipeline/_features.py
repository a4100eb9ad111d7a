"""FeatureEngine: window features for all endpoints of a tick at once.

Every feature is computed for all N endpoints and all M metrics in a handful of
numpy operations on an ``(N, M, W)`` array; there is no loop over endpoints.
NaN samples (missing) are ignored; a feature with no valid sample is NaN.

Per metric ``m`` (names ``"m:<feature>"``):

========== ==================================================================
last       newest valid value
mean, std  over valid samples (std with ddof 0)
median     over valid samples
scale      robust scale (see below)
p95, p99   linear-interpolated percentiles over valid samples
ewma       exponentially weighted mean, newest weighted most (``alpha``)
slope_per_s least-squares slope against sample *time* (unit per second), so
           irregular sampling and gaps do not distort it
cusum_pos  one-sided upper / lower CUSUM of the robust z-score against the
cusum_neg  window's own median, with slack ``cusum_k``; closed form
           (Lindley recursion: S_T = Y_T - min(0, min_t Y_t))
z_last     (last - median) / robust scale
fail_run   boolean metrics: consecutive 0s at the end (NaNs skipped)
fail_rate  boolean metrics: fraction of 0s among valid samples
nonzero_run count metrics: consecutive non-zero counts at the end
sum        count metrics: total count in the window
========== ==================================================================

Endpoint level: ``concurrency`` = how many of the endpoint's metrics are
elevated at once (gauge with ``z_last`` beyond ``elevated_z`` in its bad
direction, boolean with a failure at the end, count with a non-zero last value).

The robust scale is ``max(IQR / 1.349, rel_floor * |median|, abs_floor)``: the
floor stops a perfectly flat window from turning a tiny wiggle into a huge z.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

import numpy as np

from .._metrics import MetricKind, MetricRegistry, MetricSpec
from .._view import FeatureFrame

__all__ = ["BASE_FEATURES", "FeatureEngine"]

BASE_FEATURES: tuple[str, ...] = (
    "last", "mean", "std", "median", "scale", "p95", "p99", "ewma", "slope_per_s", "cusum_pos",
    "cusum_neg", "z_last",
)
_KIND_FEATURES = {
    MetricKind.GAUGE: (),
    MetricKind.BOOLEAN: ("fail_run", "fail_rate"),
    MetricKind.COUNT: ("nonzero_run", "sum"),
}


class FeatureEngine:
    """Vectorised window features.

    Parameters
    ----------
    metrics:
        The metric specs, in the order of the value array's last axis.
    alpha:
        EWMA smoothing factor (weight of the newest sample).
    cusum_k:
        CUSUM slack in robust standard deviations.
    elevated_z:
        |z| above which a gauge counts as elevated for ``concurrency``.

    Example
    -------
    >>> from ocad.core.plugins import ORAN_METRICS
    >>> fe = FeatureEngine(ORAN_METRICS[:1])
    >>> v = np.ones((2, 8, 1), np.float32); ts = np.tile(np.arange(8.0) * 5, (2, 1))
    >>> float(fe.compute(v, ts)["udp_echo_rtt_ms:mean"][0])
    1.0
    """

    def __init__(self, metrics: MetricRegistry | Iterable[MetricSpec], *, alpha: float = 0.3,
                 cusum_k: float = 0.5, elevated_z: float = 4.0, rel_floor: float = 0.01,
                 abs_floor: float = 1e-6) -> None:
        self.specs: tuple[MetricSpec, ...] = tuple(metrics)
        self.alpha = float(alpha)
        self.cusum_k = float(cusum_k)
        self.elevated_z = float(elevated_z)
        self.rel_floor = float(rel_floor)
        self.abs_floor = float(abs_floor)
        names: list[str] = []
        for s in self.specs:
            names += [f"{s.name}:{f}" for f in BASE_FEATURES + _KIND_FEATURES[s.kind]]
        names.append("concurrency")
        self.names: tuple[str, ...] = tuple(names)
        # Column layout of the output, so that compute() writes whole blocks at once.
        index = {nm: i for i, nm in enumerate(names)}
        self._base_rows = np.array([index[f"{s.name}:{f}"] for f in BASE_FEATURES for s in self.specs],
                                   dtype=np.intp)
        kinds = [s.kind for s in self.specs]
        self._gauges = np.array([j for j, k in enumerate(kinds) if k is MetricKind.GAUGE], dtype=np.intp)
        # +1 / -1: the declared bad direction; 0: none declared, either direction counts.
        self._gauge_sign = np.array([0.0 if self.specs[j].higher_is_worse is None
                                     else (1.0 if self.specs[j].higher_is_worse else -1.0) for j in self._gauges])
        self._runs = np.array([j for j, k in enumerate(kinds) if k is not MetricKind.GAUGE], dtype=np.intp)
        self._run_is_bool = np.array([kinds[j] is MetricKind.BOOLEAN for j in self._runs], dtype=bool)
        self._kind_rows = np.array([index[f"{self.specs[j].name}:{f}"] for j in self._runs
                                    for f in _KIND_FEATURES[kinds[j]]], dtype=np.intp)
        self._wts: dict[int, np.ndarray] = {}

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def compute(self, values: np.ndarray, ts: np.ndarray) -> FeatureFrame:
        """Features of N endpoints from ``values`` (N, W, M) and ``ts`` (N, W)."""
        n, w, m = values.shape
        if m != len(self.specs):
            raise ValueError(f"values have {m} metrics, the engine was built for {len(self.specs)}")
        # Feature-major storage: each feature column is contiguous, for the blocks written here
        # and for the detectors, which read whole columns. ``data`` is its (N, F) transpose.
        out = np.empty((len(self.names), n), dtype=np.float64)
        if n == 0:
            return FeatureFrame(self.names, out.T, window=w)
        xs = np.transpose(values, (0, 2, 1))  # (N, M, W): the WindowStore's layout, a view
        ts = np.asarray(ts, dtype=np.float64)
        # Blocks of endpoints whose temporaries stay in the CPU cache: on a large fleet every
        # pass over main memory costs more than all the arithmetic of a block.
        step = max(1, _BLOCK_VALUES // (m * w))
        with np.errstate(invalid="ignore", divide="ignore"):
            for lo in range(0, n, step):
                hi = min(n, lo + step)
                self._block(xs[lo:hi], ts[lo:hi], out[:, lo:hi])
        return FeatureFrame(self.names, out.T, window=w)

    def _block(self, xb: np.ndarray, tsb: np.ndarray, out: np.ndarray) -> None:
        """Features of one block of endpoints into ``out`` (F, block)."""
        nb, m, w = xb.shape
        c = m * nb
        f32 = np.float32
        # One column per (metric, endpoint), time first: reductions over time then add whole
        # rows of the block (vectorised), not 32-sample strips one by one.
        xr = np.ascontiguousarray(np.transpose(xb, (1, 0, 2)), dtype=f32).reshape(c, w)
        x = xr.T.copy()  # (W, C), our own: modified in place below
        valid = x == x  # not NaN
        cnt = valid.sum(axis=0)
        has = cnt > 0
        safe_cnt = np.maximum(cnt, 1)
        # Columns with a missing sample take the slower, masked paths; usually they are few.
        part = np.flatnonzero(cnt < w)
        vp = valid[:, part]
        if part.size:
            x[:, part] = np.where(vp, x[:, part], f32(0.0))  # x is ours: missing -> 0 in place
        t = tsb.T - tsb[:, -1]  # (W, nb), time relative to the newest slot
        t = np.where(np.isfinite(t), t, 0.0)
        tp = t[:, part % nb]

        # All five quantiles from one sort: NaN sorts last, so the first cnt entries are valid.
        srt = np.sort(xr, axis=1)
        pos = (w - 1) * _QS  # a full window: the same positions in every row
        lo = pos.astype(np.int64)
        a = srt[:, lo].astype(np.float64)
        q = a + (srt[:, np.minimum(lo + 1, w - 1)].astype(np.float64) - a) * (pos - lo)  # (C, 5)
        if part.size:
            top = np.maximum(cnt[part] - 1, 0)
            pos_p = top[:, None] * _QS
            lo_p = pos_p.astype(np.int64)  # floor: pos >= 0
            col = part[:, None]
            a = srt[col, lo_p].astype(np.float64)
            q[part] = a + (srt[col, np.minimum(lo_p + 1, top[:, None])].astype(np.float64) - a) * (pos_p - lo_p)
        q = q.T
        med = q[1]
        scale = np.maximum(np.maximum((q[2] - q[0]) / 1.349, self.rel_floor * np.abs(med)), self.abs_floor)

        s1 = x.sum(axis=0, dtype=np.float64)
        mean = s1 / safe_cnt
        dev = np.subtract(x, mean.astype(f32))
        if part.size:
            dev[:, part] *= vp
        std = np.sqrt(np.square(dev, dtype=np.float64).sum(axis=0) / safe_cnt)

        # Newest valid value: the newest slot, except where it is missing.
        last = x[-1].astype(np.float64)
        miss = part[~vp[-1]]
        if miss.size:
            pos_last = w - 1 - np.argmax(valid[::-1, miss], axis=0)
            last[miss] = x[pos_last, miss]

        # EWMA as a normalised weighted mean: equals the recursion and skips NaNs.
        wts = self._ewma_weights(w)
        num = (x * wts[:, None]).sum(axis=0).astype(np.float64)
        ewma = num / self._ewma_norm(w)
        if part.size:
            ewma[part] = num[part] / (vp * wts[:, None]).sum(axis=0)

        # Slope against sample time (per second): sum(dev * (t - mean t)) / sum((t - mean t)^2)
        # over the valid samples, with centred times so that neither sum cancels (the valid
        # samples can sit an hour before the newest slot); float64 where samples are missing.
        tc = t - t.mean(axis=0)  # a full window: every slot valid
        den = np.tile(np.square(tc).sum(axis=0), m)
        sdt = (dev.reshape(w, m, nb) * tc.astype(f32)[:, None, :]).sum(axis=0).ravel().astype(np.float64)
        if part.size:
            tcp = tp - (tp * vp).sum(axis=0) / safe_cnt[part]
            den[part] = (np.square(tcp) * vp).sum(axis=0)
            sdt[part] = (tcp * dev[:, part]).sum(axis=0)
        slope = sdt / den

        # CUSUM of the robust z = (x - median) / scale with slack k, both directions at once,
        # in the Lindley closed form; a missing sample adds nothing.
        k_scale = self.cusum_k * scale
        inc = np.empty((w, 2, c), dtype=f32)
        np.subtract(x, (med + k_scale).astype(f32), out=inc[:, 0])
        np.subtract((med - k_scale).astype(f32), x, out=inc[:, 1])
        inc *= (1.0 / scale).astype(f32)
        if part.size:
            inc[:, :, part] *= vp[:, None]
        y = _cumsum0(inc)
        cus = (y[-1] - np.minimum(0.0, y.min(axis=0))).astype(np.float64)  # (2, C)
        z_last = (last - med) / scale

        base = np.stack((last, mean, std, med, scale, q[3], q[4], ewma, slope, cus[0], cus[1], z_last))
        if part.size:
            base[:, ~has] = np.nan
        out[self._base_rows] = base.reshape(-1, nb)  # (12 * M, nb), feature-major
        has2 = has.reshape(m, nb)
        elevated = np.zeros((m, nb), dtype=bool)
        if self._gauges.size:
            zg = z_last.reshape(m, nb)[self._gauges]
            sign = self._gauge_sign[:, None]
            zl = np.where(sign == 0.0, np.abs(zg), zg * sign)
            elevated[self._gauges] = zl > self.elevated_z
        if self._runs.size:
            # Boolean and count metrics together: (W, R, nb) failures ("bad") and successes ("good").
            runs = self._runs
            is_bool = self._run_is_bool[:, None]
            xk = x.reshape(w, m, nb)[:, runs]
            vk = valid.reshape(w, m, nb)[:, runs]
            bad = vk & np.where(is_bool, xk < 0.5, xk > 0)
            good = vk & np.where(is_bool, xk >= 0.5, xk == 0)
            # Position of the newest good sample (0: none); the run is the bad samples after it.
            slots = _positions(w)[:, None, None]
            newest = (good * slots).max(axis=0)
            run = np.count_nonzero(bad & (slots > newest), axis=0).astype(np.float64)
            n_bad = np.count_nonzero(bad, axis=0)
            second = np.where(is_bool, n_bad / safe_cnt.reshape(m, nb)[runs], s1.reshape(m, nb)[runs])
            kind = np.stack((run, second), axis=1)  # (R, 2, nb)
            if part.size:
                kind[~np.broadcast_to(has2[runs][:, None], kind.shape)] = np.nan
            out[self._kind_rows] = kind.reshape(-1, nb)
            elevated[runs] = np.where(is_bool, run >= 1, last.reshape(m, nb)[runs] > 0)
        if part.size:
            elevated &= has2
        out[-1] = np.where(has2.any(axis=0), elevated.sum(axis=0), np.nan)

    def _ewma_norm(self, w: int) -> float:
        """Sum of the EWMA weights of a full window (float32, added in time order)."""
        return float(np.add.reduce(self._ewma_weights(w)[:, None], axis=0)[0])

    def _ewma_weights(self, w: int) -> np.ndarray:
        wts = self._wts.get(w)
        if wts is None:
            wts = self._wts[w] = (self.alpha * (1.0 - self.alpha) ** np.arange(w - 1, -1, -1)).astype(np.float32)
        return wts


_QS = np.array([0.25, 0.5, 0.75, 0.95, 0.99])
# Values (endpoints x metrics x window) per block of FeatureEngine.compute: ~1 MB per float32 temporary.
# An endpoint's features must not depend on which other endpoints share its tick or block (a Monitor
# sharded by endpoint gives the same numbers): every sum over time is an elementwise product then a
# reduction over axis 0 (rows added in time order), never a BLAS or einsum call, whose rounding can
# depend on a column's position in the block (vectorised body vs scalar remainder, FMA or not).
_BLOCK_VALUES = 1 << 18


def _cumsum0(a: np.ndarray) -> np.ndarray:
    """Cumulative sum over the first axis, in place.

    numpy's ``cumsum(axis=0)`` walks each column on its own; adding whole rows is
    several times faster once the rows are more than a few hundred values long.
    """
    if a[0].size < 256:
        return np.cumsum(a, axis=0, out=a)
    for i in range(1, a.shape[0]):
        np.add(a[i - 1], a[i], out=a[i])
    return a


@functools.lru_cache(maxsize=8)
def _positions(w: int) -> np.ndarray:
    """1, 2, ..., w (int16): slot numbers for the run lengths."""
    return np.arange(1, w + 1, dtype=np.int16)
