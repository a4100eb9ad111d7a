"""Detectors against the long-horizon baselines: level (drift and shifts) and recurrence.

Both read ``view.baseline`` (:class:`~ocad.core._baseline.BaselineFrame`), the
endpoint's own normal level and spread learned over hours, and judge nothing
(NaN) where there is no baseline yet.

* :class:`LevelDetector` (kind ``level``): the median of the newest ``recent``
  samples against the expected level (level plus the daily profile) and against
  the de-seasonalised quarter-hour means of the last hours, in standard errors.
  A drift over hours shows here before it turns into failures: the level of an
  hour ago does not follow it the way the window's own median does.
* :class:`RecurrenceDetector` (kind ``recurrence``): how many of the window's
  samples are excursions (beyond ``excursion_z`` spreads from the expected
  level). One blip is one excursion, which is common; a microburst every 30 s or
  a fault on every other sample is many, which normal data rarely has. Scored by
  the binomial tail of the count under the endpoint's excursion rate.

A metric whose spec declares no bad direction (``higher_is_worse=None``) is
judged in both directions.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from ._calibration import Calibration
from ._base import CalibratedDetector, RawScores, feature_matrix, gaussian_tail_calibration
from .._metrics import MetricKind, MetricRegistry
from .._view import DetectorView

__all__ = ["LevelDetector", "RecurrenceDetector", "direction_of"]

#: Standard error of a median of k Gaussian samples is about this times sigma / sqrt(k).
_MEDIAN_SE = math.sqrt(math.pi / 2.0)
#: A baseline needs this many samples behind it before it is used.
MIN_BASELINE_WEIGHT = 8.0


def direction_of(spec: Any) -> float:
    """+1: higher is worse, -1: lower is worse, 0: both directions (not declared)."""
    h = getattr(spec, "higher_is_worse", True)
    return 0.0 if h is None else (1.0 if h else -1.0)


def _directed(z: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """``z`` in the bad direction: ``d * z`` for a declared direction, ``|z|`` for both."""
    return np.where(direction == 0.0, np.abs(z), direction * z)


def _gauges(metrics: MetricRegistry) -> dict[str, float]:
    return {s.name: direction_of(s) for s in metrics if s.kind is MetricKind.GAUGE}


def _metric_columns(view: DetectorView, metrics: tuple[str, ...]) -> np.ndarray | None:
    idx = [view.metric_index(m) for m in metrics]
    if any(i is None for i in idx):
        return None
    return np.asarray(idx, dtype=np.intp)


def _median(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Median over axis 1 ignoring NaN, and the count of valid values: (n, k) each. NaN where none."""
    cnt = np.sum(x == x, axis=1)
    srt = np.sort(x, axis=1)  # NaN sorts last: the first cnt entries are the valid ones
    lo = np.maximum(cnt - 1, 0) // 2
    hi = np.maximum(cnt, 1) // 2
    a = np.take_along_axis(srt, lo[:, None, :], axis=1)[:, 0]
    b = np.take_along_axis(srt, np.where(cnt % 2 == 1, lo, hi)[:, None, :], axis=1)[:, 0]
    return np.where(cnt > 0, 0.5 * (a + b), np.nan), cnt


@attrs.define
class _BaselineDetector(CalibratedDetector):
    """What both detectors share: gauge metrics with directions, the baseline columns, params."""

    directions: dict[str, float] = attrs.field(factory=dict)

    @classmethod
    def from_registry(cls, metrics: MetricRegistry, **kw: Any) -> Any:
        d = _gauges(metrics)
        return cls(metrics=tuple(d), directions=d, **kw)

    def _columns(self, view: DetectorView) -> np.ndarray | None:
        """The view's columns of this detector's metrics; None where it cannot judge (no baseline)."""
        if view.baseline is None or not self.metrics:
            return None
        return _metric_columns(view, self.metrics)

    def _cannot_judge(self, view: DetectorView) -> RawScores:
        nan = np.full((view.n, len(self.metrics)), np.nan)
        return RawScores(self.metrics, nan, nan, nan)

    def _direction(self) -> np.ndarray:
        return np.array([self.directions.get(m, 1.0) for m in self.metrics])

    def params_to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration_to_dict()}

    def load_params(self, d: Mapping[str, Any]) -> None:
        self.load_calibration(d["calibration"])


@attrs.define
class LevelDetector(_BaselineDetector):
    """Recent level against the endpoint's long-horizon baseline (drifts, shifts, drops)."""

    name: str = "level"
    kind: str = "level"
    window: int = 32
    recent: int = 8
    min_age_quarters: int = 2

    def raw(self, view: DetectorView) -> RawScores:
        bl, cols = view.baseline, self._columns(view)
        if cols is None:
            return self._cannot_judge(view)
        r = min(self.recent, view.window)
        recent = view.values[:, -r:, :][:, :, cols].astype(np.float64)  # (n, r, k)
        rec, cnt = _median(recent)
        exp = bl.expected[:, cols]
        # The spread of single samples: the window's robust scale (the noise now) where known, not
        # the baseline's, which also holds the slow swings of the last hours and would hide a step.
        local = feature_matrix(view.features, tuple(f"{m}:scale" for m in self.metrics))
        spread = np.where(np.isfinite(local) & (local > 0), np.minimum(local, bl.scale[:, cols]), bl.scale[:, cols])
        se = spread * _MEDIAN_SE / np.sqrt(np.maximum(cnt, 1))
        ok = (bl.weight[:, cols] >= MIN_BASELINE_WEIGHT) & (cnt >= max(2, r // 2))
        direction = self._direction()
        with np.errstate(all="ignore"):
            z = _directed((rec - exp) / se, direction)
            # Against the quarter-hours of the last hours (not the newest ones, which overlap the
            # recent samples): the level before a drift began, free of the daily pattern.
            hist = bl.history[:, cols, : max(bl.history.shape[2] - self.min_age_quarters, 0)]
            if hist.shape[2]:
                dz = _directed(((rec - bl.season[:, cols])[:, :, None] - hist) / se[:, :, None], direction[:, None])
                zh = np.nanmax(np.where(np.isnan(dz), -np.inf, dz), axis=2)
                z = np.fmax(z, np.where(np.isfinite(zh), zh, np.nan))
        raw = np.where(ok, z, np.nan)
        return RawScores(self.metrics, raw, rec, exp)

    def fallback(self, metric: str) -> Calibration:
        return gaussian_tail_calibration(self.directions.get(metric, 1.0) == 0.0)


@functools.lru_cache(maxsize=32)
def binomial_calibration(n: int, rate: float) -> Calibration:
    """Calibration of an excursion count out of ``n`` samples, each an excursion with ``rate``.

    ``transform(k)`` = P(X < k), so ``1 - score`` is the tail probability P(X >= k).
    """
    pmf = [math.comb(n, j) * rate ** j * (1.0 - rate) ** (n - j) for j in range(n + 1)]
    probs, qs = [0.0], [0.0]
    below = 0.0
    for k in range(1, n + 1):
        below += pmf[k - 1]
        if below >= 1.0 - 1e-15 or below <= probs[-1]:
            break
        probs.append(below)
        qs.append(float(k))
    return Calibration(probs=tuple(probs), quantiles=tuple(qs), n=0, tail_scale=0.25)


@attrs.define
class RecurrenceDetector(_BaselineDetector):
    """Count of excursions in the window: recurring and intermittent faults (k of n samples)."""

    name: str = "recurrence"
    kind: str = "recurrence"
    window: int = 32
    excursion_z: float = 4.0
    excursion_rate: float = 0.005

    def raw(self, view: DetectorView) -> RawScores:
        bl, cols = view.baseline, self._columns(view)
        if cols is None:
            return self._cannot_judge(view)
        w = min(self.window, view.window)
        x = view.values[:, -w:, :][:, :, cols].astype(np.float64)  # (n, w, k)
        exp = bl.expected[:, cols]
        scale = bl.scale[:, cols]
        direction = self._direction()
        with np.errstate(all="ignore"):
            z = _directed((x - exp[:, None, :]) / scale[:, None, :], direction)
        # Beyond the endpoint's own excursion level (its 99.5 % |z| on normal data, at least
        # ``excursion_z``): heavy-tailed noise has a higher level than Gaussian noise.
        level = np.full(exp.shape, self.excursion_z) if bl.excursion is None \
            else np.maximum(bl.excursion[:, cols], self.excursion_z)
        exc = np.sum(z > level[:, None, :], axis=1).astype(np.float64)  # NaN compares False
        valid = np.sum(~np.isnan(x), axis=1)
        ok = (bl.weight[:, cols] >= MIN_BASELINE_WEIGHT) & (valid >= w // 2)
        raw = np.where(ok, exc, np.nan)
        return RawScores(self.metrics, raw, raw.copy(), np.where(ok, valid * self.excursion_rate, np.nan))

    def fallback(self, metric: str) -> Calibration:
        return binomial_calibration(self.window, self.excursion_rate)
