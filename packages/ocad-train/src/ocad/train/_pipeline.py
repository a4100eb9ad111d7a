"""Orchestration of a whole training run: data → what the data supports → store.

:func:`train_all` is what ``ocad train`` and ``python -m ocad.train.build_defaults``
run. It loads (or simulates) the data once and then fits, for any data of at least
200 samples of one series (any sampling interval, one series or a fleet, one
metric or many), what the data supports — and says what it skipped and why:

``core-calibration`` (always, ``[train] core_calibration = true``)
    :meth:`ocad.core.Monitor.calibrate` of the core detectors (spike, changepoint,
    ...) on the normal samples, with the data's metrics registered as user
    metrics; published as an artifact of kind ``core-calibration`` (a JSON
    calibration document, hashed like every artifact file) that
    ``Monitor.from_model_dir`` applies through the detectors' ``load_params``.
    Views are taken every tick for short data (every 2nd / 3rd for long data), so
    200 samples of one series give the >= 100 scores a calibration table needs.
``tcn-<metric>`` (one per ``--metrics`` metric)
    Only where the chronological split holds enough windows (:data:`FORECASTER_MIN_WINDOWS`):
    the configured window and fractions first; for a short series a shorter window
    (down to 8) and :data:`SHORT_FRACTIONS`; otherwise skipped, naming the numbers.
``iforest-multivariate`` (``[multivariate] enabled``: ``"auto"`` by default)
    Only with >= 2 metrics, every endpoint on one time grid and enough feature rows
    (:data:`MULTIVARIATE_MIN_ROWS`); short data use stride 1 and the short split.

Every version a run writes is a *candidate* (``promote=True``: active at once,
without the quality gate; ``ocad models promote`` / ``ocad retrain`` run the gate),
gets its ``performance_report.json`` (:mod:`ocad.train._perf`), and is not written
at all when an existing version has the same data fingerprint and metrics.

Each decision is a :class:`FitDecision`; :func:`train_all` returns a
:class:`TrainResult` (a sequence of the published artifacts with ``decisions``),
writes the decisions into the ``core-calibration`` manifest (``training_run``) and
into ``<store>/train_report.json``, and ``ocad train`` prints them.

Contract with the Isolation Forest trainer (``ocad.train._iforest``)
--------------------------------------------------------------------
The import is lazy (``from ._iforest import train_iforest`` only when enabled);
if the module or the function does not exist, the model is skipped (and said so)
and the forecasters are still returned. Two signatures are understood: the
feature-matrix one ``train_iforest(features_train, features_val, feature_names,
*, config, out_dir, labels_val, seed)`` (the pipeline builds the features with
``_iforest.feature_matrix_from_fleet`` on a chronological split and
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
import json
import logging
import os
import time
from collections.abc import Iterator, Sequence
from typing import Any

import attrs
import numpy as np

from ocad.core import OcadConfigError, OcadError
from ocad.core.artifacts import LoadedArtifact, ModelStore

from ._config import DataConfig, ForecasterConfig, TrainConfig, load_config
from ._data import SeriesTable, as_table, from_fleet
from ._forecaster import MIN_WINDOWS

__all__ = ["FitDecision", "TrainResult", "load_training_data", "simulate_table", "train_all"]

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


@attrs.frozen
class FitDecision:
    """What a training run did about one model: fitted (with its version) or skipped, and why."""

    model: str
    fitted: bool
    reason: str
    version: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    def __str__(self) -> str:
        what = f"fitted {self.model}@{self.version}" if self.fitted else f"skipped {self.model}"
        return f"{what}: {self.reason}"


@attrs.frozen
class TrainResult(Sequence[LoadedArtifact]):
    """The artifacts a run published (a sequence, in order) and every :class:`FitDecision`."""

    artifacts: tuple[LoadedArtifact, ...]
    decisions: tuple[FitDecision, ...]

    def __getitem__(self, i: Any) -> Any:
        return self.artifacts[i]

    def __len__(self) -> int:
        return len(self.artifacts)

    def __iter__(self) -> Iterator[LoadedArtifact]:
        return iter(self.artifacts)

    @property
    def skipped(self) -> tuple[FitDecision, ...]:
        return tuple(d for d in self.decisions if not d.fitted)


def train_all(config: Any, out_dir: str | os.PathLike[str] | ModelStore | None = None, *,
              data: Any = None, resume: bool = False, progress: bool = True, tune_trials: int | None = None,
              tracker: Any = None, promote: bool = False, init_from: str | None = None) -> TrainResult:
    """Fit every model the config asks for and the data supports; publish them into the store at ``out_dir``.

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

    Returns
    -------
    TrainResult
        The published artifacts (iterate it like a list) and the decisions
        (``result.decisions``: fitted or skipped, and why; see module docs).

    Raises
    ------
    OcadError
        Only when nothing at all could be fitted (the message lists every reason).
    """
    cfg = load_config(config)
    if out_dir is None:
        raise OcadConfigError("train_all needs out_dir (the model store to write)")
    store = out_dir if isinstance(out_dir, ModelStore) else ModelStore(out_dir)
    store.init()
    table = as_table(data) if data is not None else load_training_data(cfg)
    if cfg.metrics:
        missing = [m for m in cfg.metrics if m not in table.metrics]
        if missing:
            raise OcadConfigError(f"metric(s) {missing} not in the data; it has {list(table.metrics)}")
    if table.dropped:
        log.warning("training data: dropped %s (the Monitor drops them the same way)", dict(table.dropped))
    out: list[LoadedArtifact] = []
    decisions: list[FitDecision] = []

    def decide(d: FitDecision, art: LoadedArtifact | None = None) -> None:
        decisions.append(d)
        if art is not None:
            out.append(art)
        # A forecaster the user asked for and did not get is worth a warning; the rest is information.
        (log.warning if not d.fitted and d.model.startswith("tcn-") else log.info)("%s", d)

    for metric in cfg.metrics:
        art, d = _train_one_forecaster(table, metric, cfg, store, resume=resume, progress=progress,
                                       tune_trials=tune_trials, tracker=tracker, promote=promote,
                                       init_from=init_from)
        decide(d, art)
    enabled = cfg.multivariate.get("enabled", "auto")
    if enabled is False:
        decide(FitDecision("iforest-multivariate", False, "disabled ([multivariate] enabled = false / "
                                                          "--no-multivariate)"))
    else:
        trials = cfg.tune.get("trials", 0) if tune_trials is None else tune_trials
        art, d = _train_multivariate(table, cfg, store, promote=promote, tune_trials=int(trials or 0))
        decide(d, art)
    if cfg.core_calibration:
        art, d = _train_core_calibration(table, cfg, store, decisions, promote=promote)
        decide(d, art)
    _write_report(store, table, decisions)
    if not out:
        raise OcadError("ocad train fitted nothing: " + "; ".join(str(d) for d in decisions))
    return TrainResult(tuple(out), tuple(decisions))


def _write_report(store: ModelStore, table: SeriesTable, decisions: Sequence[FitDecision]) -> None:
    """``<store>/train_report.json``: the last run's decisions (atomically replaced)."""
    from ocad.core.artifacts._atomic import atomic_write_json as _atomic_write_json

    _atomic_write_json(store.root / "train_report.json", {
        "schema_version": 1,
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "data": _data_summary(table),
        "decisions": [d.to_dict() for d in decisions],
    })


def _data_summary(table: SeriesTable) -> dict[str, Any]:
    n = [int(t.shape[0]) for t in table.ts]
    steps = np.concatenate([np.diff(t) for t in table.ts if t.shape[0] > 1] or [np.zeros(0)])
    return {"source": table.source, "n_endpoints": table.n_endpoints, "n_rows": table.n_samples,
            "rows_per_endpoint": {"min": min(n), "max": max(n)}, "metrics": list(table.metrics),
            "interval_s": float(np.median(steps)) if steps.size else None,
            "dropped": dict(table.dropped),
            "labelled_abnormal": int(sum((~table.normal(e)).sum() for e in range(table.n_endpoints)))}


# -- forecasters -------------------------------------------------------------------

#: Usable windows per split part a forecaster needs (see ``ocad.train._forecaster.MIN_WINDOWS``).
FORECASTER_MIN_WINDOWS = MIN_WINDOWS
#: Split of a short series: more of it to validation (the calibration needs 100
#: windows there), less to test (only metrics).
SHORT_FRACTIONS = (0.45, 0.4, 0.15)
#: Shortest window tried for a short series: 8 samples still see a level and a trend.
MIN_WINDOW = 8


def forecaster_plan(table: SeriesTable, metric: str, fc: ForecasterConfig) -> tuple[ForecasterConfig | None, str]:
    """The forecaster config the data supports (window, fractions) and why; ``None`` if none.

    The configured ``window`` / ``fractions`` when every part has enough windows
    (:data:`FORECASTER_MIN_WINDOWS`), else :data:`SHORT_FRACTIONS` with the longest
    window from the configured one down to :data:`MIN_WINDOW` that has.
    """
    tries = [(fc.window, tuple(fc.fractions))]
    tries += [(w, SHORT_FRACTIONS) for w in sorted({fc.window, 24, 16, 12, MIN_WINDOW}, reverse=True)
              if MIN_WINDOW <= w <= fc.window]
    counts: dict[str, int] = {}
    for w, fr in tries:
        gap = None if fc.gap is None else max(int(fc.gap), w)
        counts = {s: _n_windows(table, metric, w, fr, gap, fc.fill_limit, s) for s in FORECASTER_MIN_WINDOWS}
        if all(counts[s] >= n for s, n in FORECASTER_MIN_WINDOWS.items()):
            if (w, fr) == tries[0]:
                return fc, f"window {w}, split {list(fr)}: {counts['train']} / {counts['validation']} / " \
                           f"{counts['test']} windows"
            shorter = f"window {w} (configured {fc.window}), " if w != fc.window else f"window {w}, "
            return attrs.evolve(fc, window=w, fractions=fr, gap=gap), (
                f"short series: {shorter}split {list(fr)}: {counts['train']} / "
                f"{counts['validation']} / {counts['test']} windows")
    n = max(int(np.isfinite(table.values[e][:, table.metric_index(metric)]).sum())
            for e in range(table.n_endpoints))
    need = _min_samples(MIN_WINDOW, SHORT_FRACTIONS)
    return None, (f"too little data: {counts.get('train', 0)} / {counts.get('validation', 0)} / "
                  f"{counts.get('test', 0)} usable train / validation / test windows at window {MIN_WINDOW} "
                  f"(need {FORECASTER_MIN_WINDOWS['train']} / {FORECASTER_MIN_WINDOWS['validation']} / "
                  f"{FORECASTER_MIN_WINDOWS['test']}); the longest series has {n} observed samples, "
                  f"a forecaster needs about {need} normal samples of one series")


def _min_samples(window: int, fractions: Sequence[float]) -> int:
    """Smallest series length whose split holds FORECASTER_MIN_WINDOWS at ``window`` (no gaps in the data)."""
    parts = ("train", "validation", "test")
    usable = max((FORECASTER_MIN_WINDOWS[p] + window) / f for p, f in zip(parts, fractions))
    return int(np.ceil(usable)) + 2 * window + 1


def _n_windows(table: SeriesTable, metric: str, window: int, fractions: Sequence[float], gap: int | None,
               fill_limit: int, split: str) -> int:
    from ._datasets import _valid_targets, split_boundaries

    j = table.metric_index(metric)
    total = 0
    for e in range(table.n_endpoints):
        series = table.values[e][:, j]
        if not np.isfinite(series).any():
            continue
        sp = split_boundaries(series.shape[0], window, fractions, gap)
        t, _ = _valid_targets(series, table.normal(e), sp.part(split), window, fill_limit, True)
        total += int(t.size)
    return total


def _train_one_forecaster(table: SeriesTable, metric: str, cfg: TrainConfig, store: ModelStore, *,
                          resume: bool, progress: bool, tune_trials: int | None, tracker: Any,
                          promote: bool = False, init_from: str | None = None
                          ) -> tuple[LoadedArtifact | None, FitDecision]:
    from ._forecaster import train_forecasters

    name = f"tcn-{metric}"
    base = cfg.forecaster
    if init_from == "active" and store.active(name) is not None:
        from ._warm import architecture

        # Warm start keeps the active version's architecture: plan with its window.
        base = attrs.evolve(base, **architecture(store.load(name)))
    fc, why = forecaster_plan(table, metric, base)
    if fc is None:
        return None, FitDecision(name, False, why)
    if init_from and fc.window != base.window:
        why += f"; no warm start (the active version's window {base.window} does not fit this data)"
        init_from = None
    # Tuning proposes only windows the planned split supports (ocad.train._tune.feasible_windows),
    # so a short series is tuned too, in its planned split.
    trials = cfg.tune.get("trials", 0) if tune_trials is None else tune_trials
    (art,) = train_forecasters(table, [metric], attrs.evolve(cfg, forecaster=fc), store, resume=resume,
                               progress=progress, tune_trials=trials, tracker=tracker, promote=promote,
                               init_from=init_from)
    t = (art.manifest.get("metrics") or {}).get("test") or {}
    beats = (art.manifest.get("metrics") or {}).get("beats_naive")
    note = "" if beats is None else (", beats the naive forecast" if beats else
                                     ", does NOT beat the naive forecast")
    return art, FitDecision(name, True, f"{why}; test MAE {t.get('mae', float('nan')):.4g}{note}", art.version)


# -- core calibration ----------------------------------------------------------------

def _train_core_calibration(table: SeriesTable, cfg: TrainConfig, store: ModelStore,
                            decisions: Sequence[FitDecision], *, promote: bool = False
                            ) -> tuple[LoadedArtifact | None, FitDecision]:
    """``Monitor.calibrate`` of the core detectors on the normal samples → a ``core-calibration`` artifact."""
    import pandas as pd

    from ocad.core import Monitor
    from ocad.core.artifacts._artifact import CORE_CALIBRATION_KIND

    from ._config import resolve_metric_specs
    from ._forecaster import _spec_dict
    from ._manifest import data_fingerprint, library_versions, publish_artifact

    name = CORE_CALIBRATION_KIND
    metrics = list(table.metrics)
    specs = resolve_metric_specs(metrics, cfg.metric_specs)
    known = set(Monitor({"monitor": {"use_shipped_models": False}}).metrics.names())
    # Metrics the plugins do not register become user metrics, with the spec of [metrics.<name>]
    # (else a gauge); from_model_dir registers them again from inputs.metric_specs.
    user = {m: {k: v for k, v in _spec_dict(specs[m]).items() if v is not None and k != "name"}
            for m in metrics if m not in known}
    mon_cfg = {"monitor": {"use_shipped_models": False}, "metrics": user}
    try:
        mon = Monitor(mon_cfg)
    except OcadError as exc:
        return None, FitDecision(name, False, f"the Monitor cannot be built for these metrics: {exc}")
    frames = []
    for e in range(table.n_endpoints):
        keep = table.normal(e)
        df = pd.DataFrame(table.values[e][keep].astype(np.float64), columns=metrics)
        df.insert(0, "ts", table.ts[e][keep])
        df.insert(0, "endpoint_id", table.endpoint_ids[e])
        frames.append(df)
    frame = pd.concat(frames, ignore_index=True)
    n_ticks = max(int(t.size) for t in table.ts)
    # Views every `every` ticks after the window: >= ~1000 rows per metric when the data
    # has them, never fewer than possible (every tick) when it has not; about a million
    # view rows at most for a large fleet (the tables have 21 quantiles).
    rows = max(n_ticks - mon.window, 0) * table.n_endpoints
    every = max(int(np.clip(rows // 1000, 1, 3)), rows // 1_000_000)
    t0 = time.perf_counter()
    try:
        doc = mon.calibrate(frame, every=every)
    except (OcadError, ValueError) as exc:
        return None, FitDecision(name, False, f"calibration failed on {len(frame)} normal rows: {exc}")
    secs = time.perf_counter() - t0
    fitted = {d: _n_tables(p) for d, p in doc["detectors"].items()}
    doc["source"] = table.source
    doc["every"] = every
    blob = json.dumps(doc, indent=1, sort_keys=True, default=_json_default).encode()
    inputs = {"metrics": metrics, "units": {m: specs[m].unit for m in metrics},
              "metric_specs": user, "window": int(mon.window)}
    manifest = {
        "name": name,
        "kind": CORE_CALIBRATION_KIND,
        "format": "json",
        "description": "Calibration of the core detectors (Monitor.calibrate) on the training data's normal "
                       "samples; Monitor.from_model_dir applies it through each detector's load_params",
        "inputs": inputs,
        "calibration": {"file": "calibration", "detectors": sorted(doc["detectors"]),
                        "tables_per_detector": fitted},
        "training_data": {
            **_data_summary(table),
            "fingerprint": data_fingerprint([frame[metrics].to_numpy(np.float64)], {"every": every}),
            "n_rows": int(len(frame)),  # the normal rows calibrated on
            "n_rows_source": table.n_samples,
        },
        "training_run": {"decisions": [d.to_dict() for d in decisions]},
        "hyperparameters": {"every": every, "monitor_window": int(mon.window)},
        "library_versions": library_versions(),
        "seed": cfg.seed,
    }
    version = cfg.version if cfg.version and cfg.version not in store.versions(name) else None
    art = publish_artifact(store, manifest, {"calibration": ("calibration.json", blob)}, version=version,
                           promote=promote)
    from ._perf import write_report

    write_report(store, art, table=table)
    n_views = f"{len(frame)} normal rows, a view every {every} tick(s)"
    return art, FitDecision(name, True, f"detectors {sorted(fitted)} calibrated on {n_views} "
                                        f"in {secs:.1f}s", art.version)


def _n_tables(params: Any) -> int:
    cal = params.get("calibration") if isinstance(params, dict) else None
    return len(cal.get("metrics") or {}) if isinstance(cal, dict) else 0


def _json_default(o: Any) -> Any:
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


# -- multivariate --------------------------------------------------------------------

#: Feature rows the forest needs: 200 normal validation rows (its calibration table and
#: its 1 % threshold then rest on at least two rows beyond the threshold) and 200
#: training rows (the forest's trees subsample 256 rows each).
MULTIVARIATE_MIN_ROWS = {"train": 200, "validation": 200}


def _train_multivariate(table: SeriesTable, cfg: TrainConfig, store: ModelStore, *, promote: bool = False,
                        tune_trials: int = 0) -> tuple[LoadedArtifact | None, FitDecision]:
    name = "iforest-multivariate"
    metrics: Sequence[str] = cfg.multivariate.get("metrics") or table.metrics
    if len(metrics) < 2:
        return None, FitDecision(name, False, f"one metric ({list(metrics)}): a multivariate model needs >= 2")
    try:
        from ._iforest import train_iforest  # type: ignore[attr-defined]
    except ImportError as exc:
        return None, FitDecision(name, False, f"ocad.train._iforest.train_iforest is not available ({exc})")
    log.info("training the multivariate model on %s", list(metrics))
    params = list(inspect.signature(train_iforest).parameters)
    if params and params[0] == "features_train":
        tuned: dict[str, Any] = {}
        art, d = _train_iforest_on_features(train_iforest, table, list(metrics), cfg, store, tune_trials=tune_trials,
                                            tuned=tuned)
        if art is None:
            return art, d
        art = register_version(store, art, promote=promote, table=table, tuning=tuned or None)
        return art, attrs.evolve(d, version=art.version)
    art = register_version(store, train_iforest(table, list(metrics), cfg.to_dict(), store), promote=promote,
                           table=table)
    return art, FitDecision(name, True, f"on {list(metrics)}", art.version)


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
                               store: ModelStore, *, tune_trials: int = 0, tuned: dict[str, Any] | None = None
                               ) -> tuple[LoadedArtifact | None, FitDecision]:
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

    name = getattr(_iforest, "ARTIFACT_NAME", "iforest-multivariate")
    ts0 = table.ts[0]
    if any(t.shape != ts0.shape or not np.array_equal(t, ts0) for t in table.ts):
        return None, FitDecision(name, False, "the endpoints are not sampled at the same timestamps (the "
                                              "features are computed per tick of one time grid)")
    mv = {k: v for k, v in cfg.multivariate.items() if k not in ("enabled", "metrics")}
    window = int(mv.pop("window", MULTIVARIATE_WINDOW))
    stride = int(mv.pop("stride", MULTIVARIATE_STRIDE))
    fractions: tuple[float, ...] = tuple(cfg.forecaster.fractions)
    specs = resolve_metric_specs(metrics, cfg.metric_specs)
    fe_params = dict(mv.pop("feature_engine", {}))
    fe_params.pop("metrics", None)
    engine = FeatureEngine([specs[m] for m in metrics], **fe_params)
    sub = table.select(metrics)
    labels = (np.stack(sub.labels) if sub.labels is not None
              else np.zeros((sub.n_endpoints, ts0.shape[0]), np.int8))
    fleet = SimpleNamespace(values=np.stack(sub.values), ts=ts0, metrics=list(metrics), labels=labels)
    n_t = int(ts0.shape[0])

    def counts(stride: int, fractions: Sequence[float]) -> tuple[int, int]:
        # Normal training / validation rows a (stride, split) gives, without computing features:
        # the rows feature_matrix_from_fleet builds (window ends every `stride` ticks), labelled
        # by their last tick, kept when their whole window lies in one part.
        sp = split_boundaries(n_t, window, fractions)
        t_end = np.arange(window - 1, n_t, stride)
        start = t_end - window + 1
        ok = labels[:, t_end] == 0
        n = [int((ok & ((start >= a) & (t_end < b))[None, :]).sum()) for a, b in (sp.train, sp.validation)]
        return n[0], n[1]

    need_tr, need_va = MULTIVARIATE_MIN_ROWS["train"], MULTIVARIATE_MIN_ROWS["validation"]
    tries = [(stride, fractions), (1, fractions), (1, SHORT_FRACTIONS)]
    for st, fr in tries:
        n_tr, n_va = counts(st, fr)
        if n_tr >= need_tr and n_va >= need_va:
            stride, fractions = st, tuple(fr)
            break
    else:
        return None, FitDecision(name, False, (
            f"too few rows: {n_t} samples x {sub.n_endpoints} endpoint(s) give at most {n_tr} training / {n_va} "
            f"validation normal feature rows (window {window}, stride 1); the forest needs {need_tr} / {need_va}"))
    x, names, lab, _, t_end = _iforest.feature_matrix_from_fleet(fleet, engine, window, stride)
    sp = split_boundaries(n_t, window, fractions)
    start = t_end - window + 1

    def rows(part: tuple[int, int]) -> Any:
        return (start >= part[0]) & (t_end < part[1])

    train = rows(sp.train) & (lab == 0)
    val = rows(sp.validation)
    n_normal_val = int((val & (lab == 0)).sum())
    if int(train.sum()) < need_tr or n_normal_val < need_va:
        return None, FitDecision(name, False, (
            f"too few normal rows: {int(train.sum())} training / {n_normal_val} validation feature rows "
            f"(window {window}, stride {stride}); the forest needs {need_tr} / {need_va}"))
    if tune_trials:
        from ._tune import tune_iforest

        res = tune_iforest(x[train], x[val], lab[val], mv, tune_trials, seed=cfg.seed,
                           timeout_s=cfg.tune.get("timeout_s"))
        if res is not None:
            mv.update(res["best_params"])
            if tuned is not None:
                tuned.update(res)
    mv.setdefault("min_validation_rows", need_va)
    with store.lock():  # choosing the version, writing and promoting it: one publisher at a time
        version = cfg.version if cfg.version and cfg.version not in store.versions(name) \
            else store.next_version(name)
        config = {**mv, "version": version, "window": window, "stride": stride,
                  "feature_engine": _iforest.feature_engine_params(engine), "metrics": list(metrics)}
        if hasattr(_iforest, "_config"):
            _iforest._config(config)  # a wrong [multivariate] key is the user's error: raise it here
        try:
            art: LoadedArtifact = train_iforest(x[train], x[val], names, config=config,
                                                out_dir=store.version_dir(name, version), labels_val=lab[val],
                                                seed=cfg.seed)
        except OcadConfigError as exc:
            # The config is valid, so this is the data (e.g. too many rows with missing features).
            return None, FitDecision(name, False, str(exc))
    return art, FitDecision(name, True, (f"on {metrics}: {int(train.sum())} training / {int(val.sum())} validation "
                                         f"rows (window {window}, stride {stride}, split {list(fractions)})"),
                            art.version)
