"""Hyperparameter search with Optuna (extra ``tune``): the forecasters and the multivariate forest.

Forecaster
----------
``ocad train --tune N`` runs, per metric, an Optuna study of ``N`` trials (TPE
sampler seeded with the training seed) over

* ``lr`` — log-uniform in [3e-4, 1e-2]
* ``hidden`` — 16, 24 or 32 channels
* ``levels`` — 2 to 4 residual blocks
* ``window`` — those of 8, 12, 16, 24, 32, 48 samples **the data supports**:
  a window is proposed only if the chronological train, validation and test
  splits each give at least :data:`~ocad.train._forecaster.MIN_WINDOWS`
  usable windows with it (the same datasets, gap and fill rule as the final
  training, :func:`feasible_windows`). So the best trial can always be trained
  and published; data too short for any of them fails before the first trial,
  naming the windows each split would have.

Each trial trains for ``[tune] epochs`` epochs on the chronological training split
and is scored on the validation split. The objective is the validation loss made
comparable across window lengths: validation MAE of the model divided by the
validation MAE of the naive last-value forecast on the same windows (lower is
better, < 1 beats naive). The final model is then trained with the best
parameters and the full epoch budget.

Multivariate forest
-------------------
With ``[multivariate] enabled``, the same ``--tune N`` runs a study over the
Isolation Forest (:func:`tune_iforest`): ``n_estimators`` 50–300 (step 50),
``max_samples`` from 64 to 512 bounded by the training rows there are,
``max_features`` 0.5–1.0. The objective is the average precision of the raw
anomaly score on the *validation* rows' labels (anomalous vs normal), so it
needs labelled anomalies in the validation split; without them tuning is
skipped with a log line and the configured values are kept.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from ocad.core import OcadError

from ._config import ForecasterConfig
from ._data import SeriesTable
from ._errors import require_extra

__all__ = ["IFOREST_SEARCH_SPACE", "SEARCH_SPACE", "feasible_windows", "tune_forecaster", "tune_iforest"]

log = logging.getLogger("ocad.train")

SEARCH_SPACE: Mapping[str, Any] = {
    "lr": (3e-4, 1e-2),
    "hidden": (16, 24, 32),
    "levels": (2, 4),
    "window": (8, 12, 16, 24, 32, 48),
}

IFOREST_SEARCH_SPACE: Mapping[str, Any] = {
    "n_estimators": (50, 300, 50),
    "max_samples": (64, 128, 256, 512),
    "max_features": (0.5, 1.0),
}


def _datasets(table: SeriesTable, metric: str, config: ForecasterConfig, window: int, seed: int,
              test_cap: int | None) -> Any:
    from ._datasets import build_sequence_datasets

    return build_sequence_datasets(
        table, metric, window, fractions=config.fractions, gap=config.gap, fill_limit=config.fill_limit,
        max_windows={"train": config.max_train_windows, "validation": config.max_eval_windows, "test": test_cap},
        seed=seed)


def feasible_windows(table: SeriesTable, metric: str, config: ForecasterConfig, *, seed: int = 0,
                     candidates: Sequence[int] | None = None) -> tuple[list[int], dict[int, dict[str, int]]]:
    """The candidate windows whose train / validation / test splits all have enough usable windows.

    Returns ``(feasible windows ascending, {window: {split: count}})``; counts are
    capped at the minimum needed for the test split (cheap), exact otherwise.
    """
    from ._forecaster import MIN_WINDOWS

    wins = sorted({int(w) for w in (candidates or SEARCH_SPACE["window"])})
    counts: dict[int, dict[str, int]] = {}
    ok = []
    for w in wins:
        ds = _datasets(table, metric, config, w, seed, MIN_WINDOWS["test"])
        counts[w] = {k: len(v) for k, v in ds.items()}
        if all(counts[w][k] >= n for k, n in MIN_WINDOWS.items()):
            ok.append(w)
    return ok, counts


def tune_forecaster(table: SeriesTable, metric: str, config: ForecasterConfig, n_trials: int, *,
                    seed: int = 0, epochs: int = 3, timeout_s: float | None = None,
                    progress: bool = True) -> dict[str, Any]:
    """Search the forecaster's hyperparameters; returns ``{"best_params", "best_value", "n_trials", ...}``.

    Raises :class:`ocad.core.OcadDependencyError` naming the extra ``tune`` when
    optuna is not installed, :class:`ocad.core.OcadError` when no window of the
    search space is supported by the data.
    """
    optuna = require_extra("optuna", "tune", "hyperparameter tuning (ocad train --tune)")
    from ._forecaster import MIN_WINDOWS
    from ._tcn import fit_tcn, predict, regression_metrics

    windows, counts = feasible_windows(table, metric, config, seed=seed)
    if not windows:
        raise OcadError(
            f"tuning {metric!r}: no window of {list(SEARCH_SPACE['window'])} leaves enough usable windows "
            f"(train / validation / test need {MIN_WINDOWS}; per window: {counts}); give more data (longer series "
            "or more endpoints)")
    log.info("tune %s: windows the data supports: %s (of %s)", metric, windows, list(SEARCH_SPACE["window"]))
    cache: dict[int, Any] = {}

    def data(window: int) -> Any:
        if window not in cache:
            cache[window] = _datasets(table, metric, config, window, seed, 0)
        return cache[window]

    def objective(trial: Any) -> float:
        params = {
            "lr": trial.suggest_float("lr", *SEARCH_SPACE["lr"], log=True),
            "hidden": trial.suggest_categorical("hidden", list(SEARCH_SPACE["hidden"])),
            "levels": trial.suggest_int("levels", *SEARCH_SPACE["levels"]),
            "window": trial.suggest_categorical("window", windows),
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
            "objective": "validation MAE / naive validation MAE",
            "search_space": {**{k: list(v) for k, v in SEARCH_SPACE.items()}, "window": windows}}


def tune_iforest(x_train: np.ndarray, x_val: np.ndarray, labels_val: np.ndarray | None, config: Mapping[str, Any],
                 n_trials: int, *, seed: int = 0, timeout_s: float | None = None) -> dict[str, Any] | None:
    """Search the Isolation Forest's hyperparameters on labelled validation rows.

    ``x_train`` / ``x_val``: the window features the trainer gets (NaN = missing;
    rows with more than ``max_missing_fraction`` missing are left out, as in
    training). Returns ``{"best_params", "best_value", "n_trials", ...}`` or ``None``
    (with a log line) when the validation split has no anomalous or no normal rows.
    """
    optuna = require_extra("optuna", "tune", "hyperparameter tuning (ocad train --tune)")
    from sklearn.ensemble import IsolationForest
    from sklearn.metrics import average_precision_score

    from ._iforest import DEFAULT_CONFIG, missing_fraction

    max_missing = float(config.get("max_missing_fraction", DEFAULT_CONFIG["max_missing_fraction"]))
    xt = np.asarray(x_train, np.float32)
    xt = xt[missing_fraction(xt) <= max_missing]
    xv = np.asarray(x_val, np.float32)
    keep = missing_fraction(xv) <= max_missing
    y = None if labels_val is None else np.asarray(labels_val).reshape(-1)[keep]
    xv = xv[keep]
    if y is None or not (y > 0).any() or not (y == 0).any() or xt.shape[0] < 100:
        log.warning("multivariate tuning skipped: it needs labelled anomalous and normal validation rows and "
                    ">= 100 training rows (kept the configured forest)")
        return None
    known = y >= 0
    xv, pos = xv[known], (y[known] > 0)
    med = np.nanmedian(xt, axis=0)
    med = np.where(np.isfinite(med), med, 0.0)
    q1, q3 = np.nanpercentile(xt, 25, axis=0), np.nanpercentile(xt, 75, axis=0)
    scale = np.where(np.isfinite(q3 - q1) & (q3 - q1 > 0), q3 - q1, 1.0)

    def prep(x: np.ndarray) -> np.ndarray:
        return (np.where(np.isnan(x), med, x) - med) / scale

    ft, fv = prep(xt), prep(xv)
    lo, hi, step = IFOREST_SEARCH_SPACE["n_estimators"]
    samples = [s for s in IFOREST_SEARCH_SPACE["max_samples"] if s <= ft.shape[0]] or [ft.shape[0]]

    def objective(trial: Any) -> float:
        params = {"n_estimators": trial.suggest_int("n_estimators", lo, hi, step=step),
                  "max_samples": trial.suggest_categorical("max_samples", samples),
                  "max_features": trial.suggest_float("max_features", *IFOREST_SEARCH_SPACE["max_features"])}
        forest = IsolationForest(random_state=int(seed), n_jobs=1, **params).fit(ft)
        ap = float(average_precision_score(pos, -forest.score_samples(fv)))
        log.info("tune iforest trial %d %s -> AP %.4f", trial.number, params, ap)
        return ap

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed),
                                study_name="ocad-iforest")
    study.optimize(objective, n_trials=int(n_trials), timeout=timeout_s, show_progress_bar=False)
    return {"best_params": dict(study.best_params), "best_value": float(study.best_value),
            "n_trials": len(study.trials),
            "objective": "average precision of the raw anomaly score on labelled validation rows",
            "search_space": {"n_estimators": [lo, hi, step], "max_samples": samples,
                             "max_features": list(IFOREST_SEARCH_SPACE["max_features"])}}
