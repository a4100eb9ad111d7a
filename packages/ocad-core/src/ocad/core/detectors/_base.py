"""Shared machinery for detectors that calibrate raw per-metric scores on normal data.

Not part of the protocol: a plugin may implement :class:`~ocad.core.Detector`
any way it likes. Detectors built on :class:`CalibratedDetector` get two-stage
calibration for free:

1. each metric's raw score is mapped through that metric's :class:`Calibration`;
2. the endpoint's score is the max of its calibrated metric scores, mapped again
   through an ``overall`` calibration, because the max of K scores exceeds a
   threshold K times as often as one score does.

Calibration tables are JSON (``calibration_to_dict`` / ``calibration_from_dict``).
Without a fitted table, a metric falls back to ``fallback`` (a documented mapping
of the raw score, e.g. a Gaussian tail for z-scores).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from ._calibration import Calibration, transform_columns
from .._view import DetectorOutput, DetectorView, FeatureFrame

__all__ = ["CalibratedDetector", "RawScores", "feature_matrix", "gaussian_tail_calibration"]


@attrs.frozen(eq=False)
class RawScores:
    """Uncalibrated per-metric scores: higher = more anomalous, NaN = cannot judge."""

    metrics: tuple[str, ...]
    raw: np.ndarray  # (N, K)
    observed: np.ndarray  # (N, K)
    expected: np.ndarray  # (N, K)


@functools.lru_cache(maxsize=4)
def gaussian_tail_calibration(two_sided: bool = False) -> Calibration:
    """Calibration of a standard-normal z-score (one- or two-sided |z|)."""
    zs = np.linspace(0.0, 6.0, 61)
    cdf = np.array([0.5 * (1.0 + math.erf(z / math.sqrt(2.0))) for z in zs])
    if two_sided:
        cdf = 2.0 * cdf - 1.0
    probs, idx = np.unique(np.minimum(cdf, 1.0 - 1e-9), return_index=True)
    return Calibration(probs=tuple(probs), quantiles=tuple(zs[idx]), n=0, tail_scale=0.2)


@attrs.define
class CalibratedDetector:
    """Base for detectors that compute raw per-metric scores (subclasses implement ``raw``).

    Fitted attributes end in ``_``: ``calibrations_`` (metric → Calibration) and
    ``overall_`` (Calibration of the max calibrated metric score).
    """

    name: str = "calibrated"
    kind: str = "generic"
    metrics: tuple[str, ...] = ()
    window: int = 1
    calibrations_: dict[str, Calibration] = attrs.field(factory=dict)
    overall_: Calibration | None = None

    # -- to override --------------------------------------------------------
    def raw(self, view: DetectorView) -> RawScores:  # pragma: no cover - abstract
        raise NotImplementedError

    def fallback(self, metric: str) -> Calibration:
        """Calibration used for a metric without a fitted table."""
        return gaussian_tail_calibration()

    # -- scoring --------------------------------------------------------------
    def _metric_scores(self, r: RawScores) -> np.ndarray:
        cals = [self.calibrations_.get(m) or self.fallback(m) for m in r.metrics]
        return transform_columns(cals, r.raw)

    def score(self, view: DetectorView) -> DetectorOutput:
        r = self.raw(view)
        if r.raw.shape[1] == 0:
            return DetectorOutput.empty(view.n)
        ms = self._metric_scores(r)
        best = np.fmax.reduce(ms, axis=1)  # the largest metric score; NaN only where all are NaN
        if self.overall_ is not None:
            # Work in the tail (-log10(1 - s)) where the table has resolution; NaN stays NaN.
            best = self.overall_.transform(_tail(best))
        return DetectorOutput(scores=best, metrics=r.metrics, metric_scores=ms,
                              observed=r.observed, expected=r.expected)

    # -- fitting --------------------------------------------------------------
    def fit(self, views: Iterable[DetectorView]) -> CalibratedDetector:
        """Fit calibration tables on views of *normal* data (at least 100 samples per metric)."""
        raws: list[RawScores] = [self.raw(v) for v in views]
        if not raws:
            raise ValueError(f"{self.name}: fit() got no views")
        metrics = raws[0].metrics
        stacked = np.concatenate([r.raw for r in raws], axis=0)
        cals: dict[str, Calibration] = {}
        for k, m in enumerate(metrics):
            col = stacked[:, k]
            if np.isfinite(col).sum() >= 100:
                cals[m] = Calibration.fit(col)
        self.calibrations_ = cals
        self.overall_ = None
        ms = np.concatenate([self._metric_scores(r) for r in raws], axis=0)
        valid = ~np.all(np.isnan(ms), axis=1)
        best = np.nanmax(np.where(np.isnan(ms[valid]), -1.0, ms[valid]), axis=1)
        if best.size >= 100:
            self.overall_ = Calibration.fit(_tail(best))
        return self

    def calibration_to_dict(self) -> dict[str, Any]:
        return {
            "metrics": {m: c.to_dict() for m, c in self.calibrations_.items()},
            "overall": self.overall_.to_dict() if self.overall_ is not None else None,
        }

    def load_calibration(self, d: Mapping[str, Any]) -> None:
        self.calibrations_ = {m: Calibration.from_dict(c) for m, c in d.get("metrics", {}).items()}
        ov = d.get("overall")
        self.overall_ = Calibration.from_dict(ov) if ov else None


def feature_matrix(features: FeatureFrame, names: tuple[str, ...]) -> np.ndarray:
    """(N, len(names)) float64 of the named features; NaN columns for names not in the frame.

    One gather per call: the positions are looked up once per (frame layout, names).
    """
    idx, present = _positions(features.names, names)
    if present.all():
        return features.data[:, idx]
    out = np.full((features.data.shape[0], len(names)), np.nan)
    out[:, present] = features.data[:, idx[present]]
    return out


@functools.lru_cache(maxsize=512)
def _positions(frame_names: tuple[str, ...], names: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    index = {n: i for i, n in enumerate(frame_names)}
    idx = np.array([index.get(n, -1) for n in names], dtype=np.intp)
    return idx, idx >= 0


def _tail(s: np.ndarray) -> np.ndarray:
    return -np.log10(np.minimum(np.maximum(1.0 - s, 1e-12), 1.0))
