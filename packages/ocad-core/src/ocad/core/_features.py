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

from collections.abc import Iterable

import numpy as np

from ._metrics import MetricKind, MetricRegistry, MetricSpec
from ._view import FeatureFrame

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
    >>> from ocad.core import ORAN_METRICS
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

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)

    def compute(self, values: np.ndarray, ts: np.ndarray) -> FeatureFrame:
        """Features of N endpoints from ``values`` (N, W, M) and ``ts`` (N, W)."""
        n, w, m = values.shape
        if m != len(self.specs):
            raise ValueError(f"values have {m} metrics, the engine was built for {len(self.specs)}")
        if n == 0:
            return FeatureFrame(self.names, np.empty((0, len(self.names))))
        x = np.ascontiguousarray(np.transpose(values, (0, 2, 1)), dtype=np.float64)  # (N, M, W)
        valid = ~np.isnan(x)
        cnt = valid.sum(axis=2)  # (N, M)
        has = cnt > 0
        safe_cnt = np.maximum(cnt, 1)
        x0 = np.where(valid, x, 0.0)

        with np.errstate(invalid="ignore", divide="ignore"):
            mean = x0.sum(axis=2) / safe_cnt
            dev = np.where(valid, x - mean[..., None], 0.0)
            std = np.sqrt((dev * dev).sum(axis=2) / safe_cnt)

            # Percentiles from one sort: NaN sorts last, so the first cnt entries are valid.
            srt = np.sort(x, axis=2)
            q = _quantiles(srt, cnt, (0.25, 0.5, 0.75, 0.95, 0.99))
            q25, med, q75, p95, p99 = q
            scale = np.maximum.reduce([(q75 - q25) / 1.349, self.rel_floor * np.abs(med),
                                       np.full_like(med, self.abs_floor)])

            # Newest valid value.
            rev_valid = valid[..., ::-1]
            last_pos = w - 1 - np.argmax(rev_valid, axis=2)
            last = np.take_along_axis(x, last_pos[..., None], axis=2)[..., 0]

            # EWMA as a normalised weighted mean: equals the recursion and skips NaNs.
            wts = self.alpha * (1.0 - self.alpha) ** np.arange(w - 1, -1, -1, dtype=np.float64)
            wv = valid * wts
            ewma = (x0 * wts).sum(axis=2) / wv.sum(axis=2)

            # Slope against time (per second).
            t = np.broadcast_to(ts[:, None, :], x.shape)
            tv = np.where(valid, t, 0.0)
            tmean = tv.sum(axis=2) / safe_cnt
            tc = np.where(valid, t - tmean[..., None], 0.0)
            slope = (tc * dev).sum(axis=2) / (tc * tc).sum(axis=2)

            # CUSUM of robust z with slack k, Lindley closed form.
            z = np.where(valid, (x - med[..., None]) / scale[..., None], 0.0)
            inc_p = np.where(valid, z - self.cusum_k, 0.0)
            inc_n = np.where(valid, -z - self.cusum_k, 0.0)
            cusum_pos = _lindley(inc_p)
            cusum_neg = _lindley(inc_n)
            z_last = (last - med) / scale

        out = np.empty((n, len(self.names)), dtype=np.float64)
        col = 0
        elevated = np.zeros(n, dtype=np.int64)
        for j, spec in enumerate(self.specs):
            h = has[:, j]
            base = (last[:, j], mean[:, j], std[:, j], med[:, j], scale[:, j], p95[:, j], p99[:, j], ewma[:, j], slope[:, j],
                    cusum_pos[:, j], cusum_neg[:, j], z_last[:, j])
            for arr in base:
                out[:, col] = np.where(h, arr, np.nan)
                col += 1
            xj, vj = x[:, j, :], valid[:, j, :]
            if spec.kind is MetricKind.BOOLEAN:
                bad, good = vj & (xj < 0.5), vj & (xj >= 0.5)
                run = _tail_run(bad, good)
                rate = bad.sum(axis=1) / np.maximum(cnt[:, j], 1)
                out[:, col] = np.where(h, run, np.nan)
                out[:, col + 1] = np.where(h, rate, np.nan)
                col += 2
                elevated += (h & (run >= 1)).astype(np.int64)
            elif spec.kind is MetricKind.COUNT:
                bad, good = vj & (xj > 0), vj & (xj == 0)
                run = _tail_run(bad, good)
                out[:, col] = np.where(h, run, np.nan)
                out[:, col + 1] = np.where(h, np.where(vj, xj, 0.0).sum(axis=1), np.nan)
                col += 2
                elevated += (h & (last[:, j] > 0)).astype(np.int64)
            else:
                zl = z_last[:, j] if spec.higher_is_worse else -z_last[:, j]
                elevated += (h & (zl > self.elevated_z)).astype(np.int64)
        out[:, col] = np.where(has.any(axis=1), elevated, np.nan)
        return FeatureFrame(self.names, out)


def _quantiles(srt: np.ndarray, cnt: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated quantiles (numpy's default method) of rows sorted with NaN last."""
    res = []
    top = np.maximum(cnt - 1, 0)
    for qv in qs:
        pos = qv * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        frac = pos - lo
        a = np.take_along_axis(srt, lo[..., None], axis=-1)[..., 0]
        b = np.take_along_axis(srt, hi[..., None], axis=-1)[..., 0]
        res.append(np.where(cnt > 0, a + (b - a) * frac, np.nan))
    return res


def _lindley(inc: np.ndarray) -> np.ndarray:
    """Final value of S_t = max(0, S_{t-1} + inc_t), S_0 = 0, along the last axis."""
    y = np.cumsum(inc, axis=-1)
    return y[..., -1] - np.minimum(0.0, y.min(axis=-1))


def _tail_run(bad: np.ndarray, good: np.ndarray) -> np.ndarray:
    """Number of ``bad`` samples at the end of each row before the newest ``good`` one."""
    bad_r, good_r = bad[:, ::-1], good[:, ::-1]
    w = bad.shape[1]
    any_good = good_r.any(axis=1)
    first_good = np.where(any_good, np.argmax(good_r, axis=1), w)
    cs = np.cumsum(bad_r, axis=1)
    idx = np.clip(first_good - 1, 0, w - 1)
    run = np.take_along_axis(cs, idx[:, None], axis=1)[:, 0]
    return np.where(first_good == 0, 0, run).astype(np.float64)
