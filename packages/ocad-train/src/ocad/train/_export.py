"""ONNX export and parity checks.

Every exported model is checked against the framework model it came from on
held-out inputs before it may be written as an artifact: :func:`check_parity`
runs the ONNX file in onnxruntime (CPUExecutionProvider, default graph
optimisations, i.e. what the runtime detectors run) and raises
:class:`ParityError` if any output differs by more than its tolerance.

Tolerance rule: ``|onnx - reference| <= tol * max(1, scale_i)`` for every input ``i``,
with ``scale_i`` the typical magnitude of that input's values when the output is in
the inputs' units (the forecaster: ``mean |x_i|`` of the window, see
:func:`window_scale`), else 1 (an absolute ``tol``; the Isolation Forest's score).
float32 keeps about 7 significant digits, so an absolute tolerance in metric units
fails a correct export of a series around 10^4 (a difference of 0.01 is 1e-6 of the
value) while one around 10^-3 would pass nearly anything; relative to the window's
scale the same ``tol`` (default 1e-4) means the same thing at every scale, and at
scale <= 1 it stays the absolute tolerance it always was.

Files are written with opset :data:`ONNX_OPSET` and IR version
:data:`ONNX_IR_VERSION`, both set explicitly rather than taken from whatever the
installed torch / onnx default to: IR 8 is the lowest IR version that carries
opset 17, so the file loads in any onnxruntime that implements opset 17 (the
runtime package requires onnxruntime >= 1.17; 1.31 reads IR <= 13), and an
artifact exported with a newer torch still loads in an older runtime.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ocad.core import OcadError

__all__ = [
    "ONNX_IR_VERSION",
    "ONNX_OPSET",
    "ParityError",
    "check_parity",
    "window_scale",
    "export_tcn_onnx",
    "finalize_onnx",
    "onnx_initializer_digest",
    "ort_session",
]

ONNX_OPSET = 17
ONNX_IR_VERSION = 8


class ParityError(OcadError):
    """The ONNX model's outputs differ from the framework model's by more than the tolerance."""

    def __init__(self, onnx_path: str, max_abs_diff: float, tol: float, n: int, worst_index: int,
                 allowed: float | None = None) -> None:
        self.max_abs_diff = max_abs_diff
        self.tol = tol
        self.allowed = tol if allowed is None else allowed
        self.n = n
        self.worst_index = worst_index
        rule = f"tol {tol:g}" if allowed is None or allowed == tol else \
            f"its allowed {self.allowed:.3g} (= tol {tol:g} x max(1, input scale))"
        super().__init__(
            f"ONNX parity check FAILED for {onnx_path}: |onnx - reference| = {max_abs_diff:.3g} > "
            f"{rule} over {n} inputs (worst input #{worst_index}); the exported model must not be "
            "used. Check unsupported ops / opset, or dtype (inputs must be float32).")


def window_scale(x: np.ndarray) -> np.ndarray:
    """``(N,)`` typical magnitude of each input row: ``mean |x_i|`` over its finite values (0 if none)."""
    a = np.abs(np.asarray(x, np.float64).reshape(len(x), -1))
    ok = np.isfinite(a)
    n = ok.sum(axis=1)
    return np.where(n > 0, np.where(ok, a, 0.0).sum(axis=1) / np.maximum(n, 1), 0.0)


def ort_session(onnx_path: str | os.PathLike[str] | bytes, threads: int = 2) -> Any:
    """An onnxruntime CPU session (``threads`` intra-op threads, default optimisations)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = int(threads)
    so.inter_op_num_threads = 1
    so.log_severity_level = 3
    src = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    return ort.InferenceSession(src, sess_options=so, providers=["CPUExecutionProvider"])


def check_parity(reference_fn: Callable[[np.ndarray], Any], onnx_path: str | os.PathLike[str],
                 inputs: np.ndarray, tol: float = 1e-4, input_name: str | None = None, *,
                 output_index: int = 0, batch_size: int = 4096, threads: int = 2,
                 scale: np.ndarray | float | None = None) -> dict[str, Any]:
    """Compare an ONNX model with its reference implementation on ``inputs``.

    Parameters
    ----------
    reference_fn:
        Maps a float32 batch ``(b, ...)`` to the reference outputs (anything
        ``np.asarray`` takes, e.g. a torch model's numpy output or
        ``IsolationForest.score_samples``); flattened per batch before comparing.
    onnx_path:
        The ONNX file.
    inputs:
        Held-out inputs ``(N, ...)``, cast to float32, fed in batches of ``batch_size``.
    tol:
        Largest allowed ``|onnx - reference|`` per unit of scale (see ``scale``).
    scale:
        Per-input (``(N,)``) or common magnitude of the values the outputs are
        measured in (:func:`window_scale` for a forecaster); input ``i`` may differ
        by ``tol * max(1, scale_i)``. ``None``: an absolute ``tol``.
    input_name:
        The graph input to feed; default: the model's only / first input.
    output_index:
        Which graph output to compare (default the first).

    Returns
    -------
    dict
        ``{"max_abs_diff": float, "n": int, "tol": float}`` — put it in the manifest's ``parity``;
        with ``scale`` also ``rule``, ``scale_median`` and ``max_diff_over_allowed`` (<= 1).

    Raises
    ------
    ParityError
        If any output differs by more than ``tol``, or NaN appears on one side only.

    Example::

        parity = check_parity(lambda b: forest.score_samples(b), "iforest.onnx", x_test)
    """
    x = np.ascontiguousarray(np.asarray(inputs), dtype=np.float32)
    if x.shape[0] == 0:
        raise ParityError(str(onnx_path), float("nan"), tol, 0, -1)
    if scale is None:
        allowed = np.full(x.shape[0], float(tol))
    else:
        sc = np.broadcast_to(np.asarray(scale, np.float64), (x.shape[0],))
        allowed = float(tol) * np.maximum(1.0, np.where(np.isfinite(sc), sc, 1.0))
    sess = ort_session(onnx_path, threads=threads)
    name = input_name or sess.get_inputs()[0].name
    out_name = sess.get_outputs()[output_index].name
    worst, worst_i, worst_ratio = 0.0, -1, 0.0
    for i in range(0, x.shape[0], batch_size):
        b = x[i:i + batch_size]
        got = np.asarray(sess.run([out_name], {name: b})[0], dtype=np.float64).reshape(b.shape[0], -1)
        ref = np.asarray(reference_fn(b), dtype=np.float64).reshape(b.shape[0], -1)
        if got.shape != ref.shape:
            raise OcadError(f"parity check for {onnx_path}: ONNX output shape {got.shape} != reference "
                            f"{ref.shape}")
        d = np.abs(got - ref)
        both_nan = np.isnan(got) & np.isnan(ref)
        d = np.where(both_nan, 0.0, np.where(np.isnan(d), np.inf, d)).max(axis=1)
        ratio = d / allowed[i:i + b.shape[0]]
        j = int(np.argmax(ratio))
        if ratio[j] > worst_ratio or worst_i < 0:
            worst_ratio, worst_i = float(ratio[j]), i + j
        worst = max(worst, float(d.max()))
    if not worst_ratio <= 1.0:
        raise ParityError(str(onnx_path), float(worst_ratio * allowed[worst_i]), tol, int(x.shape[0]), worst_i,
                          allowed=float(allowed[worst_i]))
    out = {"max_abs_diff": worst, "n": int(x.shape[0]), "tol": float(tol)}
    if scale is not None:
        out.update(rule="|onnx - reference| <= tol * max(1, scale) per input", max_diff_over_allowed=worst_ratio,
                   scale_median=float(np.median(np.broadcast_to(np.asarray(scale, np.float64), (x.shape[0],)))))
    return out


def finalize_onnx(model_bytes: bytes, *, ir_version: int = ONNX_IR_VERSION, opset: int = ONNX_OPSET,
                  doc: str = "", metadata: dict[str, str] | None = None) -> bytes:
    """Pin IR version and default-domain opset, add metadata, run the ONNX checker; return bytes.

    Use it for any exporter (torch, skl2onnx, hand-built graphs) so that every
    artifact has the same, explicitly chosen IR / opset.
    """
    import onnx

    m = onnx.load_from_string(model_bytes)
    for imp in m.opset_import:
        if imp.domain in ("", "ai.onnx") and imp.version != opset:
            raise OcadError(f"exported graph uses opset {imp.version}, expected {opset}")
    m.ir_version = int(ir_version)
    if doc:
        m.doc_string = doc
    for k, v in sorted((metadata or {}).items()):
        p = m.metadata_props.add()
        p.key, p.value = str(k), str(v)
    onnx.checker.check_model(m, full_check=True)
    return m.SerializeToString()


def export_tcn_onnx(model: Any, window: int, path: str | os.PathLike[str], *, input_name: str = "x",
                    output_name: str = "y", doc: str = "", metadata: dict[str, str] | None = None,
                    graph: str = "last_step") -> Path:
    """Export a :class:`~ocad.train.TCNForecaster` to ONNX (dynamic batch axis) and check the graph.

    ``graph="last_step"`` (default, what the artifacts ship): the graph computes only
    the forecast step it returns, from the same weights (:mod:`ocad.train._last_step`,
    a quarter of the arithmetic). ``graph="full"``: torch's TorchScript-based export
    (``dynamo=False``; the dynamo exporter needs ``onnxscript`` and produces the same
    graph), every output step computed.
    """
    from ._last_step import full_graph_onnx, tcn_last_step_onnx

    if graph not in ("last_step", "full"):
        raise OcadError(f"export_tcn_onnx: graph = {graph!r}; use 'last_step' or 'full'")
    model.eval()
    make = tcn_last_step_onnx if graph == "last_step" else full_graph_onnx
    data = finalize_onnx(make(model, int(window), input_name=input_name, output_name=output_name),
                         doc=doc, metadata=metadata)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def onnx_initializer_digest(path: str | os.PathLike[str] | bytes) -> str:
    """sha256 over the ONNX graph's initializers (name, dtype, dims, raw data), sorted by name.

    Equal digests mean equal trained weights, independent of exporter metadata.
    """
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(path) if isinstance(path, bytes) else onnx.load(str(path))
    h = hashlib.sha256()
    for init in sorted(m.graph.initializer, key=lambda t: t.name):
        arr = numpy_helper.to_array(init)
        h.update(init.name.encode())
        h.update(str(arr.dtype).encode())
        h.update(str(arr.shape).encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()
