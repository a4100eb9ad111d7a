"""Window-statistics detectors: spike, continuity, concurrency.

All three read the FeatureEngine's features (computed once per tick for all
detectors) and are calibrated on normal data through :class:`CalibratedDetector`.

* :class:`SpikeDetector` (kind ``spike``): robust z-score of the newest value of
  each gauge metric against its own window, in the metric's bad direction, with a
  fitted per-metric scale floor so that a very steady endpoint does not turn a
  tiny wiggle into a huge z.
* :class:`ContinuityDetector` (kind ``continuity``): loss of continuity over the
  window: the failure rate of boolean metrics (LBM success) and the total of count
  metrics (CCM misses).
* :class:`ConcurrencyDetector` (kind ``concurrency``): how many of an endpoint's
  metrics are elevated at once; one metric misbehaving is common, several
  together rarely are on normal data.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from ._calibration import Calibration
from ._base import CalibratedDetector, RawScores, feature_matrix, gaussian_tail_calibration
from .._metrics import MetricKind, MetricRegistry
from .._view import DetectorView

__all__ = ["ConcurrencyDetector", "ContinuityDetector", "SpikeDetector"]


_FALLBACK_RATE = Calibration(probs=(0.0, 0.5, 0.99, 0.999), quantiles=(0.0, 0.0, 0.05, 0.1), tail_scale=0.05)
_FALLBACK_COUNT = Calibration(probs=(0.0, 0.5, 0.99, 0.999), quantiles=(0.0, 0.0, 1.0, 2.0), tail_scale=1.0)
_FALLBACK_CONCURRENCY = Calibration(probs=(0.0, 0.9, 0.999), quantiles=(0.0, 0.0, 1.0), tail_scale=0.5)


@functools.lru_cache(maxsize=64)
def _names(metrics: tuple[str, ...], features: tuple[str, ...]) -> tuple[str, ...]:
    """``metric:feature`` names, feature-major: all metrics' first feature, then the second, ..."""
    return tuple(f"{m}:{f}" for f in features for m in metrics)


def _params(det: CalibratedDetector, extra: Mapping[str, Any]) -> dict[str, Any]:
    return {"calibration": det.calibration_to_dict(), **extra}


@attrs.define
class SpikeDetector(CalibratedDetector):
    """Robust z of the newest gauge value against its window."""

    name: str = "spike"
    kind: str = "spike"
    window: int = 32
    directions: dict[str, float] = attrs.field(factory=dict)  # metric → +1 (higher is worse) / -1
    scale_floor_: dict[str, float] = attrs.field(factory=dict)

    @classmethod
    def from_registry(cls, metrics: MetricRegistry, **kw: Any) -> SpikeDetector:
        from ._level import direction_of

        gauges = {s.name: direction_of(s) for s in metrics if s.kind is MetricKind.GAUGE}
        return cls(metrics=tuple(gauges), directions=gauges, **kw)

    def _z(self, view: DetectorView, floors: Mapping[str, float]) -> RawScores:
        ms = self.metrics
        cols = feature_matrix(view.features, _names(ms, ("last", "median", "scale")))
        k = len(ms)
        last, med = cols[:, :k], cols[:, k:2 * k]
        scale = np.maximum(cols[:, 2 * k:], np.array([floors.get(m, 0.0) for m in ms]))
        direction = np.array([self.directions.get(m, 1.0) for m in ms])
        z = (last - med) / scale
        raw = np.where(direction == 0.0, np.abs(z), direction * z)  # 0: both directions
        return RawScores(self.metrics, raw, last, med)

    def raw(self, view: DetectorView) -> RawScores:
        return self._z(view, self.scale_floor_)

    def fallback(self, metric: str) -> Calibration:
        return gaussian_tail_calibration(self.directions.get(metric, 1.0) == 0.0)

    def fit(self, views: Iterable[DetectorView]) -> SpikeDetector:
        views = list(views)
        floors: dict[str, list[np.ndarray]] = {m: [] for m in self.metrics}
        for v in views:
            for m in self.metrics:
                if f"{m}:scale" in v.features:
                    floors[m].append(v.features[f"{m}:scale"])
        self.scale_floor_ = {}
        for m, parts in floors.items():
            s = np.concatenate(parts) if parts else np.array([])
            s = s[np.isfinite(s) & (s > 0)]
            if s.size:
                self.scale_floor_[m] = float(np.quantile(s, 0.05))
        super().fit(views)
        return self

    def params_to_dict(self) -> dict[str, Any]:
        return _params(self, {"scale_floor": self.scale_floor_})

    def load_params(self, d: Mapping[str, Any]) -> None:
        self.load_calibration(d["calibration"])
        self.scale_floor_ = {k: float(v) for k, v in d.get("scale_floor", {}).items()}


@attrs.define
class ContinuityDetector(CalibratedDetector):
    """Failure rate of boolean metrics and miss totals of count metrics over the window."""

    name: str = "continuity"
    kind: str = "continuity"
    window: int = 32
    kinds: dict[str, MetricKind] = attrs.field(factory=dict)

    @classmethod
    def from_registry(cls, metrics: MetricRegistry, **kw: Any) -> ContinuityDetector:
        kinds = {s.name: s.kind for s in metrics if s.kind in (MetricKind.BOOLEAN, MetricKind.COUNT)}
        return cls(metrics=tuple(kinds), kinds=kinds, **kw)

    def raw(self, view: DetectorView) -> RawScores:
        keys = tuple(f"{m}:fail_rate" if self.kinds[m] is MetricKind.BOOLEAN else f"{m}:sum" for m in self.metrics)
        raw = feature_matrix(view.features, keys)
        return RawScores(self.metrics, raw, raw.copy(), np.zeros(raw.shape))

    def fallback(self, metric: str) -> Calibration:
        # Without normal data: a failure rate of 10% / 3 misses in the window is already rare.
        return _FALLBACK_RATE if self.kinds.get(metric) is MetricKind.BOOLEAN else _FALLBACK_COUNT

    def params_to_dict(self) -> dict[str, Any]:
        return _params(self, {})

    def load_params(self, d: Mapping[str, Any]) -> None:
        self.load_calibration(d["calibration"])


@attrs.define
class ConcurrencyDetector(CalibratedDetector):
    """Number of simultaneously elevated metrics (FeatureEngine ``concurrency``)."""

    name: str = "concurrency"
    kind: str = "concurrency"
    window: int = 32

    def raw(self, view: DetectorView) -> RawScores:
        f = view.features
        c = f["concurrency"] if "concurrency" in f else np.full(view.n, np.nan)
        # Concurrency needs two metrics to be concurrent: an endpoint reporting one cannot be judged.
        c = np.where(view.capabilities.sum(axis=1) >= 2, c, np.nan)
        # One elevated metric is not concurrency: only the count beyond the first matters.
        raw = np.where(np.isnan(c), np.nan, np.maximum(c - 1.0, 0.0))[:, None]
        return RawScores(("concurrency",), raw, c[:, None], np.zeros((view.n, 1)))

    def fallback(self, metric: str) -> Calibration:
        return _FALLBACK_CONCURRENCY

    def params_to_dict(self) -> dict[str, Any]:
        return _params(self, {})

    def load_params(self, d: Mapping[str, Any]) -> None:
        self.load_calibration(d["calibration"])
