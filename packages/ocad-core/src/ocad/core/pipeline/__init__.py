"""The runtime stages in data-flow order: validate → window → features → composite → alerts.

``_validate`` (Validator: raw records to a columnar :class:`Batch`), ``_window``
(WindowStore: per-endpoint ring buffers), ``_features`` (FeatureEngine: window
features), ``_composite`` (CompositeDetector: runs the detectors, combines their
scores), ``_alerts`` (AlertPolicy: hysteresis, open/update/close events) and
``_state`` (export and import of one endpoint's window and alert state).
:class:`ocad.core.Monitor` wires these together; embedding applications rarely
need this package directly.
"""

from __future__ import annotations

from ._alerts import Alert, AlertEvent, AlertPolicy, AlertPolicyConfig
from ._composite import CompositeDetector, CompositeOutput, DetectorHealth
from ._features import FeatureEngine
from ._state import export_state, import_state, reset_state
from ._validate import Batch, ValidationStats, Validator
from ._window import WindowStore

__all__ = [
    "Alert",
    "AlertEvent",
    "AlertPolicy",
    "AlertPolicyConfig",
    "Batch",
    "CompositeDetector",
    "CompositeOutput",
    "DetectorHealth",
    "FeatureEngine",
    "ValidationStats",
    "Validator",
    "WindowStore",
    "export_state",
    "import_state",
    "reset_state",
]
