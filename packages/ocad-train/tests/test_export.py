"""ONNX export: loads in onnxruntime, explicit IR / opset, parity checked loudly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from ocad.core import OcadError
from ocad.train import (
    ONNX_IR_VERSION,
    ONNX_OPSET,
    ParityError,
    TCNForecaster,
    check_parity,
    export_tcn_onnx,
    onnx_initializer_digest,
    ort_session,
    predict,
    window_scale,
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[TCNForecaster, Path]:
    torch.manual_seed(0)
    m = TCNForecaster(window=16, hidden=8, levels=2).eval()
    return m, export_tcn_onnx(m, 16, tmp_path_factory.mktemp("onnx") / "m.onnx")


def _inputs(n: int = 10_000) -> np.ndarray:
    rng = np.random.default_rng(0)
    level = rng.uniform(1.0, 120.0, (n, 1))
    return (level * (1 + 0.05 * rng.standard_normal((n, 16)))).astype(np.float32)


def test_onnx_file_is_valid_with_explicit_ir_and_opset(exported: tuple[TCNForecaster, Path]) -> None:
    _, path = exported
    m = onnx.load(str(path))
    onnx.checker.check_model(m, full_check=True)
    assert m.ir_version == ONNX_IR_VERSION <= 10  # onnxruntime 1.31 reads IR <= 13
    assert {(o.domain or "ai.onnx"): o.version for o in m.opset_import}["ai.onnx"] == ONNX_OPSET == 17
    sess = ort_session(path)
    assert [i.name for i in sess.get_inputs()] == ["x"] and sess.get_inputs()[0].shape[1] == 16
    assert sess.run(None, {"x": _inputs(7)})[0].shape == (7, 1)  # dynamic batch axis


def test_parity_on_ten_thousand_inputs(exported: tuple[TCNForecaster, Path]) -> None:
    model, path = exported
    res = check_parity(lambda b: predict(model, b), path, _inputs())
    assert res["n"] == 10_000 and res["max_abs_diff"] <= 1e-4


def test_parity_failure_is_loud(exported: tuple[TCNForecaster, Path]) -> None:
    model, path = exported
    with pytest.raises(ParityError, match="parity check FAILED") as ei:
        check_parity(lambda b: predict(model, b) + np.where(np.arange(len(b)) == 3, 1e-3, 0), path,
                     _inputs(100), tol=1e-4)
    assert isinstance(ei.value, OcadError) and ei.value.worst_index == 3 and ei.value.max_abs_diff > 9e-4
    with pytest.raises(ParityError):  # NaN on one side only is a mismatch, not a pass
        check_parity(lambda b: np.full(len(b), np.nan), path, _inputs(10))


def test_parity_tolerance_scales_with_the_windows_level(exported: tuple[TCNForecaster, Path]) -> None:
    # The rule: |onnx - reference| <= tol * max(1, mean |x_i|). A difference of 0.01 is float32
    # rounding for a window around 1e4 (1e-6 of the value) but an error for a window around 1.
    model, path = exported
    big = (_inputs(200) * 100.0).astype(np.float32)  # levels 100 .. 12000
    off = 1e-6 * window_scale(big)  # a relative difference of 1e-6 on every input
    ref = lambda b: predict(model, b) + off[:len(b)]  # noqa: E731
    res = check_parity(ref, path, big, tol=1e-4, scale=window_scale(big))
    assert res["max_abs_diff"] > 1e-4 and res["max_diff_over_allowed"] <= 0.02
    with pytest.raises(ParityError):  # the old absolute rule refuses a correct export
        check_parity(ref, path, big, tol=1e-4)
    small = _inputs(100) / 1000.0  # levels 1e-3 .. 0.12: scale < 1, the absolute tol applies
    with pytest.raises(ParityError) as ei:
        check_parity(lambda b: predict(model, b) + 2e-4, path, small, tol=1e-4, scale=window_scale(small))
    assert ei.value.allowed == pytest.approx(1e-4)
    np.testing.assert_allclose(window_scale(np.array([[1.0, -3.0, np.nan], [np.nan] * 3])), [2.0, 0.0])


def test_initializer_digest_tracks_weights(exported: tuple[TCNForecaster, Path], tmp_path: Path) -> None:
    model, path = exported
    again = export_tcn_onnx(model, 16, tmp_path / "again.onnx")
    assert onnx_initializer_digest(again) == onnx_initializer_digest(path)
    with torch.no_grad():
        model.head.bias += 1.0
    try:
        changed = export_tcn_onnx(model, 16, tmp_path / "changed.onnx")
    finally:
        with torch.no_grad():
            model.head.bias -= 1.0
    assert onnx_initializer_digest(changed) != onnx_initializer_digest(path)


# -- the last-step graph (what the artifacts ship) ------------------------------------

@pytest.mark.parametrize("arch", [(32, 24, 4, 3), (16, 8, 2, 3), (20, 6, 3, 2), (7, 4, 4, 3), (40, 5, 3, 4),
                                  (12, 4, 3, 1), (5, 3, 3, 2)])
def test_last_step_graph_matches_full_graph_and_torch(arch: tuple[int, int, int, int]) -> None:
    from ocad.train import LAST_STEP_RTOL, check_last_step
    from ocad.train._last_step import full_graph_onnx, tcn_last_step_onnx

    window, hidden, levels, kernel = arch  # incl. receptive field > / < window, even / odd kernels
    torch.manual_seed(1)
    model = TCNForecaster(window, hidden, levels, kernel).eval()
    with torch.no_grad():  # non-trivial biases: the bias travels through the indicator channel
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.3)
    rng = np.random.default_rng(2)
    x = (rng.uniform(0.5, 300.0, (3000, 1)) * (1 + 0.05 * rng.standard_normal((3000, window)))).astype(np.float32)
    x[:5] = 0.0  # constant windows: s hits its floor
    res = check_last_step(model, tcn_last_step_onnx(model, window), x)
    assert res["max_rel_diff_full_graph"] <= LAST_STEP_RTOL and res["max_rel_diff_torch"] <= LAST_STEP_RTOL
    last, full = ort_session(tcn_last_step_onnx(model, window)), ort_session(full_graph_onnx(model, window))
    a, b = last.run(None, {"x": x})[0], full.run(None, {"x": x})[0]
    assert a.shape == b.shape == (3000, 1)
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


def test_last_step_graph_is_the_default_export_and_smaller(exported: tuple[TCNForecaster, Path],
                                                            tmp_path: Path) -> None:
    from ocad.train import tcn_flops

    model, path = exported
    assert onnx.load(str(path)).graph.name == "tcn_last_step"
    full = export_tcn_onnx(model, 16, tmp_path / "full.onnx", graph="full")
    assert onnx.load(str(full)).graph.name != "tcn_last_step"
    # the last block's second convolution produces one row (the last step) per endpoint
    sess = ort_session(path)
    assert sess.run(None, {"x": _inputs(3)})[0].shape == (3, 1)
    assert tcn_flops(32, 24, 4, 3, last_step=True) < 0.3 * tcn_flops(32, 24, 4, 3, last_step=False)
    with pytest.raises(OcadError, match="graph"):
        export_tcn_onnx(model, 16, tmp_path / "x.onnx", graph="half")


def test_last_step_check_is_loud(exported: tuple[TCNForecaster, Path]) -> None:
    from ocad.train import check_last_step

    model, path = exported
    other = TCNForecaster(window=16, hidden=8, levels=2).eval()  # different weights
    with pytest.raises(ParityError, match="last step vs full_graph"):
        check_last_step(other, path, _inputs(200))
