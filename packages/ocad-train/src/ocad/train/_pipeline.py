"""Orchestration of a whole training run: data → forecasters → multivariate model → store.

:func:`train_all` is what ``ocad train`` and ``python -m ocad.train.build_defaults``
run. It loads (or simulates) the data once, trains one forecaster per metric
(:func:`ocad.train.train_forecasters`) and, when ``[multivariate] enabled = true``,
the multivariate Isolation Forest.

Contract with the Isolation Forest trainer (``ocad.train._iforest``)
--------------------------------------------------------------------
The import is lazy (``from ._iforest import train_iforest`` only when enabled);
if the module or the function does not exist, a warning is logged and the
forecasters are still returned. Two signatures are understood: the
feature-matrix one ``train_iforest(features_train, features_val, feature_names,
*, config, out_dir, labels_val, seed)`` (the pipeline builds the features with
``_iforest.feature_matrix_from_fleet`` on the forecasters' chronological split and
publishes into the store; ``[multivariate]`` keys other than ``enabled`` go to
``config``; ``window`` defaults to 32, the Monitor's, ``stride`` to 4), or the
table one, called as::

    train_iforest(table, metrics, config, store) -> LoadedArtifact

``table``
    The :class:`ocad.train.SeriesTable` (per-endpoint ``ts``, ``values``,
    ``labels``: 0 = normal; a fleet's recovery margins are already non-zero).
``metrics``
    ``[multivariate] metrics`` if given, else every metric of the data.
``config``
    The whole config as a plain dict (:meth:`TrainConfig.to_dict`): the
    ``multivariate`` table holds the forest's options; ``train.seed``,
    ``forecaster.fractions`` / ``window`` are there for consistent splits.
``store``
    The :class:`ocad.core.artifacts.ModelStore` to publish into
    (:func:`ocad.train.publish_artifact`).
"""

from __future__ import annotations

import inspect
import logging
import os
from collections.abc import Sequence
from typing import Any

from ocad.core import OcadConfigError
from ocad.core.artifacts import LoadedArtifact, ModelStore

from ._config import DataConfig, TrainConfig, load_config
from ._data import SeriesTable, as_table, from_fleet

__all__ = ["load_training_data", "simulate_table", "train_all"]

log = logging.getLogger("ocad.train")


def simulate_table(data: DataConfig) -> SeriesTable:
    """A synthetic fleet from ocad-core's generator, as a table."""
    try:
        from ocad.core.tooling import generate_fleet
    except ImportError as exc:  # pragma: no cover - only with an ocad-core without the generator
        raise OcadConfigError("--simulate needs ocad-core's synthetic fleet generator (ocad.core.tooling.generate_fleet)") \
            from exc
    fleet = generate_fleet(n_endpoints=int(data.endpoints), duration_s=float(data.hours) * 3600.0,
                           interval_s=float(data.interval_s), seed=int(data.seed), faults=data.faults)
    return from_fleet(fleet, source=f"simulate:endpoints={data.endpoints},hours={data.hours},"
                                    f"interval_s={data.interval_s},seed={data.seed},faults={data.faults}")


def load_training_data(config: TrainConfig) -> SeriesTable:
    """The table described by ``[data]``: a file, or a simulated fleet."""
    if config.data.file:
        return as_table(config.data.file)
    if config.data.simulate:
        return simulate_table(config.data)
    raise OcadConfigError("no training data: set [data] file = ... or simulate = true (--data / --simulate)")


def train_all(config: Any, out_dir: str | os.PathLike[str] | ModelStore | None = None, *,
              data: Any = None, resume: bool = False, progress: bool = True, tune_trials: int | None = None,
              tracker: Any = None, promote: bool = False, init_from: str | None = None) -> list[LoadedArtifact]:
    """Train every model the config asks for and publish them into the store at ``out_dir``.

    Parameters
    ----------
    config:
        :class:`TrainConfig`, mapping, TOML path or ``None``.
    out_dir:
        Model store root (required).
    data:
        Use this table / fleet / file instead of ``[data]``.
    promote:
        Make every new version active at once, without the quality gate (default:
        candidates; ``ocad models promote`` / ``ocad retrain`` run the gate).
    init_from:
        ``"active"``: warm-start the forecasters from the active versions.
    """
    cfg = load_config(config)
    if out_dir is None:
        raise OcadConfigError("train_all needs out_dir (the model store to write)")
    store = out_dir if isinstance(out_dir, ModelStore) else ModelStore(out_dir)
    store.init()
    table = as_table(data) if data is not None else load_training_data(cfg)
    out: list[LoadedArtifact] = []
    if cfg.metrics:
        from ._forecaster import train_forecasters

        out += train_forecasters(table, cfg.metrics, cfg, store, resume=resume, progress=progress,
                                 tune_trials=tune_trials, tracker=tracker, promote=promote,
                                 init_from=init_from)
    if cfg.multivariate.get("enabled", False):
        trials = cfg.tune.get("trials", 0) if tune_trials is None else tune_trials
        art = _train_multivariate(table, cfg, store, promote=promote, tune_trials=int(trials or 0))
        if art is not None:
            out.append(art)
    if not out:
        raise OcadConfigError("nothing to train: no [train] metrics and [multivariate] is not enabled")
    return out


def _train_multivariate(table: SeriesTable, cfg: TrainConfig, store: ModelStore, *,
                        promote: bool = False, tune_trials: int = 0) -> LoadedArtifact | None:
    try:
        from ._iforest import train_iforest  # type: ignore[attr-defined]
    except ImportError as exc:
        log.warning("multivariate model skipped: ocad.train._iforest.train_iforest is not available (%s)", exc)
        return None
    metrics: Sequence[str] = cfg.multivariate.get("metrics") or table.metrics
    log.info("training the multivariate model on %s", list(metrics))
    params = list(inspect.signature(train_iforest).parameters)
    if params and params[0] == "features_train":
        tuned: dict[str, Any] = {}
        art = _train_iforest_on_features(train_iforest, table, list(metrics), cfg, store, tune_trials=tune_trials,
                                         tuned=tuned)
        return None if art is None else register_version(store, art, promote=promote, table=table,
                                                         tuning=tuned or None)
    art = train_iforest(table, list(metrics), cfg.to_dict(), store)
    return None if art is None else register_version(store, art, promote=promote, table=table)


def register_version(store: ModelStore, art: LoadedArtifact, *, promote: bool = False,
                     table: Any = None, tuning: Any = None) -> LoadedArtifact:
    """A version written straight into the store becomes a candidate (or active with ``promote``).

    If an older version has the same data fingerprint and metrics, the new one is
    discarded (it was never visible as active) and the older one is returned.
    Writes its ``performance_report.json``.
    """
    from ._perf import write_report

    same = store.same_as(art.name, art.manifest, exclude=art.version)
    if same is not None:
        from ._manifest import duplicate_note

        store.discard(art.name, art.version)
        store.record(art.name, "duplicate", same, note=duplicate_note(same))
        art = store.load(art.name, same)
    elif not promote:
        store.record(art.name, "candidate", art.version)
    if promote:
        store.promote(art.name, art.version)
    write_report(store, art, table=table, tuning=tuning)
    return art


#: Default window of the multivariate features: ocad-core's Monitor window.
MULTIVARIATE_WINDOW = 32
MULTIVARIATE_STRIDE = 4


def _train_iforest_on_features(train_iforest: Any, table: SeriesTable, metrics: list[str], cfg: TrainConfig,
                               store: ModelStore, *, tune_trials: int = 0,
                               tuned: dict[str, Any] | None = None) -> LoadedArtifact | None:
    """Adapter for ``train_iforest(features_train, features_val, feature_names, *, config, out_dir, ...)``.

    Builds the runtime's window features (``_iforest.feature_matrix_from_fleet`` with
    ocad-core's FeatureEngine) on the chronological train / validation parts of
    the same split the forecasters use (:func:`split_boundaries`, gap = window),
    keeps normal rows for training, passes the labels for validation and writes the
    next store version (:func:`register_version` makes it a candidate).
    """
    from types import SimpleNamespace

    import numpy as np

    from ocad.core.pipeline import FeatureEngine

    from . import _iforest
    from ._config import resolve_metric_specs
    from ._datasets import split_boundaries

    ts0 = table.ts[0]
    if any(t.shape != ts0.shape or not np.array_equal(t, ts0) for t in table.ts):
        log.warning("multivariate model skipped: it needs every endpoint sampled at the same timestamps")
        return None
    mv = {k: v for k, v in cfg.multivariate.items() if k not in ("enabled", "metrics")}
    window = int(mv.pop("window", MULTIVARIATE_WINDOW))
    stride = int(mv.pop("stride", MULTIVARIATE_STRIDE))
    specs = resolve_metric_specs(metrics, cfg.metric_specs)
    fe_params = dict(mv.pop("feature_engine", {}))
    fe_params.pop("metrics", None)
    engine = FeatureEngine([specs[m] for m in metrics], **fe_params)
    sub = table.select(metrics)
    labels = (np.stack(sub.labels) if sub.labels is not None
              else np.zeros((sub.n_endpoints, ts0.shape[0]), np.int8))
    fleet = SimpleNamespace(values=np.stack(sub.values), ts=ts0, metrics=list(metrics), labels=labels)
    x, names, lab, _, t_end = _iforest.feature_matrix_from_fleet(fleet, engine, window, stride)
    sp = split_boundaries(ts0.shape[0], window, cfg.forecaster.fractions)
    start = t_end - window + 1

    def rows(part: tuple[int, int]) -> Any:
        return (start >= part[0]) & (t_end < part[1])

    train = rows(sp.train) & (lab == 0)
    val = rows(sp.validation)
    if tune_trials:
        from ._tune import tune_iforest

        res = tune_iforest(x[train], x[val], lab[val], mv, tune_trials, seed=cfg.seed,
                           timeout_s=cfg.tune.get("timeout_s"))
        if res is not None:
            mv.update(res["best_params"])
            if tuned is not None:
                tuned.update(res)
    name = getattr(_iforest, "ARTIFACT_NAME", "iforest-multivariate")
    version = cfg.version if cfg.version and cfg.version not in store.versions(name) else store.next_version(name)
    config = {**mv, "version": version, "window": window, "stride": stride,
              "feature_engine": _iforest.feature_engine_params(engine), "metrics": list(metrics)}
    art: LoadedArtifact = train_iforest(x[train], x[val], names, config=config,
                                        out_dir=store.version_dir(name, version), labels_val=lab[val],
                                        seed=cfg.seed)
    return art
