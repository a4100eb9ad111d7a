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
        # float32 (N, M, W): half the memory traffic of float64; reductions accumulate in float64
        # where cancellation could matter (means), and work on centred values elsewhere.
        x = np.ascontiguousarray(np.transpose(values, (0, 2, 1)), dtype=np.float32)
        valid = ~np.isnan(x)
        validf = valid.astype(np.float32)
        cnt = valid.sum(axis=2)  # (N, M)
        has = cnt > 0
        safe_cnt = np.maximum(cnt, 1)
        x0 = np.where(valid, x, np.float32(0.0))
        flat = x.reshape(n * m, w)
        base_idx = np.arange(n * m) * w

        with np.errstate(invalid="ignore", divide="ignore"):
            mean = x0.sum(axis=2, dtype=np.float64) / safe_cnt
            dev = (x0 - mean.astype(np.float32)[..., None]) * validf
            std = np.sqrt(np.einsum("nmw,nmw->nm", dev, dev, dtype=np.float64) / safe_cnt)

            # Percentiles from one sort: NaN sorts last, so the first cnt entries are valid.
            srt = np.sort(flat, axis=1).ravel()
            q25, med, q75, p95, p99 = _quantiles(srt, base_idx, cnt.ravel(), (0.25, 0.5, 0.75, 0.95, 0.99))
            q25, med, q75, p95, p99 = (a.reshape(n, m) for a in (q25, med, q75, p95, p99))
            scale = np.maximum(np.maximum((q75 - q25) / 1.349, self.rel_floor * np.abs(med)), self.abs_floor)

            # Newest valid value.
            last_pos = w - 1 - np.argmax(valid[..., ::-1], axis=2)
            last = flat.ravel()[base_idx + last_pos.ravel()].reshape(n, m).astype(np.float64)

            # EWMA as a normalised weighted mean: equals the recursion and skips NaNs.
            wts = (self.alpha * (1.0 - self.alpha) ** np.arange(w - 1, -1, -1)).astype(np.float32)
            ewma = (x0 @ wts).astype(np.float64) / (validf @ wts)

            # Slope against sample time (per second), time relative to the newest slot. In float64:
            # in float32, stt - st²/n cancels when a metric's valid samples sit far from the newest
            # slot (after a gap), and the float32 mean's rounding leaks into sdt as mean_err * st.
            t = ts - ts[:, -1:]
            t = np.where(np.isfinite(t), t, 0.0)[:, :, None]  # (N, W, 1)
            validd = valid.astype(np.float64)
            st = (validd @ t)[..., 0]
            stt = (validd @ (t * t))[..., 0]
            sdt = (((x0 - mean[..., None]) * validd) @ t)[..., 0]
            slope = sdt / (stt - st * st / safe_cnt)

            # CUSUM of robust z with slack k, Lindley closed form.
            z = (x0 - med.astype(np.float32)[..., None]) / scale.astype(np.float32)[..., None]
            k = np.float32(self.cusum_k)
            cusum_pos = _lindley((z - k) * validf)
            cusum_neg = _lindley((-z - k) * validf)
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
                out[:, col + 1] = np.where(h, x0[:, j, :].sum(axis=1, dtype=np.float64), np.nan)
                col += 2
                elevated += (h & (last[:, j] > 0)).astype(np.int64)
            else:
                zl = z_last[:, j] if spec.higher_is_worse else -z_last[:, j]
                elevated += (h & (zl > self.elevated_z)).astype(np.int64)
        out[:, col] = np.where(has.any(axis=1), elevated, np.nan)
        return FeatureFrame(self.names, out)


def _quantiles(srt: np.ndarray, base: np.ndarray, cnt: np.ndarray, qs: tuple[float, ...]) -> list[np.ndarray]:
    """Linear-interpolated quantiles (numpy's default method) of rows sorted with NaN last.

    ``srt`` is the flattened sorted array, ``base`` the offset of each row in it.
    """
    res = []
    top = np.maximum(cnt - 1, 0)
    for qv in qs:
        pos = qv * top
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, top)
        frac = pos - lo
        a = srt[base + lo].astype(np.float64)
        b = srt[base + hi].astype(np.float64)
        res.append(np.where(cnt > 0, a + (b - a) * frac, np.nan))
    return res


def _lindley(inc: np.ndarray) -> np.ndarray:
    """Final value of S_t = max(0, S_{t-1} + inc_t), S_0 = 0, along the last axis."""
    y = np.cumsum(inc, axis=-1)
    return (y[..., -1] - np.minimum(0.0, y.min(axis=-1))).astype(np.float64)


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
