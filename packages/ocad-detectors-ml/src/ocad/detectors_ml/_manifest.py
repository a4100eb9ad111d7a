"""Reading the fields a detector needs from an artifact manifest, with errors that name the field.

``load_artifact`` (ocad-core) has verified hashes, paths and the required
fields; these helpers check the kind-specific fields (``inputs``, ``scaler``,
``calibration``) and raise :class:`OcadArtifactError` naming the artifact and
the field, so that a malformed manifest fails when the detector is built, not
on the first tick.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from ocad.core import OcadArtifactError
from ocad.core.artifacts import LoadedArtifact
from ocad.core.plugins import Calibration

__all__ = ["FillPolicy", "get", "get_calibration", "get_float", "get_int", "get_str", "label"]

_MISSING = object()


def label(art: LoadedArtifact) -> str:
    return f"{art.name}@{art.version} ({art.path})"


def get(art: LoadedArtifact, dotted: str, default: Any = _MISSING) -> Any:
    """``manifest["a"]["b"]`` for ``"a.b"``; a missing field raises unless ``default`` is given."""
    cur: Any = art.manifest
    for part in dotted.split("."):
        if not isinstance(cur, Mapping) or part not in cur:
            if default is not _MISSING:
                return default
            raise OcadArtifactError(label(art), f"manifest field {dotted!r} is missing")
        cur = cur[part]
    return cur


def get_float(art: LoadedArtifact, dotted: str, default: Any = _MISSING, *, positive: bool = False) -> float:
    v = get(art, dotted, default)
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or (positive and v <= 0):
        need = "a finite number > 0" if positive else "a finite number"
        raise OcadArtifactError(label(art), f"manifest field {dotted!r} = {v!r} must be {need}")
    return float(v)


#: The longest model input window accepted from a manifest: the Monitor's window store holds
#: ``rows × metrics × window`` float32, so a manifest must not be able to size it (a memory bomb).
MAX_WINDOW = 10_000


def get_int(art: LoadedArtifact, dotted: str, default: Any = _MISSING, *, minimum: int = 1,
            maximum: int | None = None) -> int:
    v = get(art, dotted, default)
    if isinstance(v, bool) or not isinstance(v, int) or v < minimum or (maximum is not None and v > maximum):
        need = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise OcadArtifactError(label(art), f"manifest field {dotted!r} = {v!r:.80} must be an integer {need}")
    return v


def get_str(art: LoadedArtifact, dotted: str, default: Any = _MISSING) -> str:
    v = get(art, dotted, default)
    if not isinstance(v, str) or not v:
        raise OcadArtifactError(label(art), f"manifest field {dotted!r} = {v!r} must be a non-empty string")
    return v


def get_calibration(art: LoadedArtifact, dotted: str = "calibration") -> Calibration:
    v = get(art, dotted)
    try:
        return Calibration.from_dict(v)
    except (KeyError, TypeError, ValueError) as exc:
        raise OcadArtifactError(label(art), f"manifest field {dotted!r} is not a calibration table: {exc}") from exc


class FillPolicy:
    """How NaN inside a model's input window is filled, as recorded in ``inputs.fill_policy``.

    ``method``: ``"ffill"`` (forward fill from the last observed value of the same
    window), ``"ffill_bfill"`` (then backward fill the leading gap) or ``"none"``;
    ``limit``: at most this many consecutive samples are filled (``None``: no limit);
    ``remaining_nan``: only ``"skip"`` (a window still holding NaN gets no score) is
    understood. Anything else is an artifact error: running a model on inputs
    prepared differently from its training data would give confident nonsense.
    """

    METHODS = ("ffill", "ffill_bfill", "none")

    def __init__(self, method: str = "ffill", limit: int | None = None) -> None:
        self.method = method
        self.limit = limit

    @classmethod
    def from_manifest(cls, art: LoadedArtifact, dotted: str = "inputs.fill_policy") -> FillPolicy:
        raw = get(art, dotted, None)
        if raw is None:
            return cls("none")
        if isinstance(raw, str):
            raw = {"method": raw}
        if not isinstance(raw, Mapping):
            raise OcadArtifactError(label(art), f"manifest field {dotted!r} must be an object or a string")
        method = str(raw.get("method", "ffill")).lower()
        if method in ("ffill+bfill", "ffill_then_bfill"):
            method = "ffill_bfill"
        if method not in cls.METHODS:
            raise OcadArtifactError(label(art), f"{dotted}.method = {method!r} is not understood; "
                                    f"this ocad-detectors-ml reads {list(cls.METHODS)}")
        remaining = str(raw.get("remaining_nan", "skip"))
        if remaining != "skip":
            raise OcadArtifactError(label(art), f"{dotted}.remaining_nan = {remaining!r} is not understood "
                                    "(only 'skip')")
        limit = raw.get("limit")
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 0):
            raise OcadArtifactError(label(art), f"{dotted}.limit = {limit!r} must be an integer >= 0 or null")
        return cls(method, limit)

    def apply(self, x: np.ndarray) -> np.ndarray:
        """Filled copy of ``x`` (B, W); NaN remains where the policy does not fill."""
        out = np.array(x, copy=True)
        if self.method == "none" or x.shape[0] == 0 or x.shape[1] == 0:
            return out
        gaps = np.flatnonzero(~np.isfinite(x).all(axis=1))
        if gaps.size == 0:
            return out  # nothing to fill (the usual window): skip the fill's ~10 array ops
        part = _ffill(x[gaps], self.limit)  # only the rows with a gap
        if self.method == "ffill_bfill":
            part = _ffill(part[:, ::-1], self.limit)[:, ::-1]
        out[gaps] = part
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"method": self.method, "limit": self.limit, "remaining_nan": "skip"}


def _ffill(v: np.ndarray, limit: int | None) -> np.ndarray:
    """Forward fill along axis 1 within each row, at most ``limit`` consecutive samples."""
    finite = np.isfinite(v)
    idx = np.arange(v.shape[1])
    last = np.maximum.accumulate(np.where(finite, idx, -1), axis=1)
    filled = np.take_along_axis(v, np.maximum(last, 0), axis=1)
    ok = finite | (last >= 0)
    if limit is not None:
        ok &= finite | (idx - last <= limit)
    return np.where(ok, filled, np.nan).astype(v.dtype, copy=False)


def graph_io(art: LoadedArtifact, sess: Any, where: str, width: int, rows: str) -> tuple[str, str]:
    """The manifest's input and output names, checked against the loaded ONNX graph.

    The graph must take one float tensor of shape ``(rows, width)`` under the manifest's
    ``inputs.input_name`` and produce ``inputs.output_name`` (defaults: the graph's first
    input and output). Raises :class:`OcadArtifactError` naming what does not match.
    """
    ins, outs = sess.get_inputs(), sess.get_outputs()
    in_name = get_str(art, "inputs.input_name", ins[0].name if ins else "")
    out_name = get_str(art, "inputs.output_name", outs[0].name if outs else "")
    inp = {i.name: i for i in ins}.get(in_name)
    if inp is None or out_name not in {o.name for o in outs}:
        raise OcadArtifactError(where, f"the ONNX graph has inputs {[i.name for i in ins]} and outputs "
                                f"{[o.name for o in outs]}; the manifest names {in_name!r} -> {out_name!r}")
    shape = list(inp.shape)
    if len(shape) != 2 or (isinstance(shape[1], int) and shape[1] != width):
        raise OcadArtifactError(where, f"graph input {in_name!r} has shape {shape}; expected ({rows}, {width})")
    if inp.type != "tensor(float)":
        raise OcadArtifactError(where, f"graph input {in_name!r} is {inp.type}; expected tensor(float)")
    return in_name, out_name
