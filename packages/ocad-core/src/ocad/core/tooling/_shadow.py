"""Shadow mode: run a candidate set of detectors beside the active ones, without affecting alerts.

A :class:`ShadowRunner` holds its own :class:`CompositeDetector` and
:class:`AlertPolicy`. Attached to a Monitor, it is called after every tick with
the very view the active composite scored (no second window store, no second
feature computation), scores it with the candidate detectors, runs the
candidate alert policy, and records how the two differ: composite and
per-detector score agreement, and alert episodes only in the active stream, only
in the candidate stream, or in both. The candidate's alert events stay in
:attr:`ShadowRunner.events`; they never enter the Monitor's event stream, and a
candidate that raises is counted, never propagated.

Compare like with like: the candidate set must be the active set with only the
candidate versions swapped in, so that the same detectors judge the same
metrics on both sides. :meth:`ShadowRunner.from_store` builds exactly that from
a model store (the residual detector is built from *all* forecasters; a
candidate ``tcn-a@1.1.0`` replaces ``tcn-a``'s active version and keeps the
other metrics' active versions). Typical use, comparing newly trained versions
before promoting them::

    store = ModelStore("store")                                  # ocad.core.artifacts
    mon = Monitor.from_model_dir("store")                        # the active versions
    shadow = ShadowRunner.from_store(mon, store, {"tcn-udp_echo_rtt_ms": "1.1.0"}).attach(mon)
    for batch in stream:
        handle(mon.observe(batch))              # active alerts only
    print(shadow.report().to_dict())           # agreement, alerts only in one of the two

:func:`compare_store` does this over a file and adds detection quality per side
(``ocad models shadow``). :meth:`ShadowRunner.from_model_dir` takes any artifact
directory and warns when a same-named detector's metrics differ (unlike with
unlike: its score agreement means little).

Cost: the candidate detectors run on every tick, in the Monitor's thread, after
the active alerts were computed; budget for them as for active detectors.
"""

from __future__ import annotations

import logging
import os
import weakref
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from ..pipeline._alerts import AlertEvent, AlertPolicy, AlertPolicyConfig
from ..pipeline._composite import CompositeDetector, CompositeOutput
from .._errors import OcadConfigError
from .._view import DetectorView

__all__ = ["ShadowReport", "ShadowRunner", "compare_store", "store_artifacts"]

log = logging.getLogger("ocad.shadow")


@attrs.define
class _Agreement:
    """Streaming sums for the correlation and differences of two score series."""

    n: int = 0
    sx: float = 0.0
    sy: float = 0.0
    sxx: float = 0.0
    syy: float = 0.0
    sxy: float = 0.0
    sad: float = 0.0
    max_ad: float = 0.0

    def add(self, x: np.ndarray, y: np.ndarray) -> None:
        ok = np.isfinite(x) & np.isfinite(y)
        if not ok.any():
            return
        x, y = x[ok].astype(np.float64), y[ok].astype(np.float64)
        self.n += int(x.size)
        self.sx += float(x.sum())
        self.sy += float(y.sum())
        self.sxx += float((x * x).sum())
        self.syy += float((y * y).sum())
        self.sxy += float((x * y).sum())
        ad = np.abs(x - y)
        self.sad += float(ad.sum())
        self.max_ad = max(self.max_ad, float(ad.max()))

    def to_dict(self) -> dict[str, Any]:
        if self.n == 0:
            return {"n": 0, "correlation": None, "mean_abs_diff": None, "max_abs_diff": None,
                    "mean_active": None, "mean_candidate": None}
        n = self.n
        vx = self.sxx / n - (self.sx / n) ** 2
        vy = self.syy / n - (self.sy / n) ** 2
        cov = self.sxy / n - (self.sx / n) * (self.sy / n)
        corr = cov / np.sqrt(vx * vy) if vx > 1e-15 and vy > 1e-15 else None
        return {"n": n, "correlation": None if corr is None else float(np.clip(corr, -1.0, 1.0)),
                "mean_abs_diff": self.sad / n, "max_abs_diff": self.max_ad,
                "mean_active": self.sx / n, "mean_candidate": self.sy / n}


@attrs.frozen
class ShadowReport:
    """How the candidate differed from the active detectors so far.

    ``scores``: agreement of the composite scores over the endpoint-samples both
    could judge (``n``, Pearson ``correlation``, ``mean_abs_diff``,
    ``max_abs_diff``, the two means). ``detectors``: the same per detector name
    present on both sides (e.g. ``residual`` v1.2 vs v1.3). Alert episodes
    (open → resolve of one endpoint) are matched when they overlap in sample
    time on the same endpoint: ``both`` counts matched pairs, ``only_active`` /
    ``only_candidate`` list the others (endpoint, opened, resolved).
    """

    name: str
    ticks: int
    scores: Mapping[str, Any]
    detectors: Mapping[str, Mapping[str, Any]]
    active_alerts: int
    candidate_alerts: int
    both: int
    only_active: tuple[Mapping[str, Any], ...]
    only_candidate: tuple[Mapping[str, Any], ...]
    candidate_health: Mapping[str, Mapping[str, Any]]
    errors: int
    last_error: str | None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=False)
        d["only_active"] = [dict(e) for e in self.only_active]
        d["only_candidate"] = [dict(e) for e in self.only_candidate]
        return d


def _track(episodes: dict[str, dict[str, Any]], events: Iterable[AlertEvent]) -> int:
    opened = 0
    for ev in events:
        a = ev.alert
        if ev.event == "open":
            episodes[a.alert_id] = {"endpoint_id": a.endpoint_id, "opened_ts": a.opened_ts, "resolved_ts": None}
            opened += 1
        elif ev.event == "resolve" and a.alert_id in episodes:
            episodes[a.alert_id]["resolved_ts"] = a.resolved_ts
    return opened


def _overlap(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    a_end = np.inf if a["resolved_ts"] is None else a["resolved_ts"]
    b_end = np.inf if b["resolved_ts"] is None else b["resolved_ts"]
    return bool(a["opened_ts"] <= b_end and b["opened_ts"] <= a_end)


class ShadowRunner:
    """Candidate detectors scored on the active Monitor's views, with their own alert policy.

    Parameters
    ----------
    detectors:
        The candidate set (a full set: it replaces the active composite in the
        comparison). :meth:`from_monitor` builds it from the active set with some
        detectors replaced.
    weights, alerts, warmup_samples, time_budget_s, max_consecutive_failures:
        As for the Monitor's composite and alert policy; :meth:`from_monitor`
        copies the Monitor's.
    name:
        A label for reports and logs.
    max_events:
        The candidate's alert events kept in :attr:`events` (oldest dropped first).
    """

    def __init__(self, detectors: Sequence[Any], *, weights: Mapping[str, float] | None = None,
                 alerts: AlertPolicyConfig | None = None, warmup_samples: int = 0,
                 time_budget_s: float | None = None, max_consecutive_failures: int = 3,
                 name: str = "candidate", max_events: int = 10_000) -> None:
        self.name = name
        self.composite = CompositeDetector(detectors, weights, time_budget_s=time_budget_s,
                                           max_consecutive_failures=max_consecutive_failures)
        self.policy = AlertPolicy(alerts)
        self.warmup_samples = int(warmup_samples)
        self.max_events = int(max_events)
        self.events: list[AlertEvent] = []
        self.errors = 0
        self.last_error: str | None = None
        self._monitor: Any = None
        self.reset_stats()

    # -- construction ---------------------------------------------------------
    @classmethod
    def from_monitor(cls, monitor: Any, candidates: Sequence[Any], *, name: str = "candidate",
                     keep_others: bool = True, **kw: Any) -> ShadowRunner:
        """The Monitor's detectors with same-named ones replaced by ``candidates`` (others added).

        ``keep_others=False``: the candidate set is exactly ``candidates``. Weights,
        alert policy, warm-up and time budget are the Monitor's.
        """
        from .._monitor import DEFAULT_WEIGHTS

        cand = {d.name: d for d in candidates}
        if len(cand) != len(candidates):
            raise OcadConfigError(f"shadow {name!r}: candidate detector names must be unique")
        dets = [cand.pop(d.name, d) for d in monitor.detectors] if keep_others else []
        dets += list(cand.values())
        weights = {**DEFAULT_WEIGHTS, **dict(zip(monitor.composite.names, monitor.composite.weights.tolist()))}
        opts: dict[str, Any] = {"weights": weights, "alerts": monitor.policy.config,
                                "warmup_samples": monitor.warmup_samples,
                                "time_budget_s": monitor.config.time_budget_s,
                                "max_consecutive_failures": monitor.config.max_consecutive_failures}
        opts.update(kw)
        return cls(dets, name=name, **opts)

    @classmethod
    def from_model_dir(cls, monitor: Any, path: str | os.PathLike[str], *, name: str | None = None,
                       **kw: Any) -> ShadowRunner:
        """Candidate detectors built by the plugins from the artifacts in ``path`` (strictly).

        Any artifact that fails to load or build raises: a shadow comparison with
        a silently missing candidate would report agreement that means nothing.
        """
        from ..artifacts._artifact import find_artifacts, load_artifact

        paths = find_artifacts(path)
        if not paths:
            raise OcadConfigError(f"shadow: no artifacts in {str(path)!r}")
        arts = [load_artifact(p) for p in paths]
        ctx = attrs.evolve(monitor.context, strict=True, artifact_errors=[])
        dets = monitor.registry.artifact_detectors(arts, ctx, strict=True)
        if not dets:
            raise OcadConfigError(f"shadow: no installed plugin builds detectors from the artifacts in {str(path)!r}")
        label = name or ",".join(f"{a.name}@{a.version}" for a in arts)
        for nm, d in like_for_like(monitor, dets).items():
            if not d["same_metrics"]:
                log.warning("shadow %r: detector %r judges %s in the candidate but %s in the active set: unlike "
                            "with unlike; compare versions of the same models (ShadowRunner.from_store)",
                            label, nm, d["candidate_metrics"], d["active_metrics"])
        return cls.from_monitor(monitor, dets, name=label, **kw)

    @classmethod
    def from_store(cls, monitor: Any, store: Any, candidates: Mapping[str, str], **kw: Any) -> ShadowRunner:
        """The store's active versions with ``candidates`` (model name → version) swapped in.

        ``monitor`` should run the store's active versions
        (``Monitor.from_model_dir(store.root)``): then every detector built from
        artifacts exists on both sides with the same metrics, and only the
        candidate versions differ. Built strictly (a broken candidate raises).
        """
        _, arts = store_artifacts(store, candidates)
        ctx = attrs.evolve(monitor.context, strict=True, artifact_errors=[])
        dets = monitor.registry.artifact_detectors(arts, ctx, strict=True)
        if not dets:
            raise OcadConfigError(f"shadow: no installed plugin builds detectors from {sorted(candidates)}")
        label = ",".join(f"{n}@{v}" for n, v in sorted(candidates.items()))
        return cls.from_monitor(monitor, dets, name=label, **kw)

    def attach(self, monitor: Any) -> ShadowRunner:
        """Run beside ``monitor`` from its next tick on (``monitor.shadows``); returns ``self``."""
        if self.composite.window > monitor.window:
            raise OcadConfigError(
                f"shadow {self.name!r} needs a window of {self.composite.window} samples, the Monitor keeps "
                f"{monitor.window}; configure [monitor] window = {self.composite.window} or more")
        if self not in monitor.shadows:
            monitor.shadows.append(self)
        self._monitor = weakref.ref(monitor)
        return self

    def detach(self, monitor: Any) -> None:
        if self in monitor.shadows:
            monitor.shadows.remove(self)
        self._monitor = None

    # -- per tick -------------------------------------------------------------
    def observe_tick(self, view: DetectorView, batch: Any, comp: CompositeOutput,
                     events: Sequence[AlertEvent]) -> None:
        """Called by the Monitor after each tick; never raises, never touches ``events``."""
        try:
            self._observe(view, batch, comp, events)
        except Exception as exc:  # noqa: BLE001 - a candidate must never break the active Monitor
            self.errors += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            if self.errors == 1 or self.errors % 100 == 0:
                log.warning("shadow %r failed on a tick (%d so far): %s", self.name, self.errors, self.last_error)

    def _observe(self, view: DetectorView, batch: Any, comp: CompositeOutput,
                 events: Sequence[AlertEvent]) -> None:
        self.ticks += 1
        self._drop_evicted(batch)
        cand = self.composite.score(view, self._pvalues())
        ref = getattr(self, "_monitor", None)
        ready = getattr(ref() if ref is not None else None, "last_ready", None)
        cev = self.policy.update(batch.endpoint_id, batch.ts, cand,
                                 ready=view.counts >= self.warmup_samples if ready is None else ready)
        if cev:
            self.events.extend(cev)
            if len(self.events) > self.max_events:
                del self.events[: len(self.events) - self.max_events]
        self._n_active += _track(self._active, events)
        self._n_candidate += _track(self._candidate, cev)
        self._scores.add(comp.scores, cand.scores)
        for j, nm in enumerate(cand.detectors):
            if nm in comp.detectors:
                i = comp.detectors.index(nm)
                self._per_detector.setdefault(nm, _Agreement()).add(comp.detector_scores[:, i],
                                                                     cand.detector_scores[:, j])

    def _pvalues(self) -> Any:
        """The active Monitor's per-endpoint self-calibration, applied to the candidates by detector name.

        Like with like: a candidate version of a detector is judged against what the active one has
        learned of each endpoint; a detector the active stack lacks uses its own table (no state).
        """
        ref = getattr(self, "_monitor", None)
        mon = ref() if ref is not None else None
        rows = getattr(mon, "last_rows", None)
        if mon is None or rows is None:
            return None
        names = list(mon.composite.names)
        idx = [names.index(n) if n in names else -1 for n in self.composite.names]

        def pvalues(u: Any) -> Any:
            full = np.full((u.shape[0], len(names)), np.nan)
            have = [j for j, i in enumerate(idx) if i >= 0]
            for j in have:
                full[:, idx[j]] = u[:, j]
            p = mon.selfcal.pvalues(mon.store, rows, full)
            out = np.where(np.isnan(u), np.nan, 10.0 ** -u)
            for j in have:
                out[:, j] = np.where(np.isnan(u[:, j]), np.nan, p[:, idx[j]])
            return out

        return pvalues

    def _drop_evicted(self, batch: Any) -> None:
        # The Monitor tells its own policy about evicted endpoints; tell the candidate's too.
        mon = self._monitor() if self._monitor is not None else None
        if mon is None:
            return
        open_eps = [a.endpoint_id for a in self.policy.open_alerts()]
        if open_eps:
            gone = mon.store.lookup(np.asarray(open_eps, dtype=object)) < 0
            if gone.any():
                ts = float(np.max(batch.ts)) if len(batch.ts) else 0.0
                self._track_candidate(self.policy.drop([e for e, g in zip(open_eps, gone) if g], ts))

    def _track_candidate(self, cev: list[AlertEvent]) -> None:
        self.events.extend(cev)
        _track(self._candidate, cev)

    # -- reporting ------------------------------------------------------------
    def reset_stats(self) -> None:
        """Start a new comparison period (alert state is kept)."""
        self.ticks = 0
        self._scores = _Agreement()
        self._per_detector: dict[str, _Agreement] = {}
        self._active: dict[str, dict[str, Any]] = {}
        self._candidate: dict[str, dict[str, Any]] = {}
        self._n_active = 0
        self._n_candidate = 0

    def report(self) -> ShadowReport:
        act = list(self._active.values())
        cand = list(self._candidate.values())
        by_ep: dict[str, list[int]] = {}
        for k, c in enumerate(cand):
            by_ep.setdefault(c["endpoint_id"], []).append(k)
        matched_c: set[int] = set()
        only_a = []
        both = 0
        for a in act:
            hit = [k for k in by_ep.get(a["endpoint_id"], []) if _overlap(a, cand[k])]
            if hit:
                both += 1
                matched_c.update(hit)
            else:
                only_a.append(dict(a))
        only_c = [dict(c) for k, c in enumerate(cand) if k not in matched_c]
        return ShadowReport(
            name=self.name, ticks=self.ticks, scores=self._scores.to_dict(),
            detectors={n: a.to_dict() for n, a in sorted(self._per_detector.items())},
            active_alerts=self._n_active, candidate_alerts=self._n_candidate, both=both,
            only_active=tuple(only_a), only_candidate=tuple(only_c),
            candidate_health=self.composite.health_report(), errors=self.errors, last_error=self.last_error)


def like_for_like(monitor: Any, candidates: Sequence[Any]) -> dict[str, dict[str, Any]]:
    """Per candidate detector: its metrics and those of the same-named active detector."""
    active = {d.name: d for d in monitor.detectors}
    out = {}
    for d in candidates:
        a = active.get(d.name)
        am = sorted(getattr(a, "metrics", ())) if a is not None else None
        cm = sorted(getattr(d, "metrics", ()))
        out[d.name] = {"active_metrics": am, "candidate_metrics": cm, "same_metrics": am == cm}
    return out


def store_artifacts(store: Any, candidates: Mapping[str, str]) -> tuple[list[Any], list[Any]]:
    """(active artifacts, the same with ``candidates`` swapped in) of a model store, all verified."""
    active = {}
    for n in store.names():
        v = store.active(n)
        if v is not None:
            active[n] = store.load(n, v)
    cand = dict(active)
    for n, v in candidates.items():
        if v not in store.versions(n):
            raise OcadConfigError(f"shadow: {n} has no version {v!r}; it has {store.versions(n)}")
        cand[n] = store.load(n, v)
    return list(active.values()), list(cand.values())


def _endpoint_days(series_ts: Mapping[str, np.ndarray]) -> float:
    days = 0.0
    for t in series_ts.values():
        t = np.sort(np.asarray(t, np.float64))
        step = float(np.median(np.diff(t))) if t.size > 1 else 0.0
        days += (float(t[-1] - t[0]) + step) / 86400.0 if t.size else 0.0
    return days


def _detection(events: Sequence[AlertEvent], run: Any, endpoint_days: float) -> dict[str, Any]:
    from ._evaluation import alerts_from_events, event_f1, match_events, summarize_matches

    alerts = alerts_from_events(events)
    out: dict[str, Any] = {"alerts": len(alerts),
                           "alerts_per_endpoint_day": len(alerts) / endpoint_days if endpoint_days > 0 else None}
    if run is not None:
        matches, false = match_events(alerts, run.events, end_ts=float(run.data["end_ts"]))
        summ = summarize_matches(matches, false, len(alerts), endpoint_days)
        summ["event_f1"] = event_f1(summ)
        out.update({k: (None if isinstance(v, float) and not np.isfinite(v) else v) for k, v in summ.items()})
    return out


def compare_store(store_root: str | os.PathLike[str], data: str | os.PathLike[str], *,
                  candidates: Mapping[str, str] | None = None, config: Any = None, registry: Any = None,
                  events_path: str | os.PathLike[str] | None = None, progress: bool = False) -> dict[str, Any]:
    """Active versions vs candidates of the same models, side by side on the stream in ``data``.

    ``candidates``: model name → version (default: each model's newest candidate,
    :meth:`ModelStore.candidates`). ``data``: CSV / Parquet; with a ``fault_type``
    column (``ocad simulate`` writes one) each side also gets event F1, precision,
    recall, false alerts per endpoint-day and per fault type. Returns a JSON-ready
    dict: ``active`` / ``candidate`` (versions, detection), ``shadow`` (the
    :class:`ShadowReport`: score correlation, per detector, alerts only in one),
    ``like_for_like`` (each compared detector's metrics on both sides).
    """
    from .._config import MonitorConfig
    from .._errors import OcadValidationError
    from .._monitor import Monitor
    from ..artifacts._store import ModelStore

    if not ModelStore.is_store(store_root):
        raise OcadConfigError(f"{store_root} is not a model store (no store.json)")
    store = ModelStore(store_root)
    if candidates is None:
        candidates = {n: store.candidates(n)[-1] for n in store.names() if store.candidates(n)}
    if not candidates:
        raise OcadConfigError(f"no candidate versions in {store_root}: train first, or name one with --candidate")
    run = None
    try:
        from ._quality import load_labelled_file

        run = load_labelled_file(data, events_path)
        run.data  # noqa: B018 - parse now: an unlabelled file is read below instead
        records = run.data["records"]
        series_ts = {e: t for e, (t, _) in run.data["series"].items()}
    except OcadValidationError as exc:
        if exc.field != "fault_type":
            raise
        from ._io import read_records

        run = None
        records = read_records(data)
        by: dict[str, list[float]] = {}
        for r in records:
            by.setdefault(str(r["endpoint_id"]), []).append(float(r["ts"]))
        series_ts = {e: np.asarray(t) for e, t in by.items()}
        records.sort(key=lambda r: float(r["ts"]))
    cfg = MonitorConfig.coerce(config)
    active_arts, cand_arts = store_artifacts(store, candidates)

    def monitor(c: Any) -> Any:
        if active_arts:
            return Monitor.from_model_dir(store.root, c, registry=registry, strict=True)
        return Monitor(attrs.evolve(c, use_shipped_models=False), registry=registry, strict=True)

    mon = monitor(cfg)
    probe = ShadowRunner.from_store(mon, store, candidates)
    if probe.composite.window > mon.window:  # the same, longer window on both sides
        mon = monitor(attrs.evolve(cfg, window=probe.composite.window))
    shadow = ShadowRunner.from_store(mon, store, candidates, max_events=10**9).attach(mon)
    lfl = like_for_like(mon, list(shadow.composite.detectors))
    events: list[AlertEvent] = []
    if run is not None:
        events = run.feed(mon, progress=progress)
    else:
        for i in range(0, len(records), 20_000):
            events += mon.observe(records[i:i + 20_000])
    days = _endpoint_days(series_ts)
    rep = shadow.report().to_dict()
    return {
        "store": str(store.root), "data": str(data), "labelled": run is not None, "endpoint_days": days,
        "active": {"versions": {a.name: a.version for a in active_arts}, "detection": _detection(events, run, days)},
        "candidate": {"versions": {a.name: a.version for a in cand_arts},
                      "detection": _detection(shadow.events, run, days)},
        "like_for_like": lfl,
        "shadow": rep,
    }
