"""Hyperparameter search for the forecaster with Optuna (extra ``tune``).

``ocad train --tune N`` runs, per metric, an Optuna study of ``N`` trials (TPE
sampler seeded with the training seed) over

* ``lr`` — log-uniform in [3e-4, 1e-2]
* ``hidden`` — 16, 24 or 32 channels
* ``levels`` — 2 to 4 residual blocks
* ``window`` — 16, 24, 32 or 48 samples

Each trial trains for ``[tune] epochs`` epochs on the chronological training split
and is scored on the validation split. The objective is the validation loss made
comparable across window lengths: validation MAE of the model divided by the
validation MAE of the naive last-value forecast on the same windows (lower is
better, < 1 beats naive). The final model is then trained with the best
parameters and the full epoch budget.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import attrs

from ._config import ForecasterConfig
from ._data import SeriesTable
from ._errors import require_extra

__all__ = ["SEARCH_SPACE", "tune_forecaster"]

log = logging.getLogger("ocad.train")

SEARCH_SPACE: Mapping[str, Any] = {
    "lr": (3e-4, 1e-2),
    "hidden": (16, 24, 32),
    "levels": (2, 4),
    "window": (16, 24, 32, 48),
}


def tune_forecaster(table: SeriesTable, metric: str, config: ForecasterConfig, n_trials: int, *,
                    seed: int = 0, epochs: int = 3, timeout_s: float | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Search the forecaster's hyperparameters; returns ``{"best_params", "best_value", "n_trials"}``.

    Raises :class:`ocad.core.OcadDependencyError` naming the extra ``tune`` when
    optuna is not installed.
    """
    optuna = require_extra("optuna", "tune", "hyperparameter tuning (ocad train --tune)")
    from ._datasets import build_sequence_datasets
    from ._tcn import fit_tcn, predict, regression_metrics

    cache: dict[int, Any] = {}

    def data(window: int) -> Any:
        if window not in cache:
            cache[window] = build_sequence_datasets(
                table, metric, window, fractions=config.fractions, fill_limit=config.fill_limit,
                max_windows={"train": config.max_train_windows, "validation": config.max_eval_windows,
                             "test": 0}, seed=seed)
        return cache[window]

    def objective(trial: Any) -> float:
        params = {
            "lr": trial.suggest_float("lr", *SEARCH_SPACE["lr"], log=True),
            "hidden": trial.suggest_categorical("hidden", list(SEARCH_SPACE["hidden"])),
            "levels": trial.suggest_int("levels", *SEARCH_SPACE["levels"]),
            "window": trial.suggest_categorical("window", list(SEARCH_SPACE["window"])),
        }
        ds = data(params["window"])
        cfg = attrs.evolve(config, epochs=epochs, **params).tcn(seed)
        fit = fit_tcn(ds["train"], ds["validation"], cfg, progress=False, desc=f"tune {metric} #{trial.number}")
        val = ds["validation"]
        mae = regression_metrics(val.y, predict(fit.model, val.x))["mae"]
        naive = regression_metrics(val.y, val.naive)["mae"]
        value = mae / naive if naive > 0 else mae
        log.info("tune %s trial %d %s -> %.4f", metric, trial.number, params, value)
        return value

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="minimize", sampler=optuna.samplers.TPESampler(seed=seed),
                                study_name=f"ocad-tcn-{metric}")
    study.optimize(objective, n_trials=int(n_trials), timeout=timeout_s, show_progress_bar=progress)
    best = dict(study.best_params)
    log.info("tune %s: best %s (validation MAE / naive MAE = %.4f)", metric, best, study.best_value)
    return {"best_params": best, "best_value": float(study.best_value), "n_trials": len(study.trials),
            "objective": "validation MAE / naive validation MAE"}
