"""Model artifacts: a verified directory with a manifest, a versioned store, JSON scalers.

``_artifact`` (write, verify and load one artifact; no code from an artifact is
ever run), ``_store`` (ModelStore: versions and the active pointer) and
``_scalers`` (RobustScaler, StandardScaler; the :class:`ocad.core.plugins.Scaler`
protocol).
"""

from __future__ import annotations

from ._artifact import LoadedArtifact, find_artifacts, load_artifact, write_artifact
from ._scalers import RobustScaler, StandardScaler, scaler_from_dict
from ._store import ModelStore

__all__ = [
    "LoadedArtifact",
    "ModelStore",
    "RobustScaler",
    "StandardScaler",
    "find_artifacts",
    "load_artifact",
    "scaler_from_dict",
    "write_artifact",
]
