"""A small temporal convolutional network (TCN) that forecasts one metric's next value.

Model
-----
Input ``x`` ``(B, W)`` float32 raw values in metric units; output ``(B, 1)`` the
predicted next value in metric units. The model normalises each window itself::

    m = mean(x);  s = max(std(x), 1e-3 * |m| + 1e-6)
    ŷ = m + s * net((x - m) / s)

so endpoints with very different baselines (0.2 ms vs 3 ms RTT) share one model
and the exported ONNX graph needs no external scaler. ``net`` is a stack of
residual blocks of two causal dilated 1-D convolutions (kernel 3, dilations
1, 2, 4, 8, ...) with ReLU, followed by a linear head on the last time step.

Training
--------
Adam on the MSE of *normalised* targets ``(y - m) / s``, early stopping on the
validation loss (``patience`` epochs without an improvement of ``min_delta``),
the best epoch's weights kept. Deterministic: seeded initialisation, a per-epoch
permutation from a generator seeded with ``(seed, epoch)``,
``torch.use_deterministic_algorithms(True)``, a fixed thread count. A checkpoint
(``last.pt``: weights, optimiser, early-stopping state; plain state dicts read back
with ``torch.load(..., weights_only=True)``) is written after every epoch, so
``resume=True`` continues an interrupted run and ends with exactly the weights of
an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ocad.core import OcadConfigError, OcadError

from ._datasets import SequenceDataset

__all__ = [
    "FitResult",
    "TCNConfig",
    "TCNForecaster",
    "evaluate_forecast",
    "fit_tcn",
    "load_checkpoint_model",
    "predict",
    "regression_metrics",
]

log = logging.getLogger("ocad.train")

CHECKPOINT_VERSION = 1


@attrs.frozen(kw_only=True)
class TCNConfig:
    """Hyperparameters of one forecaster and its training run.

    The defaults train a useful model on a few tens of thousands of windows in
    well under a minute on two CPU cores.
    """

    window: int = 32
    hidden: int = 24
    levels: int = 4
    kernel_size: int = 3
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 8
    patience: int = 3
    min_delta: float = 1e-4
    grad_clip: float = 1.0
    seed: int = 0
    threads: int = 2

    def __attrs_post_init__(self) -> None:
        for name in ("window", "hidden", "levels", "kernel_size", "batch_size", "epochs", "threads"):
            if int(getattr(self, name)) < 1:
                raise OcadConfigError(f"forecaster.{name} must be >= 1, got {getattr(self, name)!r}")
        if self.patience < 1:
            raise OcadConfigError(f"forecaster.patience must be >= 1, got {self.patience!r}")
        if not self.lr > 0:
            raise OcadConfigError(f"forecaster.lr must be > 0, got {self.lr!r}")

    @property
    def receptive_field(self) -> int:
        return 1 + 2 * (self.kernel_size - 1) * (2 ** self.levels - 1)

    def architecture(self) -> dict[str, int]:
        return {"window": self.window, "hidden": self.hidden, "levels": self.levels,
                "kernel_size": self.kernel_size}

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)


# -- model -------------------------------------------------------------------------

class _CausalConv(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.pad = (kernel - 1) * dilation
        self.conv = nn.Conv1d(c_in, c_out, kernel, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (self.pad, 0)))


class _Block(nn.Module):
    def __init__(self, c_in: int, c_out: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.c1 = _CausalConv(c_in, c_out, kernel, dilation)
        self.c2 = _CausalConv(c_out, c_out, kernel, dilation)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.c1(x))
        h = self.c2(h)
        return F.relu(h + (x if self.skip is None else self.skip(x)))


class TCNForecaster(nn.Module):
    """Causal dilated TCN with per-window normalisation inside the model (see module docs).

    >>> m = TCNForecaster(window=16, hidden=8, levels=2)
    >>> tuple(m(torch.ones(4, 16)).shape)
    (4, 1)
    """

    def __init__(self, window: int, hidden: int = 24, levels: int = 4, kernel_size: int = 3) -> None:
        super().__init__()
        self.window = int(window)
        blocks = [_Block(1 if i == 0 else hidden, hidden, kernel_size, 2 ** i) for i in range(levels)]
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(hidden, 1)

    @staticmethod
    def normalise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``((x - m) / s, m, s)`` with ``m``, ``s`` ``(B, 1)`` (see module docs)."""
        m = x.mean(dim=1, keepdim=True)
        sd = torch.sqrt(((x - m) ** 2).mean(dim=1, keepdim=True))
        s = torch.maximum(sd, 1e-3 * m.abs() + 1e-6)
        return (x - m) / s, m, s

    def forward_normalised(self, xn: torch.Tensor) -> torch.Tensor:
        h = self.blocks(xn.unsqueeze(1))
        return self.head(h[:, :, -1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xn, m, s = self.normalise(x)
        return m + s * self.forward_normalised(xn)


# -- determinism -------------------------------------------------------------------

@contextlib.contextmanager
def deterministic(seed: int, threads: int) -> Iterator[None]:
    """Seed torch, fix the thread count and force deterministic kernels; restore afterwards."""
    prev_threads = torch.get_num_threads()
    prev_det = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(int(threads))
    torch.use_deterministic_algorithms(True)
    torch.manual_seed(int(seed))
    np.random.seed(int(seed) % (2 ** 32))
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(prev_det)
        torch.set_num_threads(prev_threads)


# -- training ----------------------------------------------------------------------

@attrs.frozen
class FitResult:
    """A trained model and its training history."""

    model: TCNForecaster
    history: tuple[Mapping[str, float], ...]
    best_epoch: int
    epochs_run: int
    resumed_from: int  # epochs already done in the checkpoint resumed from (0: fresh run)
    seconds: float


def _tensor(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))


def _normalised_targets(model: TCNForecaster, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xn, m, s = model.normalise(x)
    return xn, (y.unsqueeze(1) - m) / s


def _val_loss(model: TCNForecaster, x: torch.Tensor, y: torch.Tensor, batch: int = 8192) -> float:
    model.eval()
    total = 0.0
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            xn, tn = _normalised_targets(model, x[i:i + batch], y[i:i + batch])
            total += float(F.mse_loss(model.forward_normalised(xn), tn, reduction="sum"))
    return total / max(x.shape[0], 1)


def _run_key(train: SequenceDataset, val: SequenceDataset, config: TCNConfig) -> str:
    """What a checkpoint must match to be resumed: data and every setting except the epoch budget."""
    h = hashlib.sha256()
    for a in (train.x, train.y, val.x, val.y):
        h.update(np.ascontiguousarray(a).tobytes())
    cfg = config.to_dict()
    for k in ("epochs", "threads"):
        cfg.pop(k)
    h.update(json.dumps(cfg, sort_keys=True).encode())
    return h.hexdigest()


def _save(obj: Mapping[str, Any], path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    torch.save(dict(obj), tmp)
    os.replace(tmp, path)


def fit_tcn(train: SequenceDataset, val: SequenceDataset, config: TCNConfig, *,
            checkpoint_dir: str | os.PathLike[str] | None = None, resume: bool = False,
            progress: bool = True, desc: str | None = None,
            on_epoch: Callable[[Mapping[str, float]], None] | None = None,
            init_state: Mapping[str, np.ndarray] | None = None) -> FitResult:
    """Train a :class:`TCNForecaster` on ``train`` with early stopping on ``val``.

    Parameters
    ----------
    checkpoint_dir:
        Where ``last.pt`` (after every epoch) and ``best.pt`` (the final model and
        its config, for ``ocad export``) are written. Needed for ``resume``.
    resume:
        Continue from ``checkpoint_dir/last.pt`` if it exists. The checkpoint must
        come from the same data and settings (the epoch budget may grow);
        otherwise :class:`OcadError` tells the user to delete it or drop resume.
    on_epoch:
        Called with each epoch's record (``epoch``, ``train_loss``, ``val_loss``),
        e.g. for MLflow or an Optuna pruner.
    init_state:
        Warm start: initial weights by parameter name (e.g. read from an active
        version's ONNX initializers, :func:`ocad.train._warm.onnx_state`); the
        architecture must match exactly.
    """
    from tqdm.auto import tqdm

    if len(train) == 0 or len(val) == 0:
        raise OcadError(
            f"metric {train.metric!r}: no usable windows (train {len(train)}, validation {len(val)}); "
            f"the series are too short for window {config.window} or mostly missing / anomalous")
    if train.window != config.window:
        raise OcadConfigError(f"dataset window {train.window} != forecaster.window {config.window}")
    t0 = time.perf_counter()
    ckdir = Path(checkpoint_dir) if checkpoint_dir is not None else None
    if ckdir is not None:
        ckdir.mkdir(parents=True, exist_ok=True)
    key = _run_key(train, val, config)
    with deterministic(config.seed, config.threads):
        model = TCNForecaster(config.window, config.hidden, config.levels, config.kernel_size)
        if init_state is not None:
            try:
                model.load_state_dict({k: torch.from_numpy(np.array(v, dtype=np.float32))
                                       for k, v in init_state.items()}, strict=True)
            except (RuntimeError, KeyError) as exc:
                raise OcadConfigError(f"warm start: the initial weights do not fit this architecture "
                                      f"(window {config.window}, hidden {config.hidden}, levels {config.levels}): "
                                      f"{exc}") from exc
        opt = torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        xt, yt = _tensor(train.x), _tensor(train.y)
        xv, yv = _tensor(val.x), _tensor(val.y)
        state: dict[str, Any] = {"epoch": 0, "best_val": math.inf, "best_epoch": 0, "bad_epochs": 0,
                                 "stopped": False, "history": [],
                                 "best_model": {k: v.clone() for k, v in model.state_dict().items()}}
        resumed_from = 0
        last = ckdir / "last.pt" if ckdir is not None else None
        if resume:
            if last is None:
                raise OcadConfigError("resume=True needs a checkpoint_dir")
            if last.is_file():
                ck = torch.load(last, map_location="cpu", weights_only=True)
                if ck.get("version") != CHECKPOINT_VERSION or ck.get("key") != key:
                    raise OcadError(
                        f"checkpoint {last} was written for other data or settings; delete it or run "
                        "without --resume")
                model.load_state_dict(ck["model"])
                opt.load_state_dict(ck["optimizer"])
                for k in state:
                    state[k] = ck[k]
                resumed_from = int(ck["epoch"])
                log.info("%s: resuming from epoch %d (%s)", desc or train.metric, resumed_from, last)
        n = len(train)
        n_batches = math.ceil(n / config.batch_size)
        todo = 0 if state["stopped"] else max(config.epochs - state["epoch"], 0)
        bar = tqdm(total=todo * n_batches, desc=desc or f"tcn {train.metric}", unit="batch",
                   disable=not progress, leave=False, dynamic_ncols=True)
        try:
            while not state["stopped"] and state["epoch"] < config.epochs:
                epoch = state["epoch"] + 1
                model.train()
                gen = torch.Generator().manual_seed(config.seed * 100_003 + epoch)
                perm = torch.randperm(n, generator=gen)
                total = 0.0
                for i in range(0, n, config.batch_size):
                    idx = perm[i:i + config.batch_size]
                    xn, tn = _normalised_targets(model, xt[idx], yt[idx])
                    loss = F.mse_loss(model.forward_normalised(xn), tn)
                    opt.zero_grad(set_to_none=True)
                    loss.backward()
                    if config.grad_clip > 0:
                        nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
                    opt.step()
                    total += loss.detach().item() * idx.shape[0]
                    bar.update(1)
                train_loss = total / n
                val_loss = _val_loss(model, xv, yv)
                rec = {"epoch": float(epoch), "train_loss": train_loss, "val_loss": val_loss}
                state["history"].append(rec)
                if val_loss < state["best_val"] - config.min_delta:
                    state.update(best_val=val_loss, best_epoch=epoch, bad_epochs=0,
                                 best_model={k: v.clone() for k, v in model.state_dict().items()})
                else:
                    state["bad_epochs"] += 1
                    if state["bad_epochs"] >= config.patience:
                        state["stopped"] = True
                state["epoch"] = epoch
                bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
                log.info("%s epoch %d/%d train_loss=%.5f val_loss=%.5f best=%d%s", desc or train.metric,
                         epoch, config.epochs, train_loss, val_loss, state["best_epoch"],
                         " (early stop)" if state["stopped"] else "")
                if last is not None:
                    _save({"version": CHECKPOINT_VERSION, "key": key, "model": model.state_dict(),
                           "optimizer": opt.state_dict(), **state}, last)
                if on_epoch is not None:
                    on_epoch(rec)
        finally:
            bar.close()
        model.load_state_dict(state["best_model"])
        model.eval()
    if ckdir is not None:
        _save({"version": CHECKPOINT_VERSION, "config": config.to_dict(), "metric": train.metric,
               "model": model.state_dict(), "best_epoch": state["best_epoch"]}, ckdir / "best.pt")
    return FitResult(model=model, history=tuple(state["history"]), best_epoch=int(state["best_epoch"]),
                     epochs_run=int(state["epoch"]), resumed_from=resumed_from,
                     seconds=time.perf_counter() - t0)


def load_checkpoint_model(path: str | os.PathLike[str]) -> tuple[TCNForecaster, TCNConfig, str]:
    """Rebuild the model saved as ``best.pt`` by :func:`fit_tcn`: ``(model, config, metric)``."""
    ck = torch.load(path, map_location="cpu", weights_only=True)
    if ck.get("version") != CHECKPOINT_VERSION or "config" not in ck:
        raise OcadError(f"{path} is not an ocad-train model checkpoint (best.pt)")
    cfg = TCNConfig(**ck["config"])
    model = TCNForecaster(cfg.window, cfg.hidden, cfg.levels, cfg.kernel_size)
    model.load_state_dict(ck["model"])
    model.eval()
    return model, cfg, str(ck.get("metric", ""))


# -- evaluation --------------------------------------------------------------------

def predict(model: TCNForecaster, x: np.ndarray, batch: int = 8192) -> np.ndarray:
    """Model forecasts ``(N,)`` float32 for windows ``x`` ``(N, W)``."""
    model.eval()
    out = np.empty(x.shape[0], np.float32)
    with torch.no_grad():
        for i in range(0, x.shape[0], batch):
            out[i:i + batch] = model(_tensor(x[i:i + batch]))[:, 0].numpy()
    return out


def regression_metrics(y: np.ndarray, yhat: np.ndarray) -> dict[str, float]:
    """``mse``, ``mae``, ``rmse`` and ``r2`` (1 - SSE / SST) in float64."""
    y = np.asarray(y, np.float64)
    e = np.asarray(yhat, np.float64) - y
    mse = float(np.mean(e ** 2))
    sst = float(np.sum((y - y.mean()) ** 2))
    return {"mse": mse, "mae": float(np.mean(np.abs(e))), "rmse": math.sqrt(mse),
            "r2": float(1.0 - np.sum(e ** 2) / sst) if sst > 0 else float("nan")}


def evaluate_forecast(y: np.ndarray, yhat: np.ndarray, naive: np.ndarray) -> dict[str, float]:
    """Model metrics and the naive last-value forecast's (``naive_*``) side by side, plus ``n``."""
    out = regression_metrics(y, yhat)
    out.update({f"naive_{k}": v for k, v in regression_metrics(y, naive).items()})
    out["n"] = int(np.asarray(y).shape[0])
    return out
