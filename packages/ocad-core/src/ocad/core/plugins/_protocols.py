"""The contracts: :class:`Detector`, :class:`Scaler`, :class:`ModelArtifact`.

They are ``typing.Protocol`` classes: a third-party detector needs to inherit
nothing, only to have these attributes and methods. ``ocad.core.testing.check_detector``
checks the behaviour the types cannot express.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from .._view import DetectorOutput, DetectorView

__all__ = ["Detector", "ModelArtifact", "Scaler"]


@runtime_checkable
class Detector(Protocol):
    """Scores N endpoints at once from a :class:`DetectorView`.

    Attributes
    ----------
    name:
        Unique name; the key of its weight in the composite and of its config table.
    kind:
        The kind of evidence it gives the alert policy: ``"rule"``, ``"spike"``,
        ``"drift"``, ``"concurrency"``, ``"multivariate"`` or a plugin's own word.
        An alert opens only on at least two distinct kinds.
    metrics:
        The metrics it can use. An endpoint that reports none of them gets NaN.
    window:
        How many samples of history it needs (the Monitor's window is at least the
        largest of its detectors').

    ``score`` must be a pure function of the view and the detector's fitted
    parameters: no per-endpoint state (that lives in the WindowStore and the
    AlertPolicy), so a Monitor can be sharded by endpoint.
    """

    name: str
    kind: str
    metrics: tuple[str, ...]
    window: int

    def score(self, view: DetectorView) -> DetectorOutput: ...


@runtime_checkable
class Scaler(Protocol):
    """A feature scaler whose fitted parameters serialise to JSON (never pickle)."""

    def fit(self, x: np.ndarray) -> Scaler: ...

    def transform(self, x: np.ndarray) -> np.ndarray: ...

    def inverse_transform(self, x: np.ndarray) -> np.ndarray: ...

    def to_dict(self) -> dict[str, Any]: ...


@runtime_checkable
class ModelArtifact(Protocol):
    """A verified artifact directory: ``manifest.json`` plus model files (ONNX, JSON)."""

    path: Path
    manifest: Mapping[str, Any]

    def file(self, role: str) -> Path: ...
