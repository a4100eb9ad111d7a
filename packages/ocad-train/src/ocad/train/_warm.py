"""Warm start: a forecaster's trained weights read back from a published (verified) ONNX artifact.

``ocad train --init-from active`` / ``ocad retrain --init-from active`` start each
metric's training from the weights of that metric's active version instead of a
random initialisation. The weights come from the ONNX graph's initializers
(the exporter keeps PyTorch's parameter names), so nothing but ONNX is read
from the store; the architecture (window, hidden channels, levels, kernel size)
is the active version's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ocad.core import OcadConfigError
from ocad.core.artifacts import LoadedArtifact

__all__ = ["architecture", "onnx_state"]

ARCH_KEYS = ("window", "hidden", "levels", "kernel_size")


def onnx_state(art: LoadedArtifact) -> dict[str, np.ndarray]:
    """Parameter name → array of the forecaster in ``art`` (``model.onnx``'s initializers)."""
    import onnx
    from onnx import numpy_helper

    if art.manifest.get("kind") != "forecaster":
        raise OcadConfigError(f"warm start: {art.name}@{art.version} is a {art.manifest.get('kind')!r}, "
                              "not a forecaster")
    m = onnx.load(str(art.file("model")))
    inits = {t.name: numpy_helper.to_array(t).copy() for t in m.graph.initializer}
    if m.graph.name == "tcn_last_step":  # the shipped export names its weights c1_0_w, head_w, ...
        from ._last_step import last_step_state

        return last_step_state(inits)
    return inits


def architecture(art: LoadedArtifact) -> dict[str, Any]:
    """The forecaster config keys that fix the weights' shapes, from the manifest."""
    h = art.manifest.get("hyperparameters") or {}
    missing = [k for k in ARCH_KEYS if k not in h]
    if missing:
        raise OcadConfigError(f"warm start: {art.name}@{art.version}'s manifest has no hyperparameters {missing}")
    return {k: int(h[k]) for k in ARCH_KEYS}
