"""Per-metric forecaster pipeline: datasets → TCN → evaluation → ONNX → parity → calibration → store.

:func:`train_forecasters` is the Python API behind ``ocad train``. For each
metric it writes one artifact ``tcn-<metric>`` (kind ``"forecaster"``, format
``"onnx"``) as a new *candidate* version of a :class:`~ocad.core.artifacts.ModelStore`
(promoted at once only with ``promote=True``; the quality gate is ``ocad models
promote``), and its ``performance_report.json`` (:mod:`ocad.train._perf`). A run
with the data fingerprint and metrics of an existing version adds no version.
Scratch files (checkpoints for ``resume``, the Parquet datasets) go to a work
directory, by default ``<store>/.work/tcn-<metric>/``.

Manifest fields (besides ``schema_version``, ``created`` and ``files``, which
:func:`ocad.core.artifacts.write_artifact` fills in):

``name, kind, version, format``
    ``"tcn-<metric>"``, ``"forecaster"``, semver from the store, ``"onnx"``.
``inputs``
    ``metrics [metric]``, ``units {metric: unit}``, ``window W``, ``dtype "float32"``,
    ``input_name``, ``output_name``, ``input_shape ["batch", W]``,
    ``output_shape ["batch", 1]``, ``fill_policy`` (see :mod:`ocad.train._datasets`),
    ``higher_is_worse`` (the residual score's direction).
``scaler, calibration, residual_score``
    See :mod:`ocad.train._residual` for the exact score formula.
``parity``
    ``{max_abs_diff, n, tol, rule, scale_median, max_diff_over_allowed}`` of ONNX vs torch on
    held-out test windows; input ``i`` may differ by ``tol * max(1, mean |x_i|)`` (:mod:`ocad.train._export`).
    ``last_step``: the shipped graph computes only the forecast it returns
    (:mod:`ocad.train._last_step`); its relative difference to the full graph and
    to the torch model on the same windows (``max_rel_diff_full_graph``,
    ``max_rel_diff_torch``, must be <= ``rtol`` = 1e-5).
``metrics``
    ``test`` and ``validation``: ``mse, mae, rmse, r2`` and ``naive_*`` of the
    last-value forecast, ``n``; ``beats_naive`` (test MAE < naive MAE).
``training_data``
    ``fingerprint`` (sha256 of training arrays + config), ``n_endpoints``,
    ``n_samples`` (training windows), ``n_rows`` (rows in the source), ``source``.
``hyperparameters, seed, library_versions, model, metric_spec``
    The forecaster config (+ best epoch, epochs run, tuning result), the seed,
    versions of ocad-core / ocad-train / torch / onnx / onnxruntime / numpy,
    a description of the architecture, the metric's spec (direction, range).
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ocad.core import MetricSpec, OcadError
from ocad.core.artifacts import LoadedArtifact, ModelStore

from ._config import ForecasterConfig, TrainConfig, load_config, resolve_metric_specs
from ._data import SeriesTable, as_table
from ._datasets import SequenceDataset, build_sequence_datasets, fill_policy, write_sequence_dataset
from ._manifest import data_fingerprint, library_versions, publish_artifact
from ._residual import RESIDUAL_SCORE_DOC, fit_residual_calibration

__all__ = ["ForecasterRun", "parity_inputs", "train_forecaster", "train_forecasters"]

log = logging.getLogger("ocad.train")

INPUT_NAME = "x"
OUTPUT_NAME = "y"
#: Usable windows a forecaster needs per part of the chronological split (tuning derives its
#: window bounds from the same numbers, ``ocad.train._tune.feasible_windows``). Validation: 100,
#: the floor of ``Calibration.fit`` (the residual score's quantile table is fitted there).
#: Train: 100 one-step targets; with fewer, early stopping on 100 validation windows cannot
#: tell learning from memorising. Test: 30, enough to compare the model's MAE with the
#: naive forecast's (``beats_naive``); the parity check adds inputs of its own.
MIN_WINDOWS = {"train": 100, "validation": 100, "test": 30}


@attrs.frozen
class ForecasterRun:
    """What training one metric produced (the artifact plus timings)."""

    artifact: LoadedArtifact
    seconds: float
    fit_seconds: float


def parity_inputs(x: np.ndarray, n: int, seed: int) -> np.ndarray:
    """At least ``n`` held-out windows for the parity check.

    The test windows themselves, then (only when there are fewer than ``n``)
    copies with a random level shift and scale (seeded) so that the check still
    covers ``n`` distinct inputs in the same value range.
    """
    x = np.asarray(x, np.float32)
    if x.shape[0] >= n or x.shape[0] == 0:
        return x
    rng = np.random.default_rng(seed)
    reps = [x]
    have = x.shape[0]
    while have < n:
        k = min(x.shape[0], n - have)
        base = x[rng.integers(0, x.shape[0], k)]
        scale = rng.uniform(0.5, 2.0, (k, 1)).astype(np.float32)
        noise = rng.normal(0.0, 0.01, base.shape).astype(np.float32) * np.abs(base).mean(axis=1, keepdims=True)
        reps.append(base * scale + noise)
        have += k
    return np.concatenate(reps)


def _finite_or_none(v: float) -> float | None:
    return v if math.isfinite(v) else None


def _spec_dict(spec: MetricSpec) -> dict[str, Any]:
    d = spec.to_dict()
    d["low"], d["high"] = _finite_or_none(spec.low), _finite_or_none(spec.high)
    return d


def train_forecaster(table: SeriesTable, metric: str, config: ForecasterConfig, store: ModelStore, *,
                     seed: int = 0, spec: MetricSpec | None = None, work_dir: str | os.PathLike[str] | None = None,
                     resume: bool = False, progress: bool = True, version: str | None = None,
                     tuned: Mapping[str, Any] | None = None, tracker: Any = None, promote: bool = False,
                     init_from: LoadedArtifact | None = None) -> ForecasterRun:
    """Train, export, check and publish the forecaster of one metric (see module docs)."""
    from ._export import check_parity, export_tcn_onnx, onnx_initializer_digest, ort_session, window_scale
    from ._last_step import check_last_step, tcn_flops
    from ._tcn import evaluate_forecast, fit_tcn, predict

    t0 = time.perf_counter()
    spec = spec or MetricSpec(metric)
    name = f"tcn-{metric}"
    work = Path(work_dir) if work_dir is not None else store.root / ".work" / name
    caps = {"train": config.max_train_windows, "validation": config.max_eval_windows,
            "test": config.max_eval_windows}
    ds = build_sequence_datasets(table, metric, config.window, fractions=config.fractions, gap=config.gap,
                                 fill_limit=config.fill_limit, max_windows=caps, seed=seed)
    train, val, test = ds["train"], ds["validation"], ds["test"]
    log.info("%s: %d train / %d validation / %d test windows from %d endpoints", name, len(train), len(val),
             len(test), len(set(train.endpoint.tolist())))
    for part in (train, val, test):
        need = MIN_WINDOWS[part.split]
        if len(part) < need:
            raise OcadError(
                f"metric {metric!r}: only {len(part)} usable {part.split} windows (need >= {need}); "
                f"give more data (longer series / more endpoints) or a smaller window than {config.window}")
    if config.save_datasets:
        for part in (train, val, test):
            write_sequence_dataset(part, work / f"{part.split}.parquet")
    tcfg = config.tcn(seed)
    init_state = None
    if init_from is not None:
        from ._warm import onnx_state

        init_state = onnx_state(init_from)
        log.info("%s: warm start from %s@%s", name, init_from.name, init_from.version)
    fit = fit_tcn(train, val, tcfg, checkpoint_dir=work, resume=resume, progress=progress, desc=name,
                  on_epoch=None if tracker is None else (lambda rec: tracker.log_epoch(name, rec)),
                  init_state=init_state)
    with tempfile.TemporaryDirectory(prefix="ocad-export-") as tmp:
        onnx_path = export_tcn_onnx(
            fit.model, config.window, Path(tmp) / "model.onnx", input_name=INPUT_NAME, output_name=OUTPUT_NAME,
            doc=f"OCAD TCN forecaster of {metric}: x (batch, {config.window}) float32 -> next value (batch, 1)",
            metadata={"ocad.name": name, "ocad.metric": metric})
        px = parity_inputs(test.x, config.parity_n, seed)
        # The forecast is in metric units: the tolerance scales with each window's level.
        parity = check_parity(lambda b: predict(fit.model, b), onnx_path, px, tol=config.parity_tol,
                              input_name=INPUT_NAME, scale=window_scale(px))
        parity["last_step"] = check_last_step(fit.model, onnx_path, px, input_name=INPUT_NAME)
        log.info("%s: ONNX parity max |diff| = %.3g over %d inputs", name, parity["max_abs_diff"], parity["n"])
        sess = ort_session(onnx_path, threads=config.threads)

        def onnx_predict(d: SequenceDataset) -> np.ndarray:
            out = [sess.run([OUTPUT_NAME], {INPUT_NAME: d.x[i:i + 8192]})[0][:, 0] for i in range(0, len(d), 8192)]
            return np.concatenate(out).astype(np.float32)

        # Metrics and calibration from the exported model: it is what the runtime runs.
        yhat_val, yhat_test = onnx_predict(val), onnx_predict(test)
        m_val = evaluate_forecast(val.y, yhat_val, val.naive)
        m_test = evaluate_forecast(test.y, yhat_test, test.naive)
        scaler, cal = fit_residual_calibration(val.x, val.y, yhat_val, higher_is_worse=spec.higher_is_worse)
        beats = bool(m_test["mae"] < m_test["naive_mae"])
        log.info("%s: test MAE %.5g vs naive %.5g (%s), R2 %.3f vs %.3f", name, m_test["mae"],
                 m_test["naive_mae"], "beats naive" if beats else "DOES NOT beat naive", m_test["r2"],
                 m_test["naive_r2"])
        if not beats:
            log.warning("%s: the forecaster does not beat the naive last-value forecast on test data "
                        "(MAE %.5g >= %.5g); more epochs / data may help", name, m_test["mae"], m_test["naive_mae"])
        hyper = {**config.to_dict(), "seed": seed, "best_epoch": fit.best_epoch, "epochs_run": fit.epochs_run,
                 "history": [dict(h) for h in fit.history]}
        if tuned:
            hyper["tuning"] = dict(tuned)
        if init_from is not None:
            hyper["init_from"] = f"{init_from.name}@{init_from.version}"
        fp_config = {k: v for k, v in hyper.items() if k not in ("best_epoch", "epochs_run", "history")}
        manifest: dict[str, Any] = {
            "name": name,
            "kind": "forecaster",
            "format": "onnx",
            "description": f"TCN one-step forecaster of {metric}; residual score for the ResidualDetector",
            "inputs": {
                "metrics": [metric], "units": {metric: spec.unit}, "window": config.window, "dtype": "float32",
                "input_name": INPUT_NAME, "output_name": OUTPUT_NAME, "input_shape": ["batch", config.window],
                "output_shape": ["batch", 1], "fill_policy": fill_policy(config.fill_limit),
                "higher_is_worse": bool(spec.higher_is_worse),
            },
            "metric_spec": _spec_dict(spec),
            "model": {
                "architecture": "tcn", "receptive_field": tcfg.receptive_field, "horizon": 1,
                "graph": "last_step: only the returned forecast step is computed (ocad.train._last_step)",
                "multiply_adds": tcn_flops(config.window, config.hidden, config.levels, config.kernel_size,
                                           last_step=True),
                "normalisation": "inside the model, per window: m = mean(x), s = max(std(x), 1e-3*|m| + 1e-6); "
                                 "y = m + s * net((x - m) / s)",
                "onnx_initializer_sha256": onnx_initializer_digest(onnx_path),
            },
            "scaler": scaler,
            "calibration": cal.to_dict(),
            "residual_score": RESIDUAL_SCORE_DOC,
            "parity": parity,
            "metrics": {"test": m_test, "validation": m_val, "beats_naive": beats,
                        "evaluated_on": "normal windows of the chronological test / validation split"},
            "training_data": {
                "fingerprint": data_fingerprint([train.x, train.y], {"metric": metric, **fp_config}),
                "n_endpoints": int(len(np.unique(train.endpoint))),
                "n_samples": len(train),
                "n_rows": table.n_samples,
                "source": table.source,
            },
            "hyperparameters": hyper,
            "library_versions": library_versions(),
            "seed": seed,
        }
        art = publish_artifact(store, manifest, {"model": ("model.onnx", onnx_path)}, version=version,
                               promote=promote)
    secs = time.perf_counter() - t0
    log.info("%s: wrote %s@%s in %.1fs (fit %.1fs)", name, art.name, art.version, secs, fit.seconds)
    if tracker is not None:
        tracker.log_artifact(art, seconds=secs)
    return ForecasterRun(artifact=art, seconds=secs, fit_seconds=fit.seconds)


def train_forecasters(data: Any, metrics: Sequence[str] | str, config: Any = None,
                      out_dir: str | os.PathLike[str] | ModelStore = "models", *, resume: bool = False,
                      progress: bool = True, tune_trials: int | None = None, tracker: Any = None,
                      work_dir: str | os.PathLike[str] | None = None, promote: bool = False,
                      init_from: str | None = None, report: bool = True) -> list[LoadedArtifact]:
    """Train one TCN forecaster per metric and publish each into the model store ``out_dir``.

    Parameters
    ----------
    data:
        A :class:`SeriesTable`, a synthetic fleet, or a CSV / Parquet path (wide or long).
    metrics:
        Metric names (or ``"a,b,c"``); any column of the data, built-in or the user's own.
    config:
        A :class:`TrainConfig`, a mapping in the TOML layout, a TOML path, or
        ``None`` for the defaults. Its ``[forecaster]`` table and ``[train] seed``
        are used here; ``[metrics.<name>]`` tables give units / direction.
    out_dir:
        Model store root (created if needed). Each run adds a new candidate
        version per metric (none when an existing version has the same data
        fingerprint and metrics); ``promote=True`` makes it active at once,
        without the quality gate (``ocad models promote`` runs the gate).
    init_from:
        ``"active"``: warm-start each metric from its active version's weights
        (its architecture; no tuning); metrics without an active version train
        from scratch.
    report:
        Write each version's ``performance_report.json`` (with the comparison
        against the active version on the same held-out split).
    resume:
        Continue interrupted trainings from their checkpoints (``<work_dir>/tcn-<metric>/last.pt``).
    tune_trials:
        Run an Optuna study with this many trials per metric first (default:
        ``[tune] trials``; 0 = off). Needs the ``tune`` extra.

    Returns
    -------
    list[LoadedArtifact]
        The published, verified artifacts, one per metric, in order.

    Example::

        arts = train_forecasters("my.csv", ["my_kpi"], {"forecaster": {"epochs": 3}}, "models/")
        arts[0].manifest["metrics"]["test"]["mae"]
    """
    from tqdm.auto import tqdm

    cfg: TrainConfig = load_config(config)
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    metrics = list(metrics) or list(cfg.metrics)
    if not metrics:
        raise OcadError("no metrics to train: pass metrics (e.g. --metrics a,b) or set [train] metrics")
    table = as_table(data, metrics=metrics)
    store = out_dir if isinstance(out_dir, ModelStore) else ModelStore(out_dir)
    store.init()
    specs = resolve_metric_specs(metrics, cfg.metric_specs)
    trials = cfg.tune.get("trials", 0) if tune_trials is None else tune_trials
    if init_from not in (None, "active"):
        raise OcadError(f"init_from={init_from!r}: only 'active' (the active version's weights) is supported")
    if init_from and trials:
        raise OcadError("warm start (--init-from) keeps the active version's architecture; it cannot be "
                        "combined with tuning (--tune)")
    out: list[LoadedArtifact] = []
    for metric in tqdm(metrics, desc="forecasters", unit="metric", disable=not progress or len(metrics) < 2):
        fcfg = cfg.forecaster
        tuned = None
        warm = None
        if init_from and store.active(f"tcn-{metric}") is not None:
            from ._warm import architecture

            warm = store.load(f"tcn-{metric}")
            fcfg = attrs.evolve(fcfg, **architecture(warm))
        elif init_from:
            log.warning("tcn-%s: no active version to warm-start from; training from scratch", metric)
        if trials:
            from ._tune import tune_forecaster

            result = tune_forecaster(table, metric, fcfg, int(trials), seed=cfg.seed,
                                     epochs=int(cfg.tune.get("epochs", 3)),
                                     timeout_s=cfg.tune.get("timeout_s"), progress=progress)
            fcfg = attrs.evolve(fcfg, **result["best_params"])
            tuned = result
        run = train_forecaster(
            table, metric, fcfg, store, seed=cfg.seed, spec=specs[metric],
            work_dir=None if work_dir is None else Path(work_dir) / f"tcn-{metric}", resume=resume,
            progress=progress, version=cfg.version, tuned=tuned, tracker=tracker, promote=promote,
            init_from=warm)
        if report:
            from ._perf import write_report

            write_report(store, run.artifact, table=table)
        out.append(run.artifact)
    return out
