"""The TCN forecaster as an ONNX graph that computes only the forecast it returns.

Why
---
The model (:class:`~ocad.train.TCNForecaster`) returns ``head(h[:, :, -1])``:
one time step of the last block. torch's exporter keeps the whole network, so the
graph computes all ``W`` output steps of every causal convolution and throws away
``W - 1`` of them: 390 k multiply-adds per forecast at the shipped size (window 32,
hidden 24, 4 levels, kernel 3), about half of them never used. The residual
detector runs three forecasters for every endpoint of every tick, so at 10 000
endpoints and more they were ~90 % of a tick (issue #12).

What the graph computes
-----------------------
Going backwards from the last step: block ``i`` (dilation ``d = 2**i``) needs its
*output* only at the positions the next block reads, ``T-1, T-1-2d, T-1-4d, ...``
(only ``T-1`` for the last block), its first convolution only at those positions
minus ``0 .. K-1`` times ``d``, and its input at those minus ``0 .. K-1`` times ``d``
again. So block ``i`` lives on the grid of stride ``d`` ending at the last step, and
its second convolution is evaluated at every other grid point: about 100 k
multiply-adds per forecast, the same weights, the same arithmetic per computed
value (the differences to the full graph are float32 rounding: a bias is added
inside the matrix product instead of after it).

How (what runs fast in onnxruntime on one core)
-----------------------------------------------
The graph is *time-major*: the window is transposed to ``(W, batch)`` and every
activation is a ``(1, channels, rows, batch)`` image, so that each causal
convolution is one 2-D ``Conv`` with a ``(K, 1)`` kernel over the whole batch (one
large matrix product inside onnxruntime) instead of ``Conv1d``'s one small product
per endpoint. On block ``i``'s grid the dilation is 1; the second convolution runs
with stride 2 and a top padding chosen so that its last output is the last step;
the residual is a strided ``Slice`` of the block input (through the 1x1 skip
convolution at level 0). The last block computes the first convolution at the
``K`` rows the second one reads and the second one at the last row only. Measured
against the alternatives (per-endpoint ``Conv`` on the sliced grid; ``Gather``
im2col + ``Gemm`` in endpoint-major layout) this layout was 1.3-2x faster per
forecast at the same FLOPs.

The normalisation and de-normalisation ``m + s * net((x - m) / s)`` are the same
ops as in the full graph. :func:`check_last_step` compares the graph with the full
graph (torch's export of the same model) and with the torch model itself.
"""

from __future__ import annotations

import io
import os
import re
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np

__all__ = ["LAST_STEP_RTOL", "check_last_step", "last_step_plan", "tcn_flops"]

# Largest |difference| to the full graph / the torch model, relative to the magnitude of the
# values involved (see relative_diff): float32 rounding is ~1e-7 of it.
LAST_STEP_RTOL = 1e-5


def last_step_plan(window: int, levels: int, kernel: int) -> list[dict[str, list[int]]]:
    """Per block, the absolute time positions of its input, first convolution and output that the last step needs.

    >>> [len(p["out"]) for p in last_step_plan(32, 4, 3)]
    [16, 8, 4, 1]
    >>> last_step_plan(32, 4, 3)[3]["h1"]
    [15, 23, 31]
    """
    t_last = int(window) - 1
    p_in = list(range(int(window)))
    plan = []
    for i in range(int(levels)):
        d = 2 ** i
        last = i == levels - 1
        p_out = [t_last] if last else [p for p in p_in if (t_last - p) % (2 * d) == 0]
        p_h1 = sorted({p - k * d for p in p_out for k in range(kernel) if p - k * d >= 0})
        need = {q - k * d for q in p_h1 for k in range(kernel) if q - k * d >= 0} | set(p_out)
        if not need <= set(p_in):  # pragma: no cover - a property of the dilation schedule
            raise AssertionError(f"level {i}: positions {sorted(need - set(p_in))} not computed")
        plan.append({"in": p_in, "h1": p_h1, "out": p_out})
        p_in = p_out
    return plan


def tcn_flops(window: int, hidden: int, levels: int, kernel: int, *, last_step: bool) -> int:
    """Multiply-adds of the convolutions and the head per forecast (normalisation not counted).

    >>> tcn_flops(32, 24, 4, 3, last_step=False), tcn_flops(32, 24, 4, 3, last_step=True)
    (390168, 99480)
    """
    k, c = int(kernel), int(hidden)
    if not last_step:
        total = 0
        for i in range(levels):
            cin = 1 if i == 0 else c
            total += window * (cin * c * k + c * c * k + (cin * c if cin != c else 0))
        return total + c
    total = 0
    for i, p in enumerate(last_step_plan(window, levels, kernel)):
        cin = 1 if i == 0 else c
        total += len(p["h1"]) * cin * c * k + len(p["out"]) * (c * c * k + (cin * c if cin != c else 0))
    return total + c


def _state(model: Any) -> dict[str, np.ndarray]:
    return {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}


def tcn_last_step_onnx(model: Any, window: int, *, input_name: str = "x", output_name: str = "y",
                       opset: int | None = None) -> bytes:
    """ONNX bytes (not finalized: no IR pin, no metadata) of the last-step graph of ``model``.

    ``model`` is a :class:`~ocad.train.TCNForecaster` (its ``state_dict`` and block
    layout are read); input ``(batch, window)`` float32, output ``(batch, 1)``.
    """
    import onnx
    from onnx import TensorProto
    from onnx import helper as oh
    from onnx import numpy_helper as nh

    from ._export import ONNX_OPSET

    st = _state(model)
    levels = len(model.blocks)
    kernel = int(model.blocks[0].c1.conv.kernel_size[0])
    nodes: list[Any] = []
    inits: list[Any] = []

    def const(name: str, arr: Any) -> str:
        inits.append(nh.from_array(np.asarray(arr), name))
        return name

    def node(op: str, ins: list[str], out: str, **kw: Any) -> str:
        nodes.append(oh.make_node(op, ins, [out], name=out, **kw))
        return out

    def i64(name: str, v: Any) -> str:
        return const(name, np.asarray(v, np.int64))

    def rows(h: str, start: int, stop: int, step: int, name: str) -> str:  # a slice of the time axis
        return node("Slice", [h, i64(f"{name}_start", [start]), i64(f"{name}_stop", [stop]), i64(f"{name}_axis", [2]),
                              i64(f"{name}_step", [step])], name)

    def conv(h: str, i: int, which: str, pad_top: int, stride: int = 1) -> str:
        w = st[f"blocks.{i}.{which}.weight"]  # (out, in, K) for c1 / c2 (their .conv), (out, in, 1) for skip
        b = st[f"blocks.{i}.{which}.bias"]
        tag = f"{which.split('.')[0]}_{i}"
        return node("Conv", [h, const(f"{tag}_w", w[..., None]), const(f"{tag}_b", b)], tag,
                    kernel_shape=[int(w.shape[2]), 1], pads=[pad_top, 0, 0, 0], strides=[stride, 1])

    # Time-major: x (B, W) -> (W, B); m = mean(x); s = max(std(x), 1e-3 |m| + 1e-6); xn = (x - m) / s
    xt = node("Transpose", [input_name], "x_time_major", perm=[1, 0])
    m = node("ReduceMean", [xt], "mean", axes=[0], keepdims=1)
    d = node("Sub", [xt, m], "centred")
    var = node("ReduceMean", [node("Mul", [d, d], "centred_sq")], "var", axes=[0], keepdims=1)
    floor = node("Add", [node("Mul", [node("Abs", [m], "abs_mean"), const("c_1e-3", np.float32(1e-3))],
                              "abs_mean_1e-3"), const("c_1e-6", np.float32(1e-6))], "std_floor")
    s = node("Max", [node("Sqrt", [var], "std"), floor], "scale")
    h = node("Unsqueeze", [node("Div", [d, s], "xn"), i64("axes_nc", [0, 1])], "block_0_in")  # (1, 1, W, B)
    length = int(window)  # rows of h: the grid of stride 2**i ending at the last step
    for i in range(levels):
        c1, c2 = "c1.conv", "c2.conv"
        if i < levels - 1:
            h1 = node("Relu", [conv(h, i, c1, kernel - 1)], f"h1_{i}")
            par = (length - 1) % 2  # the second conv's outputs: every other row, the last one included
            pad = kernel - 1 - par
            if pad < 0:  # kernel 1
                h1, pad = rows(h1, -pad, length, 1, f"h1_{i}_tail"), 0
            h2 = conv(h1, i, c2, pad, stride=2)
            res = rows(h, par, length, 2, f"res_{i}")
            length = (length - 1 - par) // 2 + 1
        else:  # the last step only: the first conv at the K rows the second one reads
            start, pad = max(0, length - 2 * kernel + 1), max(0, 2 * kernel - 1 - length)
            h_in = rows(h, start, length, 1, f"h_{i}_tail") if start else h
            h1 = node("Relu", [conv(h_in, i, c1, pad)], f"h1_{i}")
            if length < kernel:  # rows before the window are the second conv's zero padding
                mask = np.zeros((1, 1, kernel, 1), np.float32)
                mask[..., kernel - length:, :] = 1.0
                h1 = node("Mul", [h1, const(f"h1_{i}_mask", mask)], f"h1_{i}_masked")
            h2 = conv(h1, i, c2, 0)
            res = rows(h, length - 1, length, 1, f"res_{i}")
            length = 1
        if f"blocks.{i}.skip.weight" in st:
            res = conv(res, i, "skip", 0)
        h = node("Relu", [node("Add", [h2, res], f"sum_{i}")], f"block_{i + 1}_in")
    hv = node("Squeeze", [h, i64("axes_02", [0, 2])], "last_step")  # (C, B)
    yn = node("Gemm", [const("head_w", st["head.weight"]), hv, const("head_b", st["head.bias"].reshape(1, 1))],
              "head")  # (1, B)
    y = node("Add", [m, node("Mul", [s, yn], "scaled")], "y_time_major")
    node("Transpose", [y], output_name, perm=[1, 0])
    graph = oh.make_graph(nodes, "tcn_last_step",
                          [oh.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", int(window)])],
                          [oh.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])], inits)
    mdl = oh.make_model(graph, opset_imports=[oh.make_opsetid("", int(opset or ONNX_OPSET))],
                        producer_name="ocad-train")
    return onnx.shape_inference.infer_shapes(mdl, strict_mode=True).SerializeToString()


_LAST_STEP_PARAM = re.compile(r"(c1|c2|skip)_(\d+)_(w|b)")


def last_step_state(initializers: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The inverse of :func:`tcn_last_step_onnx`'s weight naming: torch ``state_dict`` of its initializers.

    ``c1_3_w`` (``(out, in, K, 1)``) -> ``blocks.3.c1.conv.weight`` (``(out, in, K)``),
    ``skip_0_b`` -> ``blocks.0.skip.bias``, ``head_w`` / ``head_b`` -> ``head.weight`` /
    ``head.bias``; the graph's other constants (slice bounds, masks, ...) are dropped.
    """
    st: dict[str, np.ndarray] = {}
    for name, arr in initializers.items():
        if name == "head_w":
            st["head.weight"] = np.asarray(arr)
        elif name == "head_b":
            st["head.bias"] = np.asarray(arr).reshape(-1)
        elif (mt := _LAST_STEP_PARAM.fullmatch(name)) is not None:
            which, i, wb = mt.groups()
            layer = "skip" if which == "skip" else f"{which}.conv"
            a = np.asarray(arr)
            st[f"blocks.{i}.{layer}.{'weight' if wb == 'w' else 'bias'}"] = a[..., 0] if wb == "w" else a
    return st


def full_graph_onnx(model: Any, window: int, *, input_name: str = "x", output_name: str = "y") -> bytes:
    """torch's export of ``model`` (every output step computed), not finalized."""
    import torch

    from ._export import ONNX_OPSET

    model.eval()
    buf = io.BytesIO()
    dummy = torch.zeros(2, int(window), dtype=torch.float32) + torch.linspace(0, 1, int(window))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (dummy,), buf, dynamo=False, opset_version=ONNX_OPSET, input_names=[input_name],
            output_names=[output_name], dynamic_axes={input_name: {0: "batch"}, output_name: {0: "batch"}},
            do_constant_folding=True)
    return buf.getvalue()


def relative_diff(got: np.ndarray, ref: np.ndarray, x: np.ndarray) -> np.ndarray:
    """``|got - ref|`` per row over the magnitude of the values involved: ``max(|ref|, max|x|, 1e-6)``.

    The forecast is ``m + s * net(...)`` in metric units, so float32 rounding is
    relative to the window's magnitude (an eCPRI delay of 300 µs rounds at 3e-5 µs);
    NaN on one side only counts as infinitely different.
    """
    got = np.asarray(got, np.float64).reshape(len(x), -1)
    ref = np.asarray(ref, np.float64).reshape(len(x), -1)
    scale = np.maximum(np.maximum(np.abs(ref).max(axis=1), np.abs(np.asarray(x, np.float64)).max(axis=1)), 1e-6)
    d = np.abs(got - ref).max(axis=1)
    both = np.isnan(got).all(axis=1) & np.isnan(ref).all(axis=1)
    return np.where(both, 0.0, np.where(np.isnan(d), np.inf, d / scale))


def check_last_step(model: Any, onnx_path: str | os.PathLike[str] | bytes, inputs: np.ndarray, *,
                    rtol: float = LAST_STEP_RTOL, input_name: str = "x", batch_size: int = 4096) -> dict[str, Any]:
    """Compare a last-step graph with the full graph and the torch model on ``inputs``.

    Returns ``{"rtol", "n", "max_rel_diff_full_graph", "max_abs_diff_full_graph",
    "max_rel_diff_torch", "max_abs_diff_torch"}`` (relative: :func:`relative_diff`);
    raises :class:`~ocad.train.ParityError` if either relative difference exceeds ``rtol``.
    """
    from ._export import ParityError, ort_session
    from ._tcn import predict

    x = np.ascontiguousarray(np.asarray(inputs), dtype=np.float32)
    window = int(x.shape[1])
    src = onnx_path if isinstance(onnx_path, bytes) else str(onnx_path)
    last = ort_session(src)
    full = ort_session(full_graph_onnx(model, window, input_name=input_name,
                                       output_name=last.get_outputs()[0].name))
    out: dict[str, Any] = {"rtol": float(rtol), "n": int(x.shape[0])}
    worst: dict[str, tuple[float, float, int]] = {"full_graph": (0.0, 0.0, -1), "torch": (0.0, 0.0, -1)}
    for i in range(0, x.shape[0], batch_size):
        b = x[i:i + batch_size]
        got = last.run(None, {input_name: b})[0]
        for key, ref in (("full_graph", full.run(None, {input_name: b})[0]), ("torch", predict(model, b))):
            rel = relative_diff(got, ref, b)
            j = int(np.argmax(rel))
            ab = float(np.nanmax(np.abs(np.asarray(got, np.float64).ravel() - np.asarray(ref, np.float64).ravel()),
                                 initial=0.0))
            r0, a0, _ = worst[key]
            worst[key] = (max(r0, float(rel[j])), max(a0, ab), i + j if rel[j] >= r0 else worst[key][2])
    for key, (rel, ab, at) in worst.items():
        out[f"max_rel_diff_{key}"], out[f"max_abs_diff_{key}"] = rel, ab
        if not rel <= rtol:
            raise ParityError(f"{src if isinstance(src, str) else '<bytes>'} (last step vs {key}, relative)",
                              rel, rtol, int(x.shape[0]), at)
    return out
