"""OCAD training: datasets, TCN forecasters, ONNX export with parity checks, model store.

Offline and reproducible: same data, config and seed give the same ONNX weights.
The public names below are imported lazily (PEP 562), so ``import ocad.train``
(and the ``ocad`` CLI plugin that lives here) does not import torch or pandas
until a name that needs them is used.

>>> import ocad.train
>>> ocad.train.split_boundaries(100, 5).train
(0, 54)

Main entry points: :func:`train_forecasters` (one forecaster per metric),
:func:`train_all` (everything a config asks for), :func:`load_table` /
:func:`from_fleet` (data in), :func:`check_parity` (ONNX vs reference, for any
exporter), :func:`publish_artifact` (atomic write into a model store).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

try:  # the version lives in pyproject.toml only
    from importlib import metadata as _metadata

    __version__ = _metadata.version("ocad-train")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS: dict[str, str] = {
    "DATASET_SCHEMA_VERSION": "_datasets",
    "LABEL_COLUMN": "_data",
    "IFOREST_SEARCH_SPACE": "_tune",
    "LAST_STEP_RTOL": "_last_step",
    "SEARCH_SPACE": "_tune",
    "SPLITS": "_datasets",
    "simulate_table": "_pipeline",
    "DataConfig": "_config",
    "FILL_POLICY": "_datasets",
    "FitResult": "_tcn",
    "ForecasterConfig": "_config",
    "ForecasterRun": "_forecaster",
    "MlflowTracker": "_tracking",
    "ONNX_IR_VERSION": "_export",
    "ONNX_OPSET": "_export",
    "ParityError": "_export",
    "RESIDUAL_SCORE_DOC": "_residual",
    "SequenceDataset": "_datasets",
    "SeriesTable": "_data",
    "Split": "_datasets",
    "TCNConfig": "_tcn",
    "TCNForecaster": "_tcn",
    "TrainConfig": "_config",
    "as_table": "_data",
    "build_sequence_datasets": "_datasets",
    "check_last_step": "_last_step",
    "check_parity": "_export",
    "data_fingerprint": "_manifest",
    "evaluate_forecast": "_tcn",
    "export_tcn_onnx": "_export",
    "fill_policy": "_datasets",
    "finalize_onnx": "_export",
    "fit_residual_calibration": "_residual",
    "fit_residual_scaler": "_residual",
    "fit_tcn": "_tcn",
    "forward_fill": "_datasets",
    "from_fleet": "_data",
    "library_versions": "_manifest",
    "last_step_plan": "_last_step",
    "load_checkpoint_model": "_tcn",
    "load_config": "_config",
    "load_table": "_data",
    "load_training_data": "_pipeline",
    "onnx_initializer_digest": "_export",
    "ort_session": "_export",
    "parity_inputs": "_forecaster",
    "predict": "_tcn",
    "publish_artifact": "_manifest",
    "read_sequence_dataset": "_datasets",
    "regression_metrics": "_tcn",
    "require_extra": "_errors",
    "residual_raw_scores": "_residual",
    "resolve_metric_specs": "_config",
    "split_boundaries": "_datasets",
    "table_from_frame": "_data",
    "train_all": "_pipeline",
    "FitDecision": "_pipeline",
    "TrainResult": "_pipeline",
    "window_scale": "_export",
    "train_forecaster": "_forecaster",
    "train_forecasters": "_forecaster",
    "feasible_windows": "_tune",
    "tcn_flops": "_last_step",
    "tune_forecaster": "_tune",
    "tune_iforest": "_tune",
    "window_spans": "_datasets",
    "window_targets": "_datasets",
    "write_sequence_dataset": "_datasets",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from ._config import DataConfig, ForecasterConfig, TrainConfig, load_config, resolve_metric_specs
    from ._data import LABEL_COLUMN, SeriesTable, as_table, from_fleet, load_table, table_from_frame
    from ._datasets import (
        DATASET_SCHEMA_VERSION,
        FILL_POLICY,
        SPLITS,
        SequenceDataset,
        Split,
        build_sequence_datasets,
        fill_policy,
        forward_fill,
        read_sequence_dataset,
        split_boundaries,
        window_spans,
        window_targets,
        write_sequence_dataset,
    )
    from ._errors import require_extra
    from ._export import (
        ONNX_IR_VERSION,
        ONNX_OPSET,
        ParityError,
        check_parity,
        export_tcn_onnx,
        finalize_onnx,
        onnx_initializer_digest,
        ort_session,
        window_scale,
    )
    from ._forecaster import ForecasterRun, parity_inputs, train_forecaster, train_forecasters
    from ._last_step import LAST_STEP_RTOL, check_last_step, last_step_plan, tcn_flops
    from ._manifest import data_fingerprint, library_versions, publish_artifact
    from ._pipeline import FitDecision, TrainResult, load_training_data, simulate_table, train_all
    from ._residual import RESIDUAL_SCORE_DOC, fit_residual_calibration, fit_residual_scaler, residual_raw_scores
    from ._tcn import (
        FitResult,
        TCNConfig,
        TCNForecaster,
        evaluate_forecast,
        fit_tcn,
        load_checkpoint_model,
        predict,
        regression_metrics,
    )
    from ._tracking import MlflowTracker
    from ._tune import IFOREST_SEARCH_SPACE, SEARCH_SPACE, feasible_windows, tune_forecaster, tune_iforest


def __getattr__(name: str) -> Any:
    mod = _EXPORTS.get(name)
    if mod is None:
        raise AttributeError(f"module 'ocad.train' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{mod}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
