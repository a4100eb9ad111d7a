"""The TCN: per-window normalisation, deterministic training, exact resume from checkpoints."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ocad.core import OcadError
from ocad.train import TCNConfig, TCNForecaster, build_sequence_datasets, fit_tcn, from_fleet, predict

CFG = TCNConfig(window=16, hidden=8, levels=2, epochs=4, patience=10, batch_size=128, lr=5e-3, seed=1, threads=1)


@pytest.fixture(scope="module")
def data(fleet: object) -> dict:
    return build_sequence_datasets(from_fleet(fleet), "lbm_rtt_ms", 16,
                                   max_windows={"train": 1500, "validation": 600, "test": 600}, seed=1)


def _weights(m: torch.nn.Module) -> dict[str, np.ndarray]:
    return {k: v.detach().numpy().copy() for k, v in m.state_dict().items()}


def test_model_is_shift_and_scale_equivariant() -> None:
    torch.manual_seed(0)
    m = TCNForecaster(window=16, hidden=8, levels=2).eval()
    x = 5.0 + torch.randn(64, 16)
    with torch.no_grad():
        y = m(x)
        y2 = m(1000.0 * x + 300.0)  # another endpoint with another baseline: same normalised input
    torch.testing.assert_close(y2, 1000.0 * y + 300.0, rtol=1e-4, atol=1e-3)
    # a constant window: the scale floor (1e-3 * |mean|) avoids 0 / 0 and keeps the forecast near the level
    with torch.no_grad():
        c = m(torch.full((2, 16), 7.0))
    assert torch.isfinite(c).all() and float((c - 7.0).abs().max()) < 7.0 * 1e-3 * 20


def test_resume_from_checkpoint_ends_with_the_uninterrupted_weights(data: dict, tmp_path: Path) -> None:
    full = fit_tcn(data["train"], data["validation"], CFG, checkpoint_dir=tmp_path / "full", progress=False)
    part = fit_tcn(data["train"], data["validation"], TCNConfig(**{**CFG.to_dict(), "epochs": 2}),
                   checkpoint_dir=tmp_path / "resumed", progress=False)
    assert part.epochs_run == 2
    resumed = fit_tcn(data["train"], data["validation"], CFG, checkpoint_dir=tmp_path / "resumed",
                      resume=True, progress=False)
    assert resumed.resumed_from == 2 and resumed.epochs_run == 4
    assert [h["val_loss"] for h in resumed.history] == [h["val_loss"] for h in full.history]
    wf, wr = _weights(full.model), _weights(resumed.model)
    assert wf.keys() == wr.keys()
    for k in wf:
        np.testing.assert_array_equal(wf[k], wr[k], err_msg=k)


def test_resume_refuses_a_checkpoint_of_other_data(data: dict, tmp_path: Path) -> None:
    fit_tcn(data["train"], data["validation"], TCNConfig(**{**CFG.to_dict(), "epochs": 1}),
            checkpoint_dir=tmp_path, progress=False)
    other = data["train"].take(np.arange(len(data["train"]) - 1))
    with pytest.raises(OcadError, match="other data or settings"):
        fit_tcn(other, data["validation"], CFG, checkpoint_dir=tmp_path, resume=True, progress=False)


def test_training_is_deterministic_and_learns(data: dict) -> None:
    cfg = TCNConfig(**{**CFG.to_dict(), "epochs": 2})
    a = fit_tcn(data["train"], data["validation"], cfg, progress=False)
    b = fit_tcn(data["train"], data["validation"], cfg, progress=False)
    for k, v in _weights(a.model).items():
        np.testing.assert_array_equal(v, _weights(b.model)[k])
    test = data["test"]
    mae = np.abs(predict(a.model, test.x) - test.y).mean()
    naive = np.abs(test.naive - test.y).mean()
    assert mae < naive
