"""OCAD core: samples → validation → windows → features → detectors → composite → alerts."""

from __future__ import annotations

from ._artifact import LoadedArtifact, find_artifacts, load_artifact, write_artifact
from ._calibration import Calibration
from ._detector_base import CalibratedDetector, RawScores
from ._errors import (
    OcadArtifactError,
    OcadConfigError,
    OcadDependencyError,
    OcadError,
    OcadPluginError,
    OcadValidationError,
)
from ._metrics import ORAN_METRICS, MetricKind, MetricRegistry, MetricSpec
from ._protocols import Detector, ModelArtifact, Scaler
from ._registry import DetectorContext, PluginFailure, PluginInfo, PluginRegistry
from ._scalers import RobustScaler, StandardScaler, scaler_from_dict
from ._store import ModelStore
from ._view import DetectorOutput, DetectorView, Evidence, FeatureFrame
from .hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "ORAN_METRICS",
    "CalibratedDetector",
    "Calibration",
    "Detector",
    "DetectorContext",
    "DetectorOutput",
    "DetectorView",
    "Evidence",
    "FeatureFrame",
    "LoadedArtifact",
    "MetricKind",
    "MetricRegistry",
    "MetricSpec",
    "ModelArtifact",
    "ModelStore",
    "OcadArtifactError",
    "OcadConfigError",
    "OcadDependencyError",
    "OcadError",
    "OcadPluginError",
    "OcadValidationError",
    "PluginFailure",
    "PluginInfo",
    "PluginRegistry",
    "RawScores",
    "RobustScaler",
    "Scaler",
    "StandardScaler",
    "find_artifacts",
    "hookimpl",
    "load_artifact",
    "scaler_from_dict",
    "write_artifact",
]
