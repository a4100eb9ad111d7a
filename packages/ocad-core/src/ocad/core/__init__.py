"""OCAD core: probe samples → validation → windows → features → detectors → composite → alerts.

The one import an embedding application needs::

    from ocad.core import Monitor

    mon = Monitor.from_defaults()
    for event in mon.observe(records):       # records: {"endpoint_id", "ts", <metric>: value}
        print(event.event, event.alert.endpoint_id, event.alert.severity, event.alert.evidence)

This module is the narrow facade for an embedding application: the Monitor and
its config, alerts and their events, evidence, endpoint labels, errors, state
export/import and the metric spec. Everything else lives in a subpackage by stage (see
docs/architecture.md):

* :mod:`ocad.core.pipeline`: Validator, WindowStore, FeatureEngine,
  CompositeDetector, AlertPolicy, state export/import;
* :mod:`ocad.core.detectors`: the built-in detectors and calibration;
* :mod:`ocad.core.plugins`: what a plugin author needs (hooks, protocols, registry);
* :mod:`ocad.core.artifacts`: model artifacts, the model store, scalers;
* :mod:`ocad.core.tooling`: evaluation, tuning, report, synthetic fleet, shadow
  runs (never loaded by ``import ocad.core``);
* :mod:`ocad.core.spark` (extra ``spark``): a runner that shards endpoints on Spark.

Names this module exported before the layout change still resolve for one release,
with a :class:`DeprecationWarning` that names their new home.
"""

from __future__ import annotations

import importlib
import warnings
from importlib import metadata

from ._config import MonitorConfig
from ._errors import (
    OcadArtifactError,
    OcadConfigError,
    OcadDependencyError,
    OcadError,
    OcadPluginError,
    OcadValidationError,
)
from ._labels import EndpointLabels, group_alerts, load_labels
from ._metrics import MetricKind, MetricSpec
from ._monitor import Monitor
from ._view import Evidence
from .pipeline._alerts import Alert, AlertEvent, AlertPolicyConfig
from .pipeline._state import export_state, import_state, reset_state

try:
    __version__ = metadata.version("ocad-core")
except metadata.PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertPolicyConfig",
    "EndpointLabels",
    "Evidence",
    "MetricKind",
    "MetricSpec",
    "Monitor",
    "MonitorConfig",
    "OcadArtifactError",
    "OcadConfigError",
    "OcadDependencyError",
    "OcadError",
    "OcadPluginError",
    "OcadValidationError",
    "export_state",
    "group_alerts",
    "import_state",
    "load_labels",
    "reset_state",
]

#: Names this module exported before the layout change, and their new home. They
#: resolve through :func:`__getattr__` with a DeprecationWarning for one release.
_MOVED: dict[str, str] = {
    **dict.fromkeys(
        ("AlertPolicy", "Batch", "CompositeDetector", "CompositeOutput", "DetectorHealth", "FeatureEngine",
         "ValidationStats", "Validator", "WindowStore"),
        "ocad.core.pipeline",
    ),
    **dict.fromkeys(
        ("ChangepointDetector", "ConcurrencyDetector", "ContinuityDetector", "DEFAULT_THRESHOLDS", "RuleDetector",
         "SpikeDetector", "pelt", "pelt_last_change"),
        "ocad.core.detectors",
    ),
    **dict.fromkeys(
        ("CalibratedDetector", "Calibration", "Detector", "DetectorContext", "DetectorOutput", "DetectorView",
         "FeatureFrame", "MetricRegistry", "ModelArtifact", "ORAN_METRICS", "PluginFailure", "PluginInfo",
         "PluginRegistry", "RawScores", "Scaler", "hookimpl"),
        "ocad.core.plugins",
    ),
    **dict.fromkeys(
        ("LoadedArtifact", "ModelStore", "RobustScaler", "StandardScaler", "find_artifacts", "load_artifact",
         "scaler_from_dict", "write_artifact"),
        "ocad.core.artifacts",
    ),
    **dict.fromkeys(
        ("FAULT_TYPES", "EndpointInfo", "Evaluation", "EventMatch", "FaultEvent", "Fleet", "ShadowReport",
         "ShadowRunner", "Suite", "alerts_from_events", "evaluate", "generate_fleet", "load_labelled_file",
         "load_suite", "match_events", "read_records", "summarize_matches", "tune_weights", "write_events",
         "write_report"),
        "ocad.core.tooling",
    ),
}


def __getattr__(name: str) -> object:
    home = _MOVED.get(name)
    if home is None:
        raise AttributeError(f"module 'ocad.core' has no attribute {name!r}")
    warnings.warn(
        f"ocad.core.{name} is deprecated and goes away in the next release; "
        f"use `from {home} import {name}`",
        DeprecationWarning,
        stacklevel=2,
    )
    return getattr(importlib.import_module(home), name)
