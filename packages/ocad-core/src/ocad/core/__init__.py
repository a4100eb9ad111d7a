"""OCAD core: probe samples → validation → windows → features → detectors → composite → alerts.

The one import an embedding application needs::

    from ocad.core import Monitor

    mon = Monitor.from_defaults()
    for event in mon.observe(records):       # records: {"endpoint_id", "ts", <metric>: value}
        print(event.event, event.alert.endpoint_id, event.alert.severity, event.alert.evidence)

Each stage of the data flow lives in one private module: ``_validate`` (Validator),
``_window`` (WindowStore), ``_features`` (FeatureEngine), detectors in ``_rules``,
``_statistical`` and ``_changepoint``, ``_ensemble`` (CompositeDetector), ``_alerts``
(AlertPolicy) and ``_monitor`` (Monitor), which wires them together. ``_state``
exports and imports one endpoint's (or a group's) window and alert state as plain
lists and JSON, for runners that shard endpoints; ``ocad.core.spark`` (extra
``spark``) is such a runner on Apache Spark.
"""

from __future__ import annotations

from .pipeline._alerts import Alert, AlertEvent, AlertPolicy, AlertPolicyConfig
from .artifacts._artifact import LoadedArtifact, find_artifacts, load_artifact, write_artifact
from .detectors._calibration import Calibration
from .detectors._changepoint import ChangepointDetector, pelt, pelt_last_change
from ._config import MonitorConfig
from .detectors._base import CalibratedDetector, RawScores
from .pipeline._composite import CompositeDetector, CompositeOutput, DetectorHealth
from ._errors import (
    OcadArtifactError,
    OcadConfigError,
    OcadDependencyError,
    OcadError,
    OcadPluginError,
    OcadValidationError,
)
from .tooling._evaluation import EventMatch, alerts_from_events, match_events, summarize_matches
from .pipeline._features import FeatureEngine
from .tooling._io import read_records, write_events
from ._metrics import ORAN_METRICS, MetricKind, MetricRegistry, MetricSpec
from ._monitor import Monitor
from .plugins._protocols import Detector, ModelArtifact, Scaler
from .tooling._quality import Evaluation, Suite, evaluate, load_labelled_file, load_suite, tune_weights
from .plugins._registry import DetectorContext, PluginFailure, PluginInfo, PluginRegistry
from .tooling._report import write_report
from .detectors._rules import DEFAULT_THRESHOLDS, RuleDetector
from .artifacts._scalers import RobustScaler, StandardScaler, scaler_from_dict
from .tooling._shadow import ShadowReport, ShadowRunner
from .pipeline._state import export_state, import_state, reset_state
from .detectors._statistical import ConcurrencyDetector, ContinuityDetector, SpikeDetector
from .artifacts._store import ModelStore
from .tooling._synthetic import FAULT_TYPES, EndpointInfo, FaultEvent, Fleet, generate_fleet
from .pipeline._validate import Batch, ValidationStats, Validator
from ._view import DetectorOutput, DetectorView, Evidence, FeatureFrame
from .pipeline._window import WindowStore
from .plugins.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertPolicy",
    "AlertPolicyConfig",
    "Batch",
    "CalibratedDetector",
    "Calibration",
    "ChangepointDetector",
    "CompositeDetector",
    "CompositeOutput",
    "ConcurrencyDetector",
    "ContinuityDetector",
    "DEFAULT_THRESHOLDS",
    "Detector",
    "DetectorContext",
    "DetectorHealth",
    "DetectorOutput",
    "DetectorView",
    "EndpointInfo",
    "Evaluation",
    "EventMatch",
    "Evidence",
    "FAULT_TYPES",
    "FaultEvent",
    "FeatureEngine",
    "FeatureFrame",
    "Fleet",
    "LoadedArtifact",
    "MetricKind",
    "MetricRegistry",
    "MetricSpec",
    "ModelArtifact",
    "ModelStore",
    "Monitor",
    "MonitorConfig",
    "ORAN_METRICS",
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
    "RuleDetector",
    "Scaler",
    "ShadowReport",
    "ShadowRunner",
    "SpikeDetector",
    "StandardScaler",
    "Suite",
    "ValidationStats",
    "Validator",
    "WindowStore",
    "alerts_from_events",
    "evaluate",
    "export_state",
    "find_artifacts",
    "generate_fleet",
    "hookimpl",
    "import_state",
    "load_artifact",
    "load_labelled_file",
    "load_suite",
    "match_events",
    "pelt",
    "pelt_last_change",
    "read_records",
    "reset_state",
    "scaler_from_dict",
    "summarize_matches",
    "tune_weights",
    "write_artifact",
    "write_events",
    "write_report",
]
