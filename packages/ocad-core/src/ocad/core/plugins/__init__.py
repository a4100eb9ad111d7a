"""Everything a plugin author needs: hook markers, the detector contract, the data it sees.

A plugin implements the hooks in :mod:`ocad.core.plugins.hookspecs` with
:data:`hookimpl`, returns objects satisfying :class:`Detector` (``_protocols``)
and is loaded by :class:`PluginRegistry` (``_registry``). The built-in detectors
and metrics are registered through the same hooks (``_builtins``). The data model
(:class:`DetectorView`, :class:`DetectorOutput`, :class:`FeatureFrame`,
:class:`Evidence`, :class:`MetricSpec`) and the calibration helpers
(:class:`CalibratedDetector`, :class:`RawScores`, :class:`Calibration`) are
re-exported here so that one import serves a plugin.
"""

from __future__ import annotations

from .._metrics import ORAN_METRICS, MetricKind, MetricRegistry, MetricSpec
from .._view import DetectorOutput, DetectorView, Evidence, FeatureFrame
from ..detectors._base import CalibratedDetector, RawScores
from ..detectors._calibration import Calibration
from ._protocols import Detector, ModelArtifact, Scaler
from ._registry import DetectorContext, PluginFailure, PluginInfo, PluginRegistry
from .hookspecs import hookimpl, hookspec

__all__ = [
    "CalibratedDetector",
    "Calibration",
    "Detector",
    "DetectorContext",
    "DetectorOutput",
    "DetectorView",
    "Evidence",
    "FeatureFrame",
    "MetricKind",
    "MetricRegistry",
    "MetricSpec",
    "ModelArtifact",
    "ORAN_METRICS",
    "PluginFailure",
    "PluginInfo",
    "PluginRegistry",
    "RawScores",
    "Scaler",
    "hookimpl",
    "hookspec",
]
