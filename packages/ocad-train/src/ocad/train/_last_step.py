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
Each convolution is one ``Gemm`` over all (endpoint, position) rows at once, with
the ReLU fused, instead of ``Conv``'s one small matrix product per endpoint:

* activations are channels-last ``(batch, rows, C + 1)``. Row 0 of every endpoint is
  all zeros and stands for the causal zero padding (positions before the window);
  the extra channel is 1 on real rows and 0 on row 0, and carries the bias through
  the product (the padding row stays exactly zero after ``ReLU``);
* a convolution's input matrix (``im2col``) is one ``Gather`` of the K tap rows per
  output row; the level-0 taps (one input channel) are one ``MatMul`` of the
  padded window with a 0/1 selection matrix;
* the residual connection enters as ``Gemm``'s ``C`` input (the level-0 1x1 skip
  convolution: a row selection and an outer product, two ``MatMul``).

The normalisation and de-normalisation ``m + s * net((x - m) / s)`` are the same
ops as in the full graph. :func:`check_last_step` compares the graph with the full
graph (torch's export of the same model) and with the torch model itself.
"""

from __future__ import annotations

import io
import os
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
    w_ = int(window)
    levels = len(model.blocks)
    kernel = int(model.blocks[0].c1.conv.kernel_size[0])
    hidden = int(model.head.in_features)
    c, ci = hidden, hidden + 1
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

    # m = mean(x); s = max(std(x), 1e-3 |m| + 1e-6); xn = (x - m) / s   (as TCNForecaster.normalise)
    x = input_name
    m = node("ReduceMean", [x], "mean", axes=[1], keepdims=1)
    d = node("Sub", [x, m], "centred")
    var = node("ReduceMean", [node("Mul", [d, d], "centred_sq")], "var", axes=[1], keepdims=1)
    floor = node("Add", [node("Mul", [node("Abs", [m], "abs_mean"), const("c_1e-3", np.float32(1e-3))],
                              "abs_mean_1e-3"), const("c_1e-6", np.float32(1e-6))], "std_floor")
    s = node("Max", [node("Sqrt", [var], "std"), floor], "scale")
    xn = node("Div", [d, s], "xn")
    # The level-0 row pool per endpoint: [0, xn_0 .. xn_{W-1}, 1] (zero padding, samples, bias input).
    xa = node("Pad", [xn, i64("pad_left", [0, 1, 0, 0]), const("c_0", np.float32(0.0))], "xn_pad0")
    xa = node("Pad", [xa, i64("pad_right", [0, 0, 0, 1]), const("c_1", np.float32(1.0))], "xn_pool")
    one_at = w_ + 1

    plan = last_step_plan(w_, levels, kernel)
    h = xa
    row = {p: 1 + j for j, p in enumerate(plan[0]["in"])}
    out = ""
    for i, p in enumerate(plan):
        dil = 2 ** i
        last = i == levels - 1
        pre = f"blocks.{i}."
        w1, b1 = st[pre + "c1.conv.weight"], st[pre + "c1.conv.bias"]
        w2, b2 = st[pre + "c2.conv.weight"], st[pre + "c2.conv.bias"]

        def at(q: int, rows: Mapping[int, int]) -> int:
            return rows[q] if q >= 0 else 0

        # torch's causal conv: weight[:, :, k] multiplies the input at t - (K - 1 - k) * d
        taps = [[at(q - (kernel - 1 - k) * dil, row) for k in range(kernel)] for q in p["h1"]]
        n1 = len(p["h1"]) + 1  # + the zero row
        if i == 0:
            # im2col of the single input channel as one MatMul with a 0/1 selection matrix
            idx = [[0] * (kernel + 1)] + [t + [one_at] for t in taps]
            sel = np.zeros((w_ + 2, n1 * (kernel + 1)), np.float32)
            for r_, cols in enumerate(idx):
                for k_, src in enumerate(cols):
                    if not (r_ == 0):
                        sel[src, r_ * (kernel + 1) + k_] = 1.0
            a1 = node("MatMul", [xa, const("sel_0", sel)], "im2col_0")
            a1 = node("Reshape", [a1, i64("shape_im2col_0", [-1, kernel + 1])], "im2col_0_rows")
            w1m = np.zeros((kernel + 1, ci), np.float32)
            for k_ in range(kernel):
                w1m[k_, :c] = w1[:, 0, k_]
            w1m[kernel, :c], w1m[kernel, c] = b1, 1.0
        else:
            idx = [[0] * kernel] + taps
            a1 = node("Gather", [h, i64(f"taps1_{i}", idx)], f"im2col1_{i}", axis=1)
            a1 = node("Reshape", [a1, i64(f"shape_im2col1_{i}", [-1, kernel * ci])], f"im2col1_{i}_rows")
            w1m = np.zeros((kernel * ci, ci), np.float32)
            for k_ in range(kernel):
                w1m[k_ * ci:k_ * ci + c, :c] = w1[:, :, k_].T
            w1m[(kernel - 1) * ci + c, :c], w1m[(kernel - 1) * ci + c, c] = b1, 1.0
        h1 = node("Relu", [node("Gemm", [a1, const(f"w1_{i}", w1m)], f"conv1_{i}")], f"relu1_{i}")
        h1 = node("Reshape", [h1, i64(f"shape_h1_{i}", [-1, n1, ci])], f"h1_{i}")
        row1 = {q: 1 + j for j, q in enumerate(p["h1"])}
        zero = [] if last else [0]
        idx2 = [[0] * kernel for _ in zero] + [[at(q - (kernel - 1 - k) * dil, row1) for k in range(kernel)]
                                                for q in p["out"]]
        a2 = node("Gather", [h1, i64(f"taps2_{i}", idx2)], f"im2col2_{i}", axis=1)
        a2 = node("Reshape", [a2, i64(f"shape_im2col2_{i}", [-1, kernel * ci])], f"im2col2_{i}_rows")
        w2m = np.zeros((kernel * ci, ci), np.float32)
        for k_ in range(kernel):
            w2m[k_ * ci:k_ * ci + c, :c] = w2[:, :, k_].T
        bias = b2.astype(np.float32)
        ridx = zero + [row[q] for q in p["out"]]
        if i == 0:
            if pre + "skip.weight" in st:
                ws, bs = st[pre + "skip.weight"], st[pre + "skip.bias"]
                bias = bias + bs
                sel_r = np.zeros((w_ + 2, len(ridx)), np.float32)  # the output rows' samples
                for r_, src in enumerate(ridx):
                    sel_r[src, r_] = 1.0 if src else 0.0
                wsk = np.zeros((1, ci), np.float32)
                wsk[0, :c] = ws[:, 0, 0]
                res = node("MatMul", [xa, const("skip_rows_0", sel_r)], "skip_rows_0_out")
                res = node("Reshape", [res, i64("shape_skip_0", [-1, 1])], "skip_in_0")
                res = node("MatMul", [res, const("skip_0", wsk)], "res_0")
            w2m[(kernel - 1) * ci + c, c] = 1.0  # the indicator: 1 on real rows, 0 on the zero row
        else:
            if pre + "skip.weight" in st:  # pragma: no cover - the shipped layout has identity skips above 0
                raise ValueError(f"block {i}: a skip convolution above level 0 is not supported")
            res = node("Gather", [h, i64(f"res_rows_{i}", ridx)], f"res_g_{i}", axis=1)
            res = node("Reshape", [res, i64(f"shape_res_{i}", [-1, ci])], f"res_{i}")  # carries the indicator
        w2m[(kernel - 1) * ci + c, :c] = bias
        out = node("Relu", [node("Gemm", [a2, const(f"w2_{i}", w2m), res], f"conv2_{i}")], f"block_{i}")
        if not last:
            h = node("Reshape", [out, i64(f"shape_block_{i}", [-1, len(ridx), ci])], f"h_{i + 1}")
            row = {q: 1 + j for j, q in enumerate(p["out"])}
    wh = np.zeros((ci, 1), np.float32)
    wh[:c, 0], wh[c, 0] = st["head.weight"][0], st["head.bias"][0]
    yn = node("Gemm", [out, const("head", wh)], "head_out")
    node("Add", [m, node("Mul", [s, yn], "scaled")], output_name)
    graph = oh.make_graph(nodes, "tcn_last_step",
                          [oh.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", w_])],
                          [oh.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])], inits)
    mdl = oh.make_model(graph, opset_imports=[oh.make_opsetid("", int(opset or ONNX_OPSET))],
                        producer_name="ocad-train")
    return onnx.shape_inference.infer_shapes(mdl, strict_mode=True).SerializeToString()


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
