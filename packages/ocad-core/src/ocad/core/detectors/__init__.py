"""The built-in detectors and the calibration they share.

``_base`` (CalibratedDetector: raw scores → calibrated [0, 1] through a
:class:`Calibration`), ``_calibration`` (the calibration tables), ``_rules``
(RuleDetector: hard thresholds), ``_statistical`` (Spike, Continuity and
Concurrency detectors) and ``_changepoint`` (ChangepointDetector and PELT).
"""

from __future__ import annotations

from ._base import CalibratedDetector, RawScores
from ._calibration import Calibration
from ._changepoint import ChangepointDetector, pelt, pelt_last_change
from ._rules import DEFAULT_THRESHOLDS, RuleDetector
from ._statistical import ConcurrencyDetector, ContinuityDetector, SpikeDetector

__all__ = [
    "CalibratedDetector",
    "Calibration",
    "ChangepointDetector",
    "ConcurrencyDetector",
    "ContinuityDetector",
    "DEFAULT_THRESHOLDS",
    "RawScores",
    "RuleDetector",
    "SpikeDetector",
    "pelt",
    "pelt_last_change",
]
