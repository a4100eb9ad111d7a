"""Residual scores of a forecaster, and their calibration on normal validation data.

The runtime ``ResidualDetector`` (ocad-detectors-ml) reads only the manifest, so
the score is defined here once, exactly, and recorded in the manifest
(``scaler`` + ``calibration`` + the text :data:`RESIDUAL_SCORE_DOC` under
``residual_score``). For one endpoint, with ``x`` the last ``W`` values of the
metric (after the fill policy, ``inputs.fill_policy``) and ``y`` the newest
observation, the sample right after the window::

    ŷ     = model(x)                         # ONNX model, metric units
    level = mean(x)
    denom = relative_rms * max(|level|, level_floor)
    sign  = +1 if inputs.higher_is_worse else -1
    raw   = max(0, sign * (y - ŷ)) / denom   # scaler.one_sided == "upper"
    score = Calibration.from_dict(manifest["calibration"]).transform(raw)   # in [0, 1]

with ``relative_rms = sqrt(mean(((y - ŷ) / max(|level|, level_floor))²))`` over the
normal validation windows (two-sided, so a raw score of 1 is "one typical
relative error in the faulty direction"), ``level_floor = max(0.05 *
median(|level|), 1e-6)`` over the same windows (in metric units; it keeps metrics
that sit near zero from dividing by ~0). ``one_sided = "upper"``: only errors in
the faulty direction count, and the direction comes from the metric's
:class:`~ocad.core.MetricSpec`, recorded as ``inputs.higher_is_worse`` (delays:
a rise is a fault, ``sign = +1``; success ratios: a drop is, ``sign = -1``). The
calibration table is fitted on ``raw`` of the normal validation windows, so a
calibrated score of 0.999 is exceeded by about one normal sample in a thousand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ocad.core.plugins import Calibration

__all__ = ["RESIDUAL_SCORE_DOC", "fit_residual_calibration", "fit_residual_scaler", "residual_raw_scores"]

RESIDUAL_SCORE_DOC = (
    "x = last W values (fill_policy applied), y = newest observation after x; yhat = model(x); "
    "level = mean(x); raw = max(0, sign*(y - yhat)) / (scaler.relative_rms * max(|level|, scaler.level_floor)), "
    "sign = +1 if inputs.higher_is_worse else -1 (scaler.one_sided = 'upper': only the faulty direction); "
    "score = calibration.transform(raw) in [0, 1]. "
    "relative_rms = sqrt(mean(((y - yhat)/max(|level|, level_floor))^2)) and the calibration table were "
    "fitted on normal validation windows; level_floor = max(0.05*median|level|, 1e-6) in metric units."
)

LEVEL_FLOOR_FRACTION = 0.05
LEVEL_FLOOR_MIN = 1e-6


def fit_residual_scaler(x: np.ndarray, y: np.ndarray, yhat: np.ndarray) -> dict[str, Any]:
    """The manifest's ``scaler`` for residual scores, fitted on normal validation windows."""
    level = np.abs(np.asarray(x, np.float64).mean(axis=1))
    floor = max(LEVEL_FLOOR_FRACTION * float(np.median(level)), LEVEL_FLOOR_MIN) if level.size else LEVEL_FLOOR_MIN
    rel = (np.asarray(y, np.float64) - np.asarray(yhat, np.float64)) / np.maximum(level, floor)
    rel = rel[np.isfinite(rel)]
    rms = float(np.sqrt(np.mean(rel ** 2))) if rel.size else 1.0
    return {"type": "residual", "relative_rms": max(rms, 1e-12), "level_floor": floor, "one_sided": "upper"}


def residual_raw_scores(x: np.ndarray, y: np.ndarray, yhat: np.ndarray, scaler: Mapping[str, Any], *,
                        higher_is_worse: bool = True) -> np.ndarray:
    """Raw residual scores ``(N,)`` (float64; NaN where ``y`` or ``ŷ`` is NaN), see module docs.

    This is the reference the runtime detector must match.
    """
    level = np.abs(np.asarray(x, np.float64).mean(axis=1))
    sign = 1.0 if higher_is_worse else -1.0
    d = sign * (np.asarray(y, np.float64) - np.asarray(yhat, np.float64))
    if scaler.get("one_sided", "upper") == "upper":
        d = np.maximum(d, 0.0)
    else:  # two-sided
        d = np.abs(d)
    denom = float(scaler["relative_rms"]) * np.maximum(level, float(scaler["level_floor"]))
    return d / denom


def fit_residual_calibration(x: np.ndarray, y: np.ndarray, yhat: np.ndarray, *,
                             higher_is_worse: bool = True) -> tuple[dict[str, Any], Calibration]:
    """``(scaler, calibration)`` on normal validation windows."""
    scaler = fit_residual_scaler(x, y, yhat)
    return scaler, Calibration.fit(residual_raw_scores(x, y, yhat, scaler, higher_is_worse=higher_is_worse))
