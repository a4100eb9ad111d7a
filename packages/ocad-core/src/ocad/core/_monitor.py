"""Monitor: the embedding entry point that runs the whole pipeline.

``records → validate → WindowStore → FeatureEngine → CompositeDetector → AlertPolicy → events``

One ``observe`` call may hold many samples per endpoint (a backfill, a file):
they are processed as successive ticks, the k-th tick holding each endpoint's
k-th sample in time order, so the result equals feeding them one by one.
Order against earlier calls: a sample not newer than the endpoint's last one
is dropped and counted (``duplicate_ts`` / ``out_of_order``), except a jump
back of more than ``clock_reset_s``, which restarts that endpoint's window
(``clock_resets``): a device whose clock was reset is not silenced for hours.

Concurrency: a Monitor is not thread-safe; use one Monitor per shard of
endpoints (per thread, process or machine). Detectors are pure, so shards only
share read-only models. Concurrent use is *detected*: a second thread calling
``observe`` / ``observe_columns`` / ``score_frame`` / ``snapshot`` / ``restore`` /
``calibrate`` while one of them runs gets an :class:`OcadError` at once (a
non-blocking lock), never a half-applied tick.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import logging
import os
import threading
import time
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from .pipeline._alerts import AlertEvent, AlertPolicy
from .pipeline._baseline import Baselines
from ._config import MonitorConfig
from .pipeline._composite import CompositeDetector, CompositeOutput
from ._errors import OcadArtifactError, OcadConfigError, OcadError, OcadValidationError
from ._labels import EndpointLabels, group_alerts
from .pipeline._features import FeatureEngine
from .plugins._registry import DetectorContext, PluginRegistry, default_registry
from .pipeline._selfcal import SelfCalibration, prior_surprise
from .pipeline._validate import Batch, ValidationStats, Validator
from ._time import parse_tz
from ._view import DetectorView, FeatureFrame
from .pipeline._statecheck import check_policy_state, check_window_state
from .pipeline._window import WindowStore

__all__ = ["Monitor"]

log = logging.getLogger("ocad.monitor")

# Weights of the Cauchy combination (docs/quality.md says how they were chosen).
DEFAULT_WEIGHTS = {"rule": 1.0, "spike": 1.0, "changepoint": 1.0, "continuity": 1.0, "concurrency": 1.0,
                   "level": 1.0, "recurrence": 1.0, "residual": 1.0, "multivariate": 1.0}
SNAPSHOT_VERSION = 1


def _exclusive(method: Any) -> Any:
    """One call at a time per Monitor: a concurrent call raises :class:`OcadError` instead of racing."""
    @functools.wraps(method)
    def wrapper(self: Monitor, *args: Any, **kwargs: Any) -> Any:
        lock = self.__dict__.get("_busy")
        if lock is None:  # a Monitor built without __init__ (from_snapshot of a subclass, tests)
            lock = self.__dict__.setdefault("_busy", threading.Lock())
        if not lock.acquire(blocking=False):
            raise OcadError(
                f"Monitor.{method.__name__}: this Monitor is already in use by another call (another thread, "
                "or a detector or callback calling back into it). A Monitor is not thread-safe: use one "
                "Monitor per thread (shard the endpoints) or serialise the calls with your own lock")
        try:
            return method(self, *args, **kwargs)
        finally:
            lock.release()
    return wrapper


def _is_frame(obj: Any) -> bool:
    return type(obj).__name__ == "DataFrame" and hasattr(obj, "columns")


class Monitor:
    """Detects anomalies in probe samples from a fleet of endpoints.

    Parameters
    ----------
    config:
        A :class:`MonitorConfig`, a mapping (same shape as the TOML file) or a TOML path.
    registry:
        The plugin registry; default: the process-wide one (built-ins + entry points).
    detectors:
        Use exactly these detectors instead of asking the plugins.
    extra_detectors:
        Added to the plugins' detectors (e.g. artifact detectors, a shadow candidate).
    strict:
        Refuse to start when a plugin or artifact fails (default: report and go on).
    labels:
        Endpoint labels (site, role, vendor, ...) copied into the alerts an endpoint opens:
        a mapping ``{endpoint_id: {label: value}}``, an inventory file (CSV/Parquet with an
        ``endpoint_id`` column and one column per label) or a DataFrame of that shape.
        Change them later with :meth:`set_labels`.
    tz:
        Time zone (IANA name such as ``"Europe/Paris"``, ``"UTC"``, ``"+02:00"`` or a ``tzinfo``)
        in which *naive* timestamps are read. Without it naive timestamps are refused
        (``docs/timestamps.md``); ``observe(..., tz=)`` overrides it per call.

    Example
    -------
    >>> from ocad.core import Monitor
    >>> mon = Monitor.from_defaults(use_shipped_models=False)
    >>> mon.observe([{"endpoint_id": "oru-1", "ts": 0.0, "udp_echo_rtt_ms": 4.2}])
    []
    """

    def __init__(self, config: MonitorConfig | Mapping[str, Any] | str | os.PathLike[str] | None = None, *,
                 registry: PluginRegistry | None = None, detectors: Sequence[Any] | None = None,
                 extra_detectors: Sequence[Any] = (), strict: bool = False, labels: Any = None,
                 tz: Any = None, _probe: bool = False) -> None:
        self._busy = threading.Lock()  # see _exclusive
        self.config = cfg = MonitorConfig.coerce(config)
        self.tz = parse_tz(tz)
        self.registry = registry if registry is not None else default_registry()
        self.strict = strict
        if strict and self.registry.failures:
            # Load-time failures happen when the registry is built; strict means "all or nothing".
            from ._errors import OcadPluginError

            raise OcadPluginError("strict Monitor refuses to start: " + "; ".join(
                f"{f.plugin} ({f.stage}): {f.error}" for f in self.registry.failures))
        metrics = self.registry.metrics(cfg.user_metrics)
        if cfg.metrics is not None:
            metrics = metrics.subset(cfg.metrics)
        self.metrics = metrics
        self.context = DetectorContext(metrics=metrics, window=cfg.window, detector_options=cfg.detectors,
                                       use_shipped_models=cfg.use_shipped_models,
                                       session_options=cfg.onnxruntime, strict=strict)
        dets = list(detectors) if detectors is not None else self.registry.detectors(self.context, strict=strict)
        dets += list(extra_detectors)
        if detectors is not None or extra_detectors:
            # The registry checked its plugins' detectors; these came straight from the caller.
            from .plugins._protocols import Detector
            from .plugins._registry import _detector_problem

            for d in dets:
                problem = _detector_problem(d, Detector)
                if problem is not None:
                    raise OcadConfigError(f"detector refused: {problem}")
        if not _probe:
            _warn_unknown_tables(cfg, dets)
        dets = [d for d in dets if cfg.enabled(d.name)]
        self._load_default_calibration(dets)
        weights = {**DEFAULT_WEIGHTS, **cfg.weights()}
        self.composite = CompositeDetector(dets, weights, time_budget_s=cfg.time_budget_s,
                                           max_consecutive_failures=cfg.max_consecutive_failures)
        self.window = max(cfg.window, self.composite.window)
        # Statistics of a half-empty window are noise: no alert opens before this many samples.
        self.warmup_samples = cfg.warmup_samples if cfg.warmup_samples is not None else self.window // 2
        self.baselines = Baselines(len(metrics), cfg.baselines)
        self.selfcal = SelfCalibration(len(self.composite.detectors), cfg.selfcal)
        self.store = self.new_store()
        self.features = FeatureEngine(metrics)
        self.validator = Validator(metrics)
        self.labels = EndpointLabels.coerce(labels)
        self.policy = AlertPolicy(cfg.alerts)
        self.policy.endpoint_labels = self.labels.get
        self.stats = ValidationStats()
        self.shadows: list[Any] = []
        # Artifacts a plugin skipped (not strict); from_model_dir adds the ones that failed to load.
        self.artifact_errors: list[str] = self.context.artifact_errors
        self._score_sink: list[dict[str, np.ndarray]] | None = None
        #: Called with the seconds each tick took (the Prometheus collector's histogram); None: not timed.
        self.tick_observer: Callable[[float], None] | None = None

    # -- construction -----------------------------------------------------
    @classmethod
    def from_defaults(cls, *, use_shipped_models: bool = True, labels: Any = None, **overrides: Any) -> Monitor:
        """Every registered detector with its defaults; shipped ML models when installed.

        ``labels``: endpoint labels, as for the constructor; other keywords are ``[monitor]`` keys.
        """
        cfg: dict[str, Any] = {"monitor": {"use_shipped_models": use_shipped_models}}
        for k, v in overrides.items():
            cfg["monitor"][k] = v
        return cls(cfg, labels=labels)

    @classmethod
    def from_config(cls, path: str | os.PathLike[str], **kw: Any) -> Monitor:
        return cls(MonitorConfig.from_toml(path), **kw)

    @classmethod
    def from_model_dir(cls, path: str | os.PathLike[str], config: Any = None, *,
                       registry: PluginRegistry | None = None, strict: bool = False,
                       labels: Any = None) -> Monitor:
        """Core detectors plus detectors built from the trained artifacts in ``path``.

        ``path`` may be one artifact, a directory of artifacts, or a model store (active versions).
        Shipped default models are not loaded: the artifacts replace them. Metrics named by the
        artifacts that are not registered are added as user metrics (with the spec an artifact
        records in ``inputs.metric_specs``, else a gauge with the artifact's unit).

        A ``core-calibration`` artifact (written by ``ocad train``) holds a calibration
        document of :meth:`calibrate`: it is applied to the core detectors through their
        ``load_params``, exactly like ``[monitor] calibration`` (see docs/artifacts.md).
        An artifact whose kind needs a package that is not installed (``forecaster`` and
        ``multivariate`` need ocad-detectors-ml) is never skipped silently: with ``strict``
        it raises :class:`OcadDependencyError` naming the extra, otherwise it is logged and
        listed in ``health()["artifact_errors"]``.
        """
        from ._metrics import MetricSpec
        from .artifacts._artifact import CORE_CALIBRATION_KIND, find_artifacts, load_artifact

        reg = registry if registry is not None else default_registry()
        base = MonitorConfig.coerce(config)
        known = reg.metrics(base.user_metrics)
        user = dict(base.user_metrics)
        loaded: list[Any] = []
        bad: list[str] = []

        def refuse(exc: OcadArtifactError) -> None:
            # Each artifact on its own: one broken artifact (or store pointer) never stops the others.
            if strict:
                raise exc
            log.error("%s", exc)
            bad.append(str(exc))

        def unexpected(p: Any, exc: Exception) -> OcadArtifactError:
            return OcadArtifactError(str(p), f"{type(exc).__name__}: {str(exc)[:300]}")

        paths = find_artifacts(path, errors=None if strict else bad)
        for e in bad:
            log.error("%s", e)
        for p in paths:
            try:
                loaded.append(load_artifact(p))
            except OcadArtifactError as exc:
                refuse(exc)
            except (RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
                refuse(unexpected(p, exc))
        if not loaded and not bad:
            from .artifacts import ModelStore

            if ModelStore.is_store(path):  # trained, but nothing passed the quality gate yet
                st = ModelStore(path)
                cands = {n: st.candidates(n) for n in st.names() if st.candidates(n)}
                raise OcadArtifactError(str(path), f"model store has no active version (candidates: {cands or 'none'}); "
                                                   "promote one: ocad models promote NAME VERSION --store ...")
            raise OcadArtifactError(str(path), "no artifacts found (expected manifest.json files)")
        arts: list[Any] = []
        # Artifacts that record full metric specs first: their spec wins over a unit-only one.
        for a in sorted(loaded, key=lambda a: not (isinstance(a.manifest["inputs"].get("metric_specs"), dict)
                                                   and a.manifest["inputs"]["metric_specs"])):
            try:
                added: dict[str, Any] = {}
                units = a.manifest["inputs"].get("units", {})
                specs = a.manifest["inputs"].get("metric_specs") or {}
                for m in a.manifest["inputs"]["metrics"]:
                    if m not in known and m not in user and m not in added:
                        unit = units.get(m, "")
                        if not isinstance(unit, str):
                            raise OcadArtifactError(f"{a.name}@{a.version} ({a.path})",
                                                    f"manifest field 'inputs.units.{m}' = {unit!r:.80} must be a string")
                        spec = MetricSpec.from_mapping(m, specs[m]) if m in specs else MetricSpec(m, unit=unit)
                        d = spec.to_dict()
                        del d["name"]
                        added[m] = d
            except OcadArtifactError as exc:
                refuse(exc)
                continue
            except (OcadConfigError, RecursionError, TypeError, ValueError, KeyError, AttributeError) as exc:
                refuse(unexpected(a.path, exc))
                continue
            arts.append(a)
            user.update(added)
        bad += _missing_artifact_packages(arts, strict=strict)

        cfg = attrs.evolve(base, user_metrics=user, use_shipped_models=False)
        model_arts = [a for a in arts if a.kind != CORE_CALIBRATION_KIND]
        probe = cls(cfg, registry=reg, strict=strict, _probe=True)  # no artifact detectors yet: no warnings
        extra = reg.artifact_detectors(model_arts, probe.context, strict=strict)
        mon = cls(cfg, registry=reg, extra_detectors=extra, strict=strict, labels=labels)
        for a in arts:
            if a.kind == CORE_CALIBRATION_KIND:
                try:
                    mon.load_calibration(a)
                except (OcadArtifactError, OcadConfigError) as exc:
                    if strict:
                        raise
                    log.error("%s", exc)
                    bad.append(str(exc))
        mon.artifact_errors = [*bad, *probe.context.artifact_errors, *mon.artifact_errors]
        return mon

    def load_calibration(self, source: Any) -> list[str]:
        """Apply a calibration document (:meth:`calibrate`'s output) to the detectors; returns their names.

        ``source``: the document (a mapping), a JSON file, or a ``core-calibration`` artifact
        (:class:`~ocad.core.LoadedArtifact`, its ``calibration`` file, hash-verified at load).
        Detectors the document does not name keep their tables. A table that does not fit
        its detector raises :class:`OcadConfigError` naming the detector.
        """
        if isinstance(source, Mapping):
            doc, label = source, "calibration document"
        else:
            if hasattr(source, "manifest") and hasattr(source, "file"):
                path, label = source.file("calibration"), f"artifact {source.name}@{source.version}"
            else:
                path = Path(source)
                label = str(path)
            try:
                doc = json.loads(Path(path).read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise OcadConfigError(f"{label}: calibration is not readable JSON: {exc}") from exc
        params = doc.get("detectors") if isinstance(doc, Mapping) else None
        if not isinstance(params, Mapping):
            raise OcadConfigError(f"{label}: a calibration document needs a 'detectors' object")
        loaded = []
        for d in self.composite.detectors:
            p = params.get(d.name)
            if p is None or not hasattr(d, "load_params"):
                continue
            try:
                d.load_params(p)
            except (KeyError, TypeError, ValueError) as exc:
                raise OcadConfigError(f"{label}: calibration of detector {d.name!r} does not fit it: {exc}") \
                    from exc
            loaded.append(d.name)
        return loaded

    def _load_default_calibration(self, dets: Sequence[Any]) -> None:
        path = self.config.calibration
        try:
            if path is not None:
                data = json.loads(Path(path).read_text(encoding="utf-8"))
            else:
                data = json.loads(resources.files("ocad.core").joinpath("data/calibration.json")
                                  .read_text(encoding="utf-8"))
        except FileNotFoundError:
            if path is not None:
                raise OcadConfigError(f"monitor.calibration = {path!r}: file not found") from None
            return
        params = data.get("detectors", {})
        for d in dets:
            p = params.get(d.name)
            if p is not None and hasattr(d, "load_params"):
                try:
                    d.load_params(p)
                except (KeyError, TypeError, ValueError) as exc:
                    log.warning("calibration for %r not loaded: %s", d.name, exc)

    def new_store(self) -> WindowStore:
        """An empty WindowStore for this Monitor, with the per-row state of its stages."""
        store = WindowStore(len(self.metrics), self.window, capacity=self.config.capacity,
                            idle_timeout_s=self.config.idle_timeout_s)
        self.baselines.register(store)
        self.selfcal.register(store)
        return store

    # -- labels -------------------------------------------------------------
    def set_labels(self, labels: Any, *, replace: bool = False) -> Monitor:
        """Set endpoints' labels (mapping, inventory path or DataFrame; see ``labels`` above).

        Endpoints named in ``labels`` get exactly those labels; others keep theirs unless
        ``replace=True``. Alerts already open keep the labels they opened with.
        Raises :class:`OcadValidationError` (nothing changed) for a bad name or value.
        """
        new = EndpointLabels.coerce(labels)
        self.labels.update(new.to_dict(), replace=replace)
        return self

    def open_alerts(self, by: str | Sequence[str] | None = None) -> Any:
        """The open alerts; with ``by`` (a label or labels), grouped as :func:`group_alerts` does."""
        alerts = self.policy.open_alerts()
        return alerts if by is None else group_alerts(alerts, by)

    # -- observing ----------------------------------------------------------
    @property
    def detectors(self) -> tuple[Any, ...]:
        return self.composite.detectors

    @_exclusive
    def observe(self, records: Iterable[Mapping[str, Any]] | Any, *, tz: Any = None) -> list[AlertEvent]:
        """Feed samples; returns the alert events they caused (open / update / resolve).

        ``records``: mappings ``{"endpoint_id": str, "ts": timestamp, <metric>: value, ...}``
        or a pandas DataFrame of that shape (wide), or long format (endpoint_id, ts, metric, value).
        ``ts``: epoch seconds, a timezone-aware datetime or an ISO-8601 string with an offset;
        naive values only with ``tz`` (here or on the Monitor), see ``docs/timestamps.md``.
        Raises :class:`OcadValidationError` only for structurally invalid records.
        """
        return self._observe(records, tz)

    def _observe(self, records: Any, tz: Any = None) -> list[AlertEvent]:
        zone = self._zone(tz)
        if _is_frame(records):
            batch = self._frame_batch(records, zone)
        else:
            batch = self.validator.from_records(records, self.stats, tz=zone)
        return self._process(batch)

    @_exclusive
    def observe_columns(self, endpoint_id: Any, ts: Any, values: Mapping[str, Any], *,
                        tz: Any = None) -> list[AlertEvent]:
        """Columnar fast path: arrays of endpoint ids, timestamps and ``{metric: values}``.

        ``ts`` may be numbers (epoch seconds), ``datetime64`` (naive: needs ``tz``), a tz-aware
        pandas Series or a pyarrow timestamp array (``docs/timestamps.md``).
        """
        return self._process(self.validator.from_columns(endpoint_id, ts, values, self.stats,
                                                         tz=self._zone(tz)))

    def _zone(self, tz: Any) -> Any:
        return self.tz if tz is None else parse_tz(tz)

    def _frame_batch(self, df: Any, tz: Any = None) -> Batch:
        cols = list(df.columns)
        dup = sorted({str(c) for c in cols if cols.count(c) > 1})
        if dup:
            raise OcadValidationError("columns", dup, "duplicated column name(s): which one holds the data?")
        for req in ("endpoint_id", "ts"):
            if req not in cols:
                raise OcadValidationError(req, None, f"DataFrame has no {req!r} column (columns: {cols})")
        if "metric" in cols and "value" in cols:
            return self._long_batch(df, tz)
        # The Series itself: a tz-aware one is converted exactly, a naive one needs ``tz``
        # (datetime64 of any unit: pandas 3 defaults to "us", not "ns").
        ts = df["ts"]
        values = {c: df[c].to_numpy() for c in cols if c not in ("endpoint_id", "ts")}
        values = {k: (v.astype(object) if v.dtype.kind == "O" else v) for k, v in values.items()}
        # Unknown columns go to the Validator too: it counts them only once the call is accepted.
        return self.validator.from_columns(df["endpoint_id"].to_numpy(dtype=object), ts, values, self.stats,
                                           tz=tz)

    def _long_batch(self, df: Any, tz: Any = None) -> Batch:
        return self._long_batch_ts(df, tz)[0]

    def _long_batch_ts(self, df: Any, tz: Any = None) -> tuple[Batch, Any]:
        """Long format (endpoint_id, ts, metric, value) → one record per (endpoint_id, ts).

        A metric named ``ts`` / ``endpoint_id`` (or ``metric`` / ``value``) refuses the call. Rows
        without an endpoint or a time, and repeated (endpoint_id, ts, metric) rows (first kept),
        are counted in ``dropped_records`` (``long_no_endpoint``, ``long_no_ts``,
        ``long_duplicate``: rows, not records); rows of unknown metrics in ``unknown_metrics``;
        a record whose values are all missing is kept (its values count as missing).
        """
        import pandas as pd

        metric = df["metric"]
        reserved = sorted({str(m) for m in pd.unique(metric.dropna()) if m in ("ts", "endpoint_id", "metric",
                                                                                 "value")})
        if reserved:
            raise OcadValidationError("metric", reserved[0], "a long-format row may not name a reserved column "
                                      "(ts, endpoint_id, metric, value) as its metric")
        bad_metric = metric.map(lambda m: not isinstance(m, str) or not m)
        if bad_metric.any():
            i = int(np.argmax(bad_metric.to_numpy()))
            raise OcadValidationError("metric", metric.iloc[i], "must be a non-empty string", index=i)
        no_ep = df["endpoint_id"].isna().to_numpy()
        no_ts = df["ts"].isna().to_numpy() & ~no_ep
        keep = ~(no_ep | no_ts)
        kept = df.loc[keep, ["endpoint_id", "ts", "metric", "value"]]
        dup = kept.duplicated(["endpoint_id", "ts", "metric"], keep="first").to_numpy()
        kept = kept.loc[~dup]
        names = set(self.validator.names)
        is_unknown = ~kept["metric"].isin(names).to_numpy()
        unknown_counts = kept.loc[is_unknown, "metric"].value_counts()
        # Records: every (endpoint_id, ts) with at least one row, also one whose rows are all unknown
        # or all missing (its known metrics are missing, as in the wide format).
        wide = kept.loc[~is_unknown].pivot(index=["endpoint_id", "ts"], columns="metric", values="value")
        keys = kept[["endpoint_id", "ts"]].drop_duplicates()
        wide = wide.reindex(pd.MultiIndex.from_frame(keys)).reset_index()
        ts_col = wide["ts"]  # the Series: a tz-aware one is converted exactly, a naive one needs ``tz``
        values = {}
        for c in wide.columns:
            if c in names:
                v = wide[c].to_numpy()
                values[c] = v.astype(object) if v.dtype.kind == "O" else v
        batch = self.validator.from_columns(wide["endpoint_id"].to_numpy(dtype=object), ts_col,
                                            values, self.stats, tz=tz)
        # Counted only now: a refused call (bad id, bad ts) changes no counter.
        for m, n in unknown_counts.items():
            self.stats.count_unknown(m, int(n))
        for reason, n in (("long_no_endpoint", int(no_ep.sum())), ("long_no_ts", int(no_ts.sum())),
                          ("long_duplicate", int(dup.sum()))):
            if n:
                self.stats.dropped_records[reason] += n
        return batch, ts_col

    def _process(self, batch: Batch) -> list[AlertEvent]:
        if len(batch) == 0:
            return []
        events: list[AlertEvent] = []
        obs = self.tick_observer
        for sub in _ticks(batch):
            if obs is None:
                events += self._tick(sub)
            else:
                t0 = time.perf_counter()
                events += self._tick(sub)
                obs(time.perf_counter() - t0)
        return events

    def _tick(self, b: Batch) -> list[AlertEvent]:
        store = self.store
        reset_events: list[AlertEvent] = []
        known = store.lookup(b.endpoint_id)
        last = np.where(known >= 0, store.last_ts[known], -np.inf)
        if (b.ts <= last).any():  # a sample not newer than the endpoint's last one
            dup = b.ts == last
            back = b.ts < last
            reset = back & (last - b.ts > self.config.clock_reset_s)
            drop = dup | (back & ~reset)
            if dup.any():
                self.stats.dropped_records["duplicate_ts"] += int(dup.sum())
            if (back & ~reset).any():
                self.stats.dropped_records["out_of_order"] += int((back & ~reset).sum())
            if reset.any():
                self.stats.clock_resets += int(reset.sum())
                store.reset(known[reset])
                # The endpoint starts a new time line: its open alert (whose hold-down timer is in the
                # old one) resolves at its last sample of the old line, and its pending state goes.
                for e, t_old in zip(b.endpoint_id[reset].tolist(), last[reset].tolist()):
                    reset_events += self.policy.drop([e], float(t_old))
            if drop.any():
                keep = np.flatnonzero(~drop)
                b, known = b.take(keep), known[keep]
                if len(b) == 0:
                    return reset_events
        # Every endpoint known (the steady state): its rows are the ones just looked up.
        rows = known if known.size and known.min() >= 0 else store.rows(b.endpoint_id)
        store.append(rows, b.ts, b.values)
        events: list[AlertEvent] = reset_events
        evicted = self._evict_idle(rows)
        if store.evicted_lru:  # evicted for capacity by rows(): forgotten like idle ones
            evicted = [*store.evicted_lru, *evicted]
            store.evicted_lru.clear()
        if evicted:
            # Each open alert resolves at its endpoint's own last sample: one device with a wild clock
            # must not stamp (and, through snapshots, keep stamping) every other device's resolve.
            last_of = store.evicted_last_ts
            for e in evicted:
                events += self.policy.drop([e], float(last_of.get(e, store.max_ts)))
        store.evicted_last_ts.clear()
        view = self._view(rows, b)
        comp = self.composite.score(view, lambda u: self.selfcal.pvalues(store, rows, u))
        # A sample with no valid value (all missing or rejected) adds no evidence: the detectors would
        # only judge the endpoint's older samples again, so it cannot confirm an alert either.
        fresh = ~np.isnan(b.values).all(axis=1)
        self.last_ready = ready = self._ready(rows, b.ts, view.counts) & fresh
        self.last_rows = rows
        events += self.policy.update(b.endpoint_id, b.ts, comp, ready=ready)
        # Shadows (candidates, the evaluation recorder) see the state this tick was judged with.
        for sh in self.shadows:
            sh.observe_tick(view, b, comp, events)
        # Learn after judging, and not from samples that are suspect (composite at or above the alert
        # policy's clear threshold) or from endpoints under an alert (open or pending): evidence that
        # has not opened an alert yet must not be learned as normal and silence itself.
        suspect = np.nan_to_num(comp.scores, nan=0.0) >= self.policy.config.clear_threshold
        frozen = self.baselines.set_guard(store, rows, b.ts, self.policy.guarded(b.endpoint_id) | suspect)
        if comp.calibrated is not None:
            self.selfcal.update(store, rows, b.ts, prior_surprise(comp.calibrated), frozen)
        self.baselines.update(store, rows, b.ts, b.values, frozen)
        if self._score_sink is not None:
            self._score_sink.append(self._score_rows(b, comp))
        return events

    def _ready(self, rows: np.ndarray, ts: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Endpoints past their warm-up: enough samples and enough sample time (or many samples)."""
        cfg = self.config
        warmup_s = cfg.warmup_s if cfg.warmup_s is not None else (0.0 if cfg.warmup_samples is not None else 1800.0)
        if warmup_s <= 0:
            return counts >= self.warmup_samples
        age = self.baselines.age(self.store, rows, ts)
        return (counts >= self.warmup_samples) & ((age >= warmup_s) | (counts >= cfg.warmup_max_samples))

    def _evict_idle(self, active: np.ndarray) -> list[str]:
        st = self.store
        if st.idle_timeout_s is None or not len(st):
            return []
        # The fleet's clock is the (lower) median of the endpoints' last sample times, not the newest
        # sample ever seen: one device with a clock far ahead (milliseconds for seconds, a bad NTP)
        # would otherwise make every other endpoint idle at every tick, for good.
        last = st.last_ts[st.last_ts > -np.inf]
        k = (last.size - 1) // 2
        # Rows of this tick just reported: not idle, even when their clock is far behind (reset).
        return st.evict_idle_ids(now=float(np.partition(last, k)[k]), protect=active)

    def _view(self, rows: np.ndarray, b: Batch) -> DetectorView:
        values, ts = self.store.window_of(rows)
        # Over the whole window the Monitor keeps; FeatureFrame.window records it, so that a
        # detector trained on features of the same length uses them instead of recomputing.
        feats = self.features.compute(values, ts)
        baseline = self.baselines.frame(self.store, rows, b.ts)
        # Every detector of the tick gets these same arrays, read-only: one that writes into them (an
        # in-place normalisation) fails alone instead of corrupting the detectors after it, the warm-up
        # counts and the alerts' endpoint ids. Read-only *views*: the buffers themselves stay writable.
        return DetectorView(endpoints=_read_only(b.endpoint_id), metrics=self.metrics.names(),
                            values=_read_only(values), ts=_read_only(ts),
                            capabilities=_read_only(self.store.capabilities[rows]),
                            features=FeatureFrame(feats.names, _read_only(feats.data), window=feats.window),
                            counts=_read_only(self.store.count[rows]), baseline=baseline)

    # -- scoring a whole frame ------------------------------------------------
    @staticmethod
    def _score_rows(b: Batch, comp: CompositeOutput) -> dict[str, np.ndarray]:
        d = {"endpoint_id": b.endpoint_id, "ts": b.ts, "composite": comp.scores, "_row": b.rows}
        for j, n in enumerate(comp.detectors):
            d[n] = comp.detector_scores[:, j]
        return d

    @_exclusive
    def score_frame(self, data: Any, *, as_frame: bool | None = None, tz: Any = None) -> Any:
        """Per-(endpoint, ts) composite and per-detector scores for ``data`` (records or DataFrame).

        Returns a pandas DataFrame when pandas is installed (or ``as_frame=True``), else a dict of
        numpy arrays. One row per scored input row, **in input order**, with ``ts`` as it came in
        (its type and zone: floats stay floats, a ``datetime64[ns, Europe/Paris]`` column stays
        one, datetimes and strings of records are returned as given). Rows dropped as duplicate or
        out of order are absent. For long input, "input order" is the order in which each
        (endpoint, ts) pair first appears. The Monitor's state advances as with :meth:`observe`;
        alert events raised along the way are in ``self.last_events``.
        """
        zone = self._zone(tz)
        orig_ts: Any
        if _is_frame(data):
            cols = list(data.columns)
            if "metric" in cols and "value" in cols and "endpoint_id" in cols and "ts" in cols \
                    and not any(cols.count(c) > 1 for c in cols):
                # Long: rows index the (endpoint, ts) pairs in the order they first appear.
                batch, orig_ts = self._long_batch_ts(data, zone)
            else:
                batch = self._frame_batch(data, zone)
                orig_ts = data["ts"]
        else:
            data = list(data)
            batch = self.validator.from_records(data, self.stats, tz=zone)
            orig_ts = [r["ts"] for r in data]
        self._score_sink = []
        try:
            self.last_events = self._process(batch)
            parts = self._score_sink
        finally:
            self._score_sink = None
        cols = ["endpoint_id", "ts", "composite", *self.composite.names]
        out = {c: (np.concatenate([p[c] for p in parts]) if parts else np.array([])) for c in cols}
        rows = np.concatenate([p["_row"] for p in parts]) if parts else np.array([], dtype=np.intp)
        order = np.argsort(rows, kind="stable")
        rows = rows[order]
        out = {c: v[order] for c, v in out.items()}
        if as_frame is None:
            try:
                import pandas  # noqa: F401
                as_frame = True
            except ImportError:
                as_frame = False
        if as_frame:
            from ._errors import require

            pd = require("pandas", "io", "Monitor.score_frame(as_frame=True)")
            res = pd.DataFrame(out)
            res["ts"] = orig_ts.iloc[rows].reset_index(drop=True) if _is_frame(data) else \
                pd.Series(_records_ts(orig_ts, rows))
            return res
        out["ts"] = orig_ts.iloc[rows].to_numpy() if _is_frame(data) else _records_ts(orig_ts, rows)
        return out

    # -- calibration ------------------------------------------------------------
    @_exclusive
    def calibrate(self, data: Any, *, every: int = 3) -> dict[str, Any]:
        """Fit every fittable detector on *normal* data and return the calibration document.

        ``data`` is anything :meth:`observe` takes, or an iterable of ``(endpoint_id, ts,
        {metric: values})`` column ticks. Views are taken every ``every`` ticks after the window
        warm-up. The Monitor's window state is reset afterwards.
        """
        views: list[DetectorView] = []
        tick = 0

        def collect(b: Batch) -> None:
            nonlocal tick
            rows = self.store.rows(b.endpoint_id)
            self.store.append(rows, b.ts, b.values)
            tick += 1
            if tick > self.window and tick % every == 0:
                views.append(self._view(rows, b))
            self.baselines.update(self.store, rows, b.ts, b.values, np.zeros(len(rows), dtype=bool))

        if isinstance(data, Iterable) and not _is_frame(data) and not isinstance(data, (list, tuple)):
            for ep, ts, vals in data:
                for sub in _ticks(self.validator.from_columns(ep, ts, vals, ValidationStats(), tz=self.tz)):
                    collect(sub)
        else:
            batch = self._frame_batch(data, self.tz) if _is_frame(data) else \
                self.validator.from_records(data, ValidationStats(), tz=self.tz)
            for sub in _ticks(batch):
                collect(sub)
        if not views:
            raise OcadConfigError("calibrate() got too little data: need more ticks than the window")
        doc: dict[str, Any] = {"schema_version": 1, "metrics": list(self.metrics.names()), "detectors": {}}
        for d in self.composite.detectors:
            if hasattr(d, "fit") and hasattr(d, "params_to_dict"):
                d.fit(views)
                doc["detectors"][d.name] = d.params_to_dict()
        self.store = self.new_store()
        return doc

    # -- reporting ----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """Validation counters, window-store size and evictions, detector health, plugin failures."""
        return {
            "validation": self.stats.to_dict(),
            "store": {"endpoints": len(self.store), "capacity": self.store.capacity,
                      "allocated_rows": self.store.allocated_rows, "bytes": self.store.nbytes(),
                      "evicted_idle": self.store.evicted_idle, "evicted_capacity": self.store.evicted_capacity},
            "detectors": self.composite.health_report(),
            "plugin_failures": [attrs.asdict(f) if attrs.has(type(f)) else str(f) for f in self.registry.failures],
            "alerts": dict(self.policy.counts),
            "open_alerts": len(self.policy.open_alerts()),
            "artifact_errors": list(getattr(self, "artifact_errors", [])),
        }

    # -- snapshot / restore ---------------------------------------------------------
    @_exclusive
    def snapshot(self, path: str | os.PathLike[str]) -> Path:
        """Save window and alert state to ``path`` (a directory: ``windows.npz`` + ``state.json``).

        No pickle: arrays go to npz (loaded with ``allow_pickle=False``), the rest to JSON.
        ``state.json`` holds the sha256 of the ``windows.npz`` it belongs to, and both are
        written in full before either replaces the previous snapshot's: a snapshot
        interrupted between the two renames is refused by :meth:`restore`, never mixed.
        """
        p = Path(path)
        p.mkdir(parents=True, exist_ok=True)
        buf = io.BytesIO()
        np.savez(buf, **self.store.state())
        npz = buf.getvalue()
        doc = {"snapshot_version": SNAPSHOT_VERSION, "metrics": list(self.metrics.names()),
               "window": self.window, "detectors": list(self.composite.names),
               "policy": self.policy.state(), "validation": self.stats.to_dict(),
               "windows_sha256": hashlib.sha256(npz).hexdigest(), "labels": self.labels.to_dict()}
        tmp, tmpj = p / "windows.npz.tmp", p / "state.json.tmp"
        for target, data in ((tmp, npz), (tmpj, json.dumps(doc).encode())):
            with open(target, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
        os.replace(tmp, p / "windows.npz")
        os.replace(tmpj, p / "state.json")
        return p

    @_exclusive
    def restore(self, path: str | os.PathLike[str]) -> Monitor:
        """Load state saved by :meth:`snapshot` into this (identically configured) Monitor.

        Raises :class:`OcadConfigError` for a snapshot that cannot be read, is damaged or
        incomplete, or was taken with other metrics or window; the Monitor is then unchanged.
        """
        p = Path(path)
        try:
            doc = json.loads((p / "state.json").read_text(encoding="utf-8"))
            npz = (p / "windows.npz").read_bytes()
        except (OSError, ValueError) as exc:
            raise OcadConfigError(f"snapshot {str(p)!r} cannot be read: {exc}") from exc
        except RecursionError:
            raise OcadConfigError(f"snapshot {str(p)!r}: state.json is nested too deeply") from None
        if not isinstance(doc, dict) or doc.get("snapshot_version") != SNAPSHOT_VERSION:
            version = doc.get("snapshot_version") if isinstance(doc, dict) else None
            raise OcadConfigError(f"snapshot {str(p)!r}: unsupported version {version!r}")
        want = doc.get("windows_sha256")
        if want is not None and hashlib.sha256(npz).hexdigest() != want:
            raise OcadConfigError(f"snapshot {str(p)!r}: windows.npz does not belong to state.json "
                                  "(an interrupted snapshot?); take the snapshot again or use an older one")
        if doc.get("metrics") != list(self.metrics.names()) or doc.get("window") != self.window:
            raise OcadConfigError(
                f"snapshot {str(p)!r} was taken with metrics {doc.get('metrics')} and window {doc.get('window')}; "
                f"this Monitor has {list(self.metrics.names())} and {self.window}")
        # Everything is loaded into new objects first: a damaged snapshot leaves this Monitor as it was.
        store = self.new_store()
        policy = AlertPolicy(self.policy.config)
        try:
            with np.load(io.BytesIO(npz), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            if doc.get("detectors") != list(self.composite.names):
                # Self-calibration is per detector: with other detectors it starts afresh.
                arrays = {k: v for k, v in arrays.items() if not k.startswith("x_sc_")}
            # Values, not only shapes: a head out of range or a count < 0 would fail later, in observe.
            check_window_state(arrays, window=self.window, n_metrics=len(self.metrics),
                               capacity=self.config.capacity)
            store.load_state(arrays)
            policy.load_state(doc["policy"])
            for k, v in policy.counts.items():
                if not isinstance(k, str) or isinstance(v, bool) or not isinstance(v, int) or v < 0:
                    raise ValueError(f"policy.counts[{k!r:.40}] = {v!r:.40} must be an integer >= 0")
            held = set(store.endpoints())
            for e, st in policy._states.items():
                if e not in held:
                    raise ValueError(f"alert state for {e!r:.80}, an endpoint the windows do not hold")
                check_policy_state(e, st)
            stats = ValidationStats.from_dict(doc["validation"])
            # Snapshots older than endpoint labels have none: this Monitor's labels stay.
            labels = EndpointLabels.from_dict(doc["labels"]) if "labels" in doc else self.labels
        except (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError, RecursionError,
                zipfile.BadZipFile) as exc:
            raise OcadConfigError(f"snapshot {str(p)!r} is damaged: {type(exc).__name__}: {str(exc)[:300]}") from None
        policy.endpoint_labels = labels.get
        self.store, self.policy, self.stats, self.labels = store, policy, stats, labels
        return self

    @classmethod
    def from_snapshot(cls, path: str | os.PathLike[str], config: Any = None, **kw: Any) -> Monitor:
        return cls(config, **kw).restore(path)


#: Artifact kinds ocad-core does not run itself: the module of the plugin that does, and its extra.
ARTIFACT_KIND_PACKAGES: dict[str, tuple[str, str]] = {
    "forecaster": ("ocad.detectors_ml", "ml"),
    "multivariate": ("ocad.detectors_ml", "ml"),
}


def _missing_artifact_packages(arts: Sequence[Any], *, strict: bool) -> list[str]:
    """Artifacts whose detector package is not installed: raise (strict) or messages (else)."""
    import importlib.util

    from ._errors import OcadDependencyError

    out: list[str] = []
    for a in arts:
        need = ARTIFACT_KIND_PACKAGES.get(a.kind)
        if need is None:
            continue
        module, extra = need
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):
            found = False
        if found:
            continue
        err = OcadDependencyError(module, extra, f"artifact {a.name}@{a.version} (kind {a.kind!r}, {a.path})")
        if strict:
            raise err
        log.warning("%s; its detector does not run", err)
        out.append(f"{err}; its detector does not run")
    return out


def _warn_unknown_tables(cfg: MonitorConfig, dets: Sequence[Any]) -> None:
    """A ``[detectors.NAME]`` table for no detector is most likely a typo: say so, with the known names."""
    known = {d.name for d in dets} | set(DEFAULT_WEIGHTS)  # DEFAULT_WEIGHTS: the ML names even when not loaded
    unknown = sorted(set(cfg.detectors) - known)
    if unknown:
        log.warning("config: [detectors.%s] matches no detector (a typo?); its settings are ignored. "
                    "Detectors: %s", ", ".join(unknown) if len(unknown) == 1 else "{" + ",".join(unknown) + "}",
                    ", ".join(sorted(known)))


def _records_ts(ts: list[Any], rows: np.ndarray) -> np.ndarray:
    """The records' own ``ts`` values at ``rows``: numbers as a number array, anything else as given."""
    picked = [ts[i] for i in rows.tolist()]
    if all(type(v) in (int, float) or isinstance(v, (np.integer, np.floating)) for v in picked):
        return np.asarray(picked) if picked else np.array([], dtype=np.float64)
    out = np.empty(len(picked), dtype=object)
    out[:] = picked
    return out


def _read_only(a: np.ndarray) -> np.ndarray:
    v = a.view()
    v.flags.writeable = False
    return v


def _ticks(b: Batch) -> Iterable[Batch]:
    """Split a batch into ticks: tick k holds each endpoint's k-th sample in time order."""
    n = len(b)
    ep = b.endpoint_id
    if n <= 1 or b.unique_ids or len(set(ep.tolist())) == n:
        yield b
        return
    order = np.lexsort((b.ts, ep.astype(str)))
    e_sorted = ep[order]
    start = np.ones(n, dtype=bool)
    start[1:] = e_sorted[1:] != e_sorted[:-1]
    group_start = np.maximum.accumulate(np.where(start, np.arange(n), 0))
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - group_start
    by_rank = np.argsort(rank, kind="stable")
    bounds = np.searchsorted(rank[by_rank], np.arange(rank.max() + 2))
    for k in range(len(bounds) - 1):
        idx = by_rank[bounds[k]:bounds[k + 1]]
        if idx.size:
            yield b.take(idx)
