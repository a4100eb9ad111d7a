"""Quality harness: evaluation suites, ``evaluate``, detector ablation and weight tuning.

``ocad evaluate`` / ``ocad tune-weights`` / ``ocad report`` are thin wrappers around
:func:`evaluate`, :func:`tune_weights` and :func:`ocad.core.tooling._report.write_report`.

How a run is scored
-------------------
Each labelled run (one generated fleet, or a user's labelled file) goes once through a
fresh :class:`~ocad.core.Monitor`. A recorder hooked into the Monitor's per-tick shadow
hook keeps, for every scored sample, the composite score, every detector's score and
whether the endpoint had warmed up; the alert events come from the Monitor itself.
Nothing is scored twice:

* **point metrics** compare "an alert is open" with "the sample is labelled" and rank
  the recorded composite scores (ROC-AUC, PR-AUC);
* **event metrics** match alerts to labelled fault events (:func:`match_events`);
* **ablation** rows *replay* the cached detector scores through the composite
  combination and a fresh :class:`~ocad.core.AlertPolicy` with some detectors left
  out, which is what a Monitor with those detectors disabled computes (detectors are
  pure functions of the view). The one difference: the replay keeps the full
  Monitor's window and warm-up (a Monitor without a long-window ML detector would
  have a shorter one). ``ablation="rerun"`` builds and runs the real Monitors instead;
* **tuning** replays the cached scores of the *tuning* seeds under candidate weights
  and alert thresholds (coordinate search), so the detectors run once per seed.

Suites
------
A suite is a TOML file (``data/suites/default.toml`` is ``--suite default``): scenarios
(parameters of :func:`~ocad.core.generate_fleet`) and two disjoint seed lists, ``tune``
and ``test``. :func:`tune_weights` refuses test seeds.
"""

from __future__ import annotations

import csv
import math
import os
import sys
import time
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ..pipeline._alerts import Alert, AlertEvent, AlertPolicy, AlertPolicyConfig
from .._config import MonitorConfig
from ..pipeline._composite import CompositeOutput
from .._errors import OcadConfigError, OcadValidationError
from ._evaluation import (
    LabelledEvent,
    _group_by_endpoint,
    _open_mask,
    alert_open_mask,
    alerts_from_events,
    event_f1,
    events_from_labels,
    forecast_errors,
    match_events,
    point_metrics,
    pr_auc,
    roc_auc,
    summarize_matches,
)
from .._view import DetectorOutput
from ._io import FAILURE_TS_COLUMN, FAULT_TYPE_COLUMN, LABEL_COLUMNS, fault_type_name

__all__ = [
    "ABLATION_ROWS",
    "TARGETS",
    "Evaluation",
    "LabelledRun",
    "MonitorFactory",
    "Scenario",
    "ScoreCache",
    "Suite",
    "TuneResult",
    "evaluate",
    "format_evaluation",
    "load_labelled_file",
    "load_suite",
    "replay_alerts",
    "tune_weights",
]

SCHEMA = "ocad.quality/1"
_DAY_S = 86_400.0

#: Ablation rows: (label, detectors *added* by the row). Each row holds the detectors of
#: the rows above it plus its own; the last row is the full composite (every detector).
ABLATION_ROWS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("rule only", ("rule",)),
    ("+ changepoint", ("changepoint",)),
    ("+ residual", ("residual",)),
    ("+ multivariate", ("multivariate",)),
    ("full composite", ()),
)

#: Issue #5 targets on the test seeds: (key in the metrics, comparison, bound, description).
TARGETS: tuple[tuple[str, str, float, str], ...] = (
    ("event_precision", ">=", 0.95, "event precision"),
    ("event_recall", ">=", 0.90, "event recall"),
    ("event_f1", ">=", 0.92, "event F1"),
    ("false_alarm_rate", "<=", 0.05, "point false-alarm rate"),
    ("lead_time_p50_s", ">=", 240.0, "lead time p50 on drift-to-failure faults (s)"),
)


# -- suites ---------------------------------------------------------------------------
_SCENARIO_KEYS = {"name", "endpoints", "sites", "hours", "start_hour", "fault_rate_per_endpoint_day",
                  "diurnal_amplitude", "missing_rate", "faults", "interval_s"}
_BASE_TS = 1_767_225_600.0  # 2026-01-01 00:00 UTC, the generator's default start


@attrs.frozen
class Scenario:
    """Parameters of one generated fleet of a suite (one fleet per seed)."""

    name: str
    endpoints: int = 40
    hours: float = 8.0
    sites: int | None = None
    start_hour: float = 0.0
    fault_rate_per_endpoint_day: float = 6.0
    diurnal_amplitude: float = 0.25
    missing_rate: float = 0.002
    faults: bool | tuple[str, ...] = True
    interval_s: float = 5.0

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any], interval_s: float, where: str) -> Scenario:
        bad = set(d) - _SCENARIO_KEYS
        if bad:
            raise OcadConfigError(f"{where}: unknown key(s) {sorted(bad)}; allowed: {sorted(_SCENARIO_KEYS)}")
        if "name" not in d:
            raise OcadConfigError(f"{where}: every scenario needs a name")
        kw = dict(d)
        kw.setdefault("interval_s", interval_s)
        if isinstance(kw.get("faults"), list):
            kw["faults"] = tuple(kw["faults"])
        try:
            return cls(**kw)
        except TypeError as exc:
            raise OcadConfigError(f"{where}: {exc}") from exc

    def fleet(self, seed: int) -> Any:
        from ._synthetic import generate_fleet

        return generate_fleet(self.endpoints, self.hours * 3600.0, self.interval_s, seed=seed,
                              faults=self.faults, fault_rate_per_endpoint_day=self.fault_rate_per_endpoint_day,
                              n_sites=self.sites, start_ts=_BASE_TS + self.start_hour * 3600.0,
                              missing_rate=self.missing_rate, diurnal_amplitude=self.diurnal_amplitude)


@attrs.frozen
class Suite:
    """Scenarios and two disjoint seed lists: ``tune_seeds`` (tuning) and ``test_seeds`` (reporting)."""

    name: str
    scenarios: tuple[Scenario, ...]
    tune_seeds: tuple[int, ...]
    test_seeds: tuple[int, ...]
    description: str = ""
    source: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.scenarios:
            raise OcadConfigError(f"suite {self.name!r}: no [[scenarios]]")
        for label, seeds in (("tune", self.tune_seeds), ("test", self.test_seeds)):
            if not seeds:
                raise OcadConfigError(f"suite {self.name!r}: seeds.{label} is empty")
            if len(set(seeds)) != len(seeds):
                raise OcadConfigError(f"suite {self.name!r}: seeds.{label} = {list(seeds)} repeats a seed")
        both = sorted(set(self.tune_seeds) & set(self.test_seeds))
        if both:
            raise OcadConfigError(f"suite {self.name!r}: seed(s) {both} are both tuning and test seeds; "
                                  "the test seeds must never be used for tuning")
        names = [s.name for s in self.scenarios]
        if len(set(names)) != len(names):
            raise OcadConfigError(f"suite {self.name!r}: scenario names repeat: {names}")

    def seeds(self, split: str) -> tuple[int, ...]:
        if split == "tune":
            return self.tune_seeds
        if split == "test":
            return self.test_seeds
        raise OcadConfigError(f"split {split!r}: use 'tune' or 'test'")

    def runs(self, split: str = "test", seeds: Sequence[int] | None = None) -> list[LabelledRun]:
        """The labelled runs of ``seeds`` (default: the split's); fleets are generated lazily.

        Scenarios that share a time grid (start, length, interval) go into one run, their
        endpoint ids prefixed ``"<scenario>/"``: one Monitor pass scores them together, with
        half the ticks (per-tick costs dominate for ML detectors). Detectors score each
        endpoint from its own window only, so batching endpoints together changes no score.
        """
        seeds = self.seeds(split) if seeds is None else tuple(seeds)
        groups: dict[tuple[float, float, float], list[int]] = {}
        for k, sc in enumerate(self.scenarios):
            groups.setdefault((sc.start_hour, sc.hours, sc.interval_s), []).append(k)
        out = []
        for seed in seeds:
            for ks in groups.values():
                parts = [(self.scenarios[k], int(seed) * 1000 + k) for k in ks]
                name = f"seed{seed}" if len(groups) == 1 else f"seed{seed}/{'+'.join(sc.name for sc, _ in parts)}"
                out.append(LabelledRun.from_fleet_factory(
                    name, lambda parts=parts: [(f"{sc.name}/", sc.fleet(fs)) for sc, fs in parts],
                    meta={"seed": int(seed), "scenarios": [sc.name for sc, _ in parts],
                          "fleet_seeds": [fs for _, fs in parts]}))
        return out

    def size(self, split: str = "test") -> int:
        """Endpoint-samples of one split."""
        return len(self.seeds(split)) * sum(
            s.endpoints * int(round(s.hours * 3600 / s.interval_s)) for s in self.scenarios)


def load_suite(name_or_path: str | os.PathLike[str]) -> Suite:
    """A suite by name (``"default"``: shipped in ``ocad/core/data/suites``) or from a TOML path."""
    p = Path(name_or_path)
    if p.suffix.lower() == ".toml" or p.is_file():
        try:
            text = p.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise OcadConfigError(f"suite file {str(p)!r} does not exist") from None
        source = str(p)
    else:
        ref = resources.files("ocad.core").joinpath(f"data/suites/{name_or_path}.toml")
        if not ref.is_file():
            shipped = sorted(x.name[:-5] for x in resources.files("ocad.core").joinpath("data/suites").iterdir()
                             if x.name.endswith(".toml"))
            raise OcadConfigError(f"no suite named {str(name_or_path)!r}; shipped suites: {shipped}, "
                                  "or give the path of a suite TOML file")
        text = ref.read_text(encoding="utf-8")
        source = f"ocad.core:data/suites/{name_or_path}.toml"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise OcadConfigError(f"suite {source!r} is not valid TOML: {exc}") from exc
    head = data.get("suite", {})
    seeds = data.get("seeds", {})
    interval = float(head.get("interval_s", 5.0))
    scen = tuple(Scenario.from_mapping(d, interval, f"{source}: scenarios[{i}]")
                 for i, d in enumerate(data.get("scenarios", [])))

    def seed_list(key: str) -> tuple[int, ...]:
        v = seeds.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, int) and not isinstance(x, bool) and x >= 0
                                              for x in v):
            raise OcadConfigError(f"{source}: seeds.{key} = {v!r}: must be a list of non-negative integers")
        return tuple(v)

    return Suite(name=str(head.get("name", p.stem)), scenarios=scen, tune_seeds=seed_list("tune"),
                 test_seeds=seed_list("test"), description=str(head.get("description", "")), source=source)


# -- labelled runs ------------------------------------------------------------------------
class _Labels:
    """Per-endpoint label codes on the endpoint's own (sorted) timestamps."""

    def __init__(self, names: Sequence[str], per_endpoint: Mapping[str, tuple[np.ndarray, np.ndarray]]) -> None:
        self.names = tuple(names)  # names[0] == "" (normal)
        self.per_endpoint = per_endpoint

    def lookup(self, endpoint_ids: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """(S,) label codes of the samples; 0 (normal) where the sample is not in the labels."""
        codes = np.zeros(ts.shape[0], dtype=np.int16)
        if ts.size == 0:
            return codes
        eps = np.asarray(endpoint_ids, dtype=object).astype(str)
        uniq, inv = np.unique(eps, return_inverse=True)
        order = np.argsort(inv, kind="stable")
        bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
        for k, e in enumerate(uniq):
            lab = self.per_endpoint.get(str(e))
            if lab is None:
                continue
            idx = order[bounds[k]:bounds[k + 1]]
            lt, lc = lab
            pos = np.clip(np.searchsorted(lt, ts[idx]), 0, len(lt) - 1)
            hit = lt[pos] == ts[idx]
            codes[idx[hit]] = lc[pos[hit]]
        return codes


@attrs.define(eq=False)
class LabelledRun:
    """One labelled data set: how to feed it to a Monitor, its labels and its fault events."""

    name: str
    meta: dict[str, Any]
    _load: Callable[[], dict[str, Any]]
    _data: dict[str, Any] | None = None

    @classmethod
    def from_fleet_factory(cls, name: str, make: Callable[[], Sequence[tuple[str, Any]]],
                           meta: Mapping[str, Any] | None = None) -> LabelledRun:
        """A run over fleets on one time grid: ``make()`` returns ``[(id prefix, Fleet), ...]``."""
        def load() -> dict[str, Any]:
            from ._synthetic import FAULT_TYPES

            fleets = list(make())
            ts0 = fleets[0][1].ts
            for _, f in fleets[1:]:
                if f.ts.shape != ts0.shape or not np.array_equal(f.ts, ts0):
                    raise OcadConfigError(f"run {name!r}: fleets on different time grids cannot share a run")
            per, events, endpoints, rows, days = {}, [], [], {}, {}
            for prefix, f in fleets:
                ids = [prefix + ep.endpoint_id for ep in f.endpoints]
                for i, e in enumerate(ids):
                    per[e] = (f.ts, f.labels[i])
                    rows[e] = (f, i)
                endpoints += ids
                events += [ev if not prefix else attrs.evolve(ev, endpoint_id=prefix + ev.endpoint_id)
                           for ev in f.events]
                days[prefix] = len(f.endpoints) * len(f.ts) * f.interval_s / _DAY_S
            events.sort(key=lambda ev: (ev.start_ts, ev.endpoint_id))
            return {"fleets": fleets, "rows": rows, "labels": _Labels(("", *FAULT_TYPES), per),
                    "events": tuple(events), "metrics": tuple(fleets[0][1].metrics), "endpoints": endpoints,
                    "ids": np.array(endpoints, dtype=object), "n_samples": len(endpoints) * len(ts0),
                    "endpoint_days": sum(days.values()), "prefix_days": days, "end_ts": float(ts0[-1])}
        return cls(name, dict(meta or {}), load)

    @classmethod
    def from_fleet(cls, fleet: Any, name: str = "fleet") -> LabelledRun:
        """A run over one generated :class:`~ocad.core.Fleet` (endpoint ids unchanged)."""
        return cls.from_fleet_factory(name, lambda: [("", fleet)], {"seed": int(fleet.seed)})

    @property
    def data(self) -> dict[str, Any]:
        if self._data is None:
            self._data = self._load()
        return self._data

    @property
    def events(self) -> tuple[Any, ...]:
        return self.data["events"]

    @property
    def labels(self) -> _Labels:
        return self.data["labels"]

    def release(self) -> None:
        """Drop the generated data (it is regenerated on demand)."""
        self._data = None

    def feed(self, mon: Any, progress: bool = False) -> list[AlertEvent]:
        """Every sample through ``mon`` in time order; returns the alert events."""
        from .._progress import Progress

        d = self.data
        events: list[AlertEvent] = []
        fleets = d.get("fleets")
        if fleets is not None:
            ids, metrics = d["ids"], d["metrics"]
            n = len(fleets[0][1].ts)
            with Progress(n, self.name, enabled=progress) as bar:
                step = max(n // 100, 1)
                for t in range(n):
                    cols = [f.columns(t) for _, f in fleets]
                    if len(cols) == 1:
                        ts, vals = cols[0][1], cols[0][2]
                    else:
                        ts = np.concatenate([c[1] for c in cols])
                        vals = {m: np.concatenate([c[2][m] for c in cols]) for m in metrics}
                    events += mon.observe_columns(ids, ts, vals)
                    if (t + 1) % step == 0:
                        bar.update(step)
            return events
        records = d["records"]
        chunk = 20_000
        with Progress(len(records), self.name, enabled=progress) as bar:
            for i in range(0, len(records), chunk):
                part = records[i:i + chunk]
                events += mon.observe(part)
                bar.update(len(part))
        return events

    def series(self, endpoint_id: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """(ts, {metric: values}) of one endpoint, for plots; metrics it never reports are left out."""
        d = self.data
        if "rows" in d:
            fleet, i = d["rows"][endpoint_id]
            vals = fleet.values[i]
            return fleet.ts, {m: vals[:, j] for j, m in enumerate(fleet.metrics) if np.isfinite(vals[:, j]).any()}
        return d["series"][endpoint_id]


_LABEL_COLS = tuple(sorted(LABEL_COLUMNS))


def load_labelled_file(path: str | os.PathLike[str], events_path: str | os.PathLike[str] | None = None
                       ) -> LabelledRun:
    """A user's labelled samples as a :class:`LabelledRun`.

    ``path``: CSV (or Parquet, ``io`` extra), wide (``endpoint_id, ts, <metric>...``) or long
    (``endpoint_id, ts, metric, value``), with a ``fault_type`` column: ``""`` (or ``"none"``,
    ``"normal"``, missing) for normal samples, else the fault's type
    (:func:`ocad.core._io.fault_type_name`; ``ocad train`` reads the same format).
    A repeated ``(endpoint_id, ts)`` (wide) or ``(endpoint_id, ts, metric)`` (long) keeps
    the first row, as the Monitor does; the count is in ``run.meta["dropped_duplicates"]``. ``ts`` must be epoch seconds. Events are the contiguous
    runs of one fault type per endpoint; an optional ``failure_ts`` column gives a gradual
    fault its hard-failure time (for lead times). ``events_path``: a JSON list of events
    (``ocad simulate --events``) to use instead of deriving them from the labels.
    """
    p = Path(path)
    if not p.is_file():
        raise OcadValidationError("path", str(p), "file does not exist")
    if p.suffix.lower() in (".parquet", ".pq"):
        from .._errors import require

        pd = require("pandas", "io", "reading Parquet")
        df = pd.read_parquet(p)
        header = [str(c) for c in df.columns]
        rows: Iterable[Mapping[str, Any]] = df.to_dict("records")
    else:
        fh = open(p, newline="", encoding="utf-8")
        reader = csv.DictReader(fh)
        header = list(reader.fieldnames or [])
        rows = _csv_rows(reader, fh)
    for req in ("endpoint_id", "ts", "fault_type"):
        if req not in header:
            raise OcadValidationError(req, None, f"{p.name} has no {req!r} column (columns: {header}); "
                                      "a labelled file needs endpoint_id, ts, metrics and fault_type "
                                      "('' for normal samples)")
    long = "metric" in header and "value" in header
    merged: dict[tuple[str, float], dict[str, Any]] = {}
    labels: dict[tuple[str, float], tuple[str, float]] = {}
    duplicates = 0
    for i, r in enumerate(rows):
        eid = str(r["endpoint_id"])
        ts = _num(r["ts"])
        if ts is None:
            raise OcadValidationError("ts", r["ts"], "a labelled file needs numeric epoch seconds", index=i)
        key = (eid, ts)
        rec = merged.get(key)
        if rec is None:
            rec = merged[key] = {"endpoint_id": eid, "ts": ts}
        elif not long:
            # The same (endpoint, ts) twice: the first is kept, as the Monitor does (duplicate_ts).
            duplicates += 1
            continue
        if long:
            m = r.get("metric")
            if isinstance(m, str) and m:
                if m in rec:
                    duplicates += 1
                    continue
                rec[m] = _cell(r.get("value"))
        else:
            for k, v in r.items():
                if k not in ("endpoint_id", "ts", *_LABEL_COLS):
                    rec[k] = _cell(v)
        ft = fault_type_name(r.get(FAULT_TYPE_COLUMN))
        fail = _num(r.get(FAILURE_TS_COLUMN))
        old = labels.get(key, ("", math.nan))
        labels[key] = (ft or old[0], fail if fail is not None else old[1])
    if not merged:
        raise OcadValidationError("path", str(p), "no samples")
    records = sorted(merged.values(), key=lambda r: (r["ts"], r["endpoint_id"]))
    keys = list(labels)
    ep = np.array([k[0] for k in keys], dtype=object)
    ts = np.array([k[1] for k in keys], dtype=np.float64)
    ft = [labels[k][0] for k in keys]
    fail = np.array([labels[k][1] for k in keys], dtype=np.float64)
    if events_path is not None:
        import json

        evs = tuple(LabelledEvent(str(e["endpoint_id"]), str(e["fault_type"]), float(e["start_ts"]),
                                  float(e["end_ts"]), None if e.get("failure_ts") is None else float(e["failure_ts"]))
                    for e in json.loads(Path(events_path).read_text(encoding="utf-8")))
    else:
        evs = tuple(events_from_labels(ep, ts, ft, fail))
    names = ["", *sorted({f for f in ft if f} | {e.fault_type for e in evs})]
    code = {n: i for i, n in enumerate(names)}
    per: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    series: dict[str, tuple[np.ndarray, dict[str, np.ndarray]]] = {}
    order = np.lexsort((ts, ep.astype(str)))
    eps_sorted = ep[order].astype(str)
    bounds = np.r_[0, np.flatnonzero(eps_sorted[1:] != eps_sorted[:-1]) + 1, len(order)]
    metric_names = sorted({k for r in records for k in r if k not in ("endpoint_id", "ts")})
    for a, b in zip(bounds[:-1], bounds[1:]):
        idx = order[a:b]
        e = str(eps_sorted[a])
        per[e] = (ts[idx], np.array([code[ft[i]] for i in idx], dtype=np.int16))
        recs = [merged[(e, float(t))] for t in ts[idx]]
        series[e] = (ts[idx], {m: np.array([_float(r.get(m)) for r in recs]) for m in metric_names
                               if any(r.get(m) is not None for r in recs)})
    days = 0.0
    for e, (t, _) in per.items():
        step = float(np.median(np.diff(t))) if len(t) > 1 else 0.0
        days += (float(t[-1] - t[0]) + step) / _DAY_S
    data = {"records": records, "labels": _Labels(names, per), "events": evs, "metrics": tuple(metric_names),
            "endpoints": sorted(per), "n_samples": len(records), "endpoint_days": days,
            "end_ts": float(ts.max()), "series": series}
    return LabelledRun(p.name, {"file": str(p), "dropped_duplicates": duplicates}, lambda: data)


def _csv_rows(reader: csv.DictReader, fh: Any) -> Iterable[dict[str, Any]]:
    with fh:
        yield from reader


def _cell(v: Any) -> Any:
    if v is None:
        return None
    if isinstance(v, str):
        if v == "" or v.lower() in ("nan", "null", "none"):
            return None
        try:
            return float(v)
        except ValueError:
            return v  # validation rejects and counts it
    if isinstance(v, float) and v != v:
        return None
    return v


def _num(v: Any) -> float | None:
    c = _cell(v)
    return float(c) if isinstance(c, (int, float)) and not isinstance(c, bool) else None


def _float(v: Any) -> float:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else math.nan


# -- monitors ---------------------------------------------------------------------------
@attrs.frozen
class MonitorFactory:
    """Builds fresh, identically configured Monitors (one per run), optionally with detectors disabled."""

    config: MonitorConfig = attrs.field(factory=MonitorConfig, converter=MonitorConfig.coerce)
    model_dir: str | None = None
    registry: Any = None
    extra_detectors: tuple[Any, ...] = ()

    def __call__(self, *, disable: Iterable[str] = (), alerts: Mapping[str, Any] | None = None) -> Any:
        from .._monitor import Monitor

        cfg = self.config
        dets = {k: dict(v) for k, v in cfg.detectors.items()}
        for n in disable:
            dets[n] = {**dets.get(n, {}), "enabled": False}
        cfg = attrs.evolve(cfg, detectors=dets, alerts=attrs.evolve(cfg.alerts, **dict(alerts or {})))
        if self.model_dir:
            return Monitor.from_model_dir(self.model_dir, cfg, registry=self.registry)
        extra = [d for d in self.extra_detectors if d.name not in set(disable)]
        return Monitor(cfg, registry=self.registry, extra_detectors=extra)


# -- recording and replaying scores ------------------------------------------------------
class _Recorder:
    """A Monitor shadow (``Monitor.shadows``): keeps each tick's scores; no effect on the Monitor."""

    def __init__(self, warmup: int, window: int = 1) -> None:
        self.warmup = warmup
        self.window = window
        self.ep: list[np.ndarray] = []
        self.ts: list[np.ndarray] = []
        self.comp: list[np.ndarray] = []
        self.ds: list[np.ndarray] = []
        self.ready: list[np.ndarray] = []
        self.names: tuple[str, ...] | None = None
        self.kinds: tuple[str, ...] = ()
        self.n = 0
        # Forecasts of the residual detector: metric -> lists of (sample index, observed, model, naive).
        self.fc: dict[str, list[list[np.ndarray]]] = {}

    def observe_tick(self, view: Any, b: Any, comp: CompositeOutput, events: Any) -> None:
        if self.names is None:
            self.names, self.kinds = tuple(comp.detectors), tuple(comp.kinds)
        n = len(b.endpoint_id)
        self.ep.append(np.asarray(b.endpoint_id, dtype=object))
        self.ts.append(np.asarray(b.ts, dtype=np.float64))
        self.comp.append(np.asarray(comp.scores, dtype=np.float64))
        self.ds.append(np.asarray(comp.detector_scores, dtype=np.float64))
        self.ready.append(np.asarray(view.counts >= self.warmup))
        if "residual" in comp.kinds:
            self._forecasts(view, comp.outputs[comp.kinds.index("residual")])
        self.n += n

    def _forecasts(self, view: Any, out: DetectorOutput) -> None:
        if out.observed is None or out.expected is None:
            return
        for k, m in enumerate(out.metrics):
            j = view.metric_index(m)
            exp = out.expected[:, k]
            rows = np.flatnonzero(np.isfinite(exp) & np.isfinite(out.observed[:, k]))
            if j is None or rows.size == 0:
                continue
            # Naive forecast: the endpoint's last value before the newest sample.
            x = view.values[rows, :-1, j]
            fin = np.isfinite(x)
            last = x.shape[1] - 1 - np.argmax(fin[:, ::-1], axis=1)
            naive = np.where(fin.any(axis=1), x[np.arange(rows.size), last], np.nan)
            self.fc.setdefault(m, []).append([rows + self.n, out.observed[rows, k], exp[rows], naive])

    def cache(self, weights: Mapping[str, float]) -> ScoreCache:
        names = self.names or ()
        sizes = np.array([len(e) for e in self.ep], dtype=np.int64)
        cat = (lambda xs, shape=(0,): np.concatenate(xs) if xs else np.empty(shape))  # noqa: E731
        fc = {m: tuple(np.concatenate([p[i] for p in parts]) for i in range(4)) for m, parts in self.fc.items()}
        return ScoreCache(
            names=names, kinds=self.kinds, weights=np.array([float(weights.get(n, 1.0)) for n in names]),
            endpoint_id=cat(self.ep).astype(object), ts=cat(self.ts), composite=cat(self.comp),
            detector_scores=np.concatenate(self.ds) if self.ds else np.empty((0, len(names))),
            ready=cat(self.ready).astype(bool), bounds=np.r_[0, np.cumsum(sizes)], forecasts=fc,
            window=self.window)


@attrs.frozen(eq=False)
class ScoreCache:
    """Every scored sample of one run: ids, times, composite and per-detector scores, warm-up state.

    ``bounds[t]:bounds[t + 1]`` are the samples of tick ``t``.
    """

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    weights: np.ndarray
    endpoint_id: np.ndarray
    ts: np.ndarray
    composite: np.ndarray
    detector_scores: np.ndarray
    ready: np.ndarray
    bounds: np.ndarray
    forecasts: Mapping[str, tuple[np.ndarray, ...]] = attrs.field(factory=dict)
    window: int = 1  # the Monitor's window (samples a detector saw per endpoint)

    def clean(self, actual: np.ndarray) -> np.ndarray:
        """(S,) bool: no labelled sample among the endpoint's last ``window`` samples (this one included).

        Forecasts made from a window that still holds a fault measure the fault, not the
        forecaster: forecaster metrics use only these samples.
        """
        ids, order, bounds = _group_by_endpoint(self.endpoint_id, self.ts)
        cs = np.cumsum(actual[order].astype(np.int64))
        i = np.arange(order.size)
        first = np.repeat(bounds[:-1], np.diff(bounds))
        lo = np.maximum(i - self.window, first - 1)
        recent = cs - np.where(lo >= 0, cs[np.maximum(lo, 0)], 0)
        out = np.empty(order.size, dtype=bool)
        out[order] = recent == 0
        return out


_NO_EVIDENCE = DetectorOutput(scores=np.empty(0))


def combine(detector_scores: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(composite (S,), contributions (S, D)): :class:`CompositeDetector`'s combination, all samples at once."""
    s = detector_scores
    ok = ~np.isnan(s)
    w = np.where(ok, weights[None, :], 0.0)
    wsum = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        contrib = np.where(ok, w * np.nan_to_num(s), 0.0) / wsum[:, None]
    contrib = np.where(wsum[:, None] > 0, contrib, 0.0)
    comp = np.where(wsum > 0, contrib.sum(axis=1), np.nan)
    return comp, contrib


def replay_alerts(cache: ScoreCache, *, weights: Mapping[str, float] | None = None,
                  alerts: AlertPolicyConfig | None = None, detectors: Iterable[str] | None = None) -> list[Alert]:
    """The alerts a Monitor with only ``detectors`` (default: all), ``weights`` and ``alerts`` would raise.

    Recombines the cached detector scores exactly as :class:`CompositeDetector` does and runs
    a fresh :class:`AlertPolicy` tick by tick; ticks where no endpoint is active and no state
    is pending are skipped (the policy would do nothing there). Evidence carries detector
    scores and contributions but no metric values.
    """
    keep = set(cache.names if detectors is None else detectors)
    sel = [j for j, n in enumerate(cache.names) if n in keep]
    names = tuple(cache.names[j] for j in sel)
    kinds = tuple(cache.kinds[j] for j in sel)
    w = cache.weights[sel].copy()
    for j, n in enumerate(names):
        if weights is not None and n in weights:
            w[j] = float(weights[n])
    cfg = alerts or AlertPolicyConfig()
    s = cache.detector_scores[:, sel]
    comp, contrib = combine(s, w)
    policy = AlertPolicy(cfg)
    bounds = cache.bounds
    busy = (np.nan_to_num(s, nan=0.0) >= cfg.evidence_threshold).any(axis=1) \
        | (np.nan_to_num(comp, nan=0.0) >= cfg.open_threshold)
    if busy.size:
        starts = bounds[:-1]
        nonempty = bounds[1:] > starts
        tick_busy = np.zeros(len(starts), dtype=bool)
        tick_busy[nonempty] = np.logical_or.reduceat(busy, starts[nonempty])
    else:
        tick_busy = np.zeros(len(bounds) - 1, dtype=bool)
    outs = (_NO_EVIDENCE,) * len(sel)
    events: list[AlertEvent] = []
    ep, ts, ready = cache.endpoint_id, cache.ts, cache.ready
    for t in range(len(bounds) - 1):
        if not tick_busy[t] and not policy._states:
            continue
        a, b = bounds[t], bounds[t + 1]
        co = CompositeOutput(scores=comp[a:b], detectors=names, kinds=kinds, weights=w,
                             detector_scores=s[a:b], contributions=contrib[a:b], outputs=outs)
        events += policy.update(ep[a:b], ts[a:b], co, ready=ready[a:b])
    return alerts_from_events(events)


# -- evaluation --------------------------------------------------------------------------
@attrs.define(eq=False)
class RunResult:
    """What one run produced: its data, cached scores, alert events and alerts."""

    run: LabelledRun
    cache: ScoreCache
    events: list[AlertEvent]
    alerts: list[Alert]
    seconds: float
    codes: np.ndarray  # (S,) label code of every scored sample

    @property
    def actual(self) -> np.ndarray:
        return self.codes > 0

    def part(self, prefix: str | None = None, *, alerts: Sequence[Alert] | None = None,
             composite: np.ndarray | None = None) -> _Part:
        """The run (or its endpoints whose id starts with ``prefix``), with these alerts / composite scores."""
        c = self.cache
        alerts = self.alerts if alerts is None else alerts
        comp = c.composite if composite is None else composite
        d = self.run.data
        if not prefix:
            return _Part(self.run.events, alerts, d["end_ts"], d["endpoint_days"], c.endpoint_id, c.ts, comp,
                         self.codes, self.run.labels.names)
        sel = np.fromiter((e.startswith(prefix) for e in c.endpoint_id), dtype=bool, count=c.endpoint_id.size)
        days = d.get("prefix_days", {}).get(prefix, d["endpoint_days"])
        return _Part([e for e in self.run.events if e.endpoint_id.startswith(prefix)],
                     [a for a in alerts if a.endpoint_id.startswith(prefix)], d["end_ts"], days,
                     c.endpoint_id[sel], c.ts[sel], comp[sel], self.codes[sel], self.run.labels.names)


@attrs.define(eq=False)
class Evaluation:
    """The result of :func:`evaluate`: ``metrics`` (JSON-ready, stable keys) and the per-run results."""

    metrics: dict[str, Any]
    results: list[RunResult]

    def to_json(self) -> str:
        import json

        return json.dumps(_json_ready(self.metrics), indent=2, allow_nan=False)

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_json() + "\n", encoding="utf-8")
        return p


def _json_ready(x: Any) -> Any:
    if isinstance(x, Mapping):
        return {str(k): _json_ready(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_json_ready(v) for v in x]
    if isinstance(x, (np.floating, float)):
        return float(x) if math.isfinite(x) else None
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, np.bool_):
        return bool(x)
    return x


def score_run(run: LabelledRun, mon: Any, *, progress: bool = False) -> RunResult:
    """Feed one run through ``mon`` (fresh) once, recording every tick's scores."""
    rec = _Recorder(mon.warmup_samples, mon.window)
    mon.shadows.append(rec)
    t0 = time.perf_counter()
    try:
        events = run.feed(mon, progress=progress)
    finally:
        mon.shadows.remove(rec)
    dt = time.perf_counter() - t0
    weights = dict(zip(mon.composite.names, (float(w) for w in mon.composite.weights)))
    cache = rec.cache(weights)
    codes = run.labels.lookup(cache.endpoint_id, cache.ts)
    return RunResult(run, cache, events, alerts_from_events(events), dt, codes)


@attrs.frozen(eq=False)
class _Part:
    """What the metrics need of (a part of) one run: its events, alerts and scored samples."""

    events: Sequence[Any]
    alerts: Sequence[Alert]
    end_ts: float
    endpoint_days: float
    endpoint_id: np.ndarray
    ts: np.ndarray
    composite: np.ndarray
    codes: np.ndarray
    label_names: tuple[str, ...]


def _summary(parts: Sequence[_Part], *, grace_s: float = 120.0, point: bool = True) -> dict[str, Any]:
    """Event and (unless ``point=False``) point metrics pooled over parts; events match within their part."""
    matches, false, n_alerts, days = [], [], 0, 0.0
    actual, predicted, scores, codes = [], [], [], []
    for part in parts:
        m, f = match_events(part.alerts, part.events, end_ts=part.end_ts, grace_s=grace_s)
        matches += m
        false += f
        n_alerts += len(part.alerts)
        days += part.endpoint_days
        if not point:
            continue
        actual.append(part.codes > 0)
        codes.append(part.codes)
        predicted.append(alert_open_mask(part.alerts, part.endpoint_id, part.ts))
        scores.append(np.nan_to_num(part.composite, nan=0.0))
    ev = summarize_matches(matches, false, n_alerts, days)
    ev["event_f1"] = event_f1(ev)
    ev["endpoint_days"] = days
    if not point:
        return {"event": ev, "matches": matches}
    y = np.concatenate(actual) if actual else np.zeros(0, bool)
    p = np.concatenate(predicted) if predicted else np.zeros(0, bool)
    s = np.concatenate(scores) if scores else np.zeros(0)
    c = np.concatenate(codes) if codes else np.zeros(0, np.int16)
    pt = point_metrics(y, p)
    pt["roc_auc"] = roc_auc(y, s)
    pt["pr_auc"] = pr_auc(y, s)
    pt["samples"] = int(y.size)
    pt["anomalous_samples"] = int(y.sum())
    names = parts[0].label_names if parts else ("",)
    for ft, row in ev["per_fault_type"].items():
        if ft in names:
            sel = c == names.index(ft)
            row["samples"] = int(sel.sum())
            row["point_recall"] = float(p[sel].mean()) if sel.any() else None
    return {"event": ev, "point": pt, "matches": matches}


def _ablation_rows(names: Sequence[str], cfg: MonitorConfig) -> list[dict[str, Any]]:
    rows, so_far = [], []
    for label, added in ABLATION_ROWS:
        if not added:
            rows.append({"row": label, "detectors": list(names), "status": "ok"})
            continue
        so_far += list(added)
        missing = [n for n in added if n not in names]
        present = [n for n in so_far if n in names]
        if missing:
            why = "disabled by config" if not all(cfg.enabled(n) for n in missing) else "not installed"
            rows.append({"row": label, "detectors": present, "status": why})
        else:
            rows.append({"row": label, "detectors": present, "status": "ok"})
    return rows


def _row_metrics(s: Mapping[str, Any]) -> dict[str, Any]:
    ev, pt = s["event"], s["point"]
    return {"event_precision": ev["event_precision"], "event_recall": ev["event_recall"],
            "event_f1": ev["event_f1"], "precision": pt["precision"], "recall": pt["recall"], "f1": pt["f1"],
            "false_alarm_rate": pt["false_alarm_rate"], "roc_auc": pt["roc_auc"], "pr_auc": pt["pr_auc"],
            "alerts": ev["alerts"], "false_alerts": ev["false_alerts"],
            "false_alerts_per_endpoint_day": ev["false_alerts_per_endpoint_day"],
            "mttd_s": ev["mttd_s"], "lead_time_p50_s": ev["lead_time_p50_s"],
            "per_fault_type_recall": {ft: r["recall"] for ft, r in ev["per_fault_type"].items()}}


def _forecaster(results: Sequence[RunResult]) -> dict[str, Any]:
    if not any(r.cache.forecasts for r in results):
        return {"status": "not installed",
                "note": "no residual detector (TCN forecasters) in this Monitor"}
    per: dict[str, dict[str, Any]] = {}
    metrics = sorted({m for r in results for m in r.cache.forecasts})
    clean = {id(r): r.cache.clean(r.actual) for r in results if r.cache.forecasts}
    for m in metrics:
        obs, mod, nai = [], [], []
        for r in results:
            fc = r.cache.forecasts.get(m)
            if fc is None:
                continue
            idx, o, e, n = fc
            normal = clean[id(r)][idx]
            obs.append(o[normal])
            mod.append(e[normal])
            nai.append(n[normal])
        o, e, n = (np.concatenate(x) for x in (obs, mod, nai))
        ok = np.isfinite(n)  # compare on the samples where both forecasts exist
        model, naive = forecast_errors(o[ok], e[ok]), forecast_errors(o[ok], n[ok])
        skill = (1.0 - model["mse"] / naive["mse"]) if model["mse"] is not None and naive["mse"] else None
        per[m] = {"model": model, "naive": naive, "skill_vs_naive": skill,
                  "beats_naive": bool(skill is not None and skill > 0)}
    return {"status": "ok", "samples": "normal samples whose window holds no labelled fault", "metrics": per}


def _targets(metrics: Mapping[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, op, bound, desc in TARGETS:
        v = metrics.get(key)
        ok = v is not None and math.isfinite(v) and (v >= bound if op == ">=" else v <= bound)
        out.append({"key": key, "description": desc, "target": f"{op} {bound:g}", "value": v, "met": bool(ok)})
    abl = {r["row"]: r for r in metrics.get("ablation", [])}
    full, rule = abl.get("full composite", {}), abl.get("rule only", {})
    fv, rv = full.get("event_f1"), rule.get("event_f1")
    ok = fv is not None and rv is not None and math.isfinite(fv) and math.isfinite(rv) and fv > rv
    out.append({"key": "full_vs_rule_event_f1", "description": "full composite better than rule only (event F1)",
                "target": "> rule only", "value": [fv, rv], "met": bool(ok)})
    return out


def evaluate(source: Suite | str | os.PathLike[str] | LabelledRun | Sequence[LabelledRun] = "default", *,
             split: str = "test", factory: MonitorFactory | None = None, ablation: str = "replay",
             grace_s: float = 120.0, progress: bool = False) -> Evaluation:
    """Run labelled data through Monitors and compute every quality metric after the alert policy.

    Parameters
    ----------
    source:
        A :class:`Suite` or suite name/path (its ``split`` seeds are used), a
        :class:`LabelledRun` (e.g. :func:`load_labelled_file`) or a list of them.
    factory:
        Builds the Monitors (default: ``MonitorFactory()``, i.e. ``Monitor.from_defaults()``).
    ablation:
        ``"replay"`` (cached detector scores, no extra detector runs), ``"rerun"`` (a real
        Monitor per ablation row) or ``"none"``.

    Returns an :class:`Evaluation`; ``evaluation.metrics`` has the stable top-level keys
    ``precision, recall, f1, false_alarm_rate, roc_auc, pr_auc, event_precision, event_recall,
    event_f1, mttd_s, lead_time_p50_s, false_alerts_per_endpoint_day`` and the tables
    ``per_fault_type``, ``ablation``, ``forecaster``, ``runs``, ``targets``.
    """
    if ablation not in ("replay", "rerun", "none"):
        raise OcadConfigError(f"ablation = {ablation!r}: use 'replay', 'rerun' or 'none'")
    factory = factory or MonitorFactory()
    src: dict[str, Any]
    if isinstance(source, LabelledRun):
        runs, src = [source], {"kind": "data", "runs": [source.name]}
    elif isinstance(source, (list, tuple)):
        runs, src = list(source), {"kind": "data", "runs": [r.name for r in source]}
    else:
        suite = source if isinstance(source, Suite) else load_suite(source)
        runs = suite.runs(split)
        src = {"kind": "suite", "suite": suite.name, "source": suite.source, "split": split,
               "seeds": list(suite.seeds(split)), "scenarios": [attrs.asdict(s) for s in suite.scenarios]}
    t0 = time.perf_counter()
    results: list[RunResult] = []
    mon = None
    for run in runs:
        mon = factory()
        results.append(score_run(run, mon, progress=progress))
    if mon is None:
        raise OcadConfigError("nothing to evaluate: no labelled runs")
    names = tuple(mon.composite.names)
    _same_detectors(results)
    main = _summary([r.part() for r in results], grace_s=grace_s)
    ev, pt = main["event"], main["point"]
    metrics: dict[str, Any] = {
        "schema": SCHEMA,
        "source": src,
        "detectors": list(names),
        "weights": {n: float(w) for n, w in zip(names, mon.composite.weights)},
        "alert_policy": attrs.asdict(mon.config.alerts),
        "precision": pt["precision"], "recall": pt["recall"], "f1": pt["f1"],
        "false_alarm_rate": pt["false_alarm_rate"], "roc_auc": pt["roc_auc"], "pr_auc": pt["pr_auc"],
        "event_precision": ev["event_precision"], "event_recall": ev["event_recall"], "event_f1": ev["event_f1"],
        "mttd_s": ev["mttd_s"], "lead_time_p50_s": ev["lead_time_p50_s"],
        "lead_time_fault_types": sorted({m.fault_type for m in main["matches"] if m.failure_ts is not None}),
        "false_alerts_per_endpoint_day": ev["false_alerts_per_endpoint_day"],
        "events": ev["events"], "events_detected": ev["events_detected"], "alerts": ev["alerts"],
        "false_alerts": ev["false_alerts"], "endpoint_days": ev["endpoint_days"], "samples": pt["samples"],
        "point": {k: pt[k] for k in ("tp", "fp", "fn", "tn", "samples", "anomalous_samples")},
        "per_fault_type": ev["per_fault_type"],
        "detector_contributions": _contributions(r.events for r in results),
        "forecaster": _forecaster(results),
        "runs": [],
        "timing": {"runs": []},
    }
    for r in results:
        prefixes = [p for p in r.run.data.get("prefix_days", {}) if p] or [None]
        for prefix in prefixes:
            part = r.part(prefix)
            row = _row_metrics(_summary([part], grace_s=grace_s))
            del row["per_fault_type_recall"]
            metrics["runs"].append({
                "run": r.run.name + (f" {prefix.rstrip('/')}" if prefix else ""),
                "seed": r.run.meta.get("seed"), "scenario": prefix.rstrip("/") if prefix else None,
                "endpoints": len({e for e in part.endpoint_id}), "samples": int(part.ts.size),
                "endpoint_days": part.endpoint_days, "events": len(part.events), **row})
        metrics["timing"]["runs"].append({"run": r.run.name, "samples": int(r.cache.ts.size),
                                          "seconds": r.seconds})
    rows = _ablation_rows(names, mon.config) if ablation != "none" else []
    for row in rows:
        if row["status"] != "ok":
            continue
        kinds = {k for n, k in zip(names, mon.composite.kinds) if n in row["detectors"]}
        min_kinds = mon.config.alerts.min_kinds
        if len(kinds) < min_kinds:
            row["min_kinds"] = 1
            row["note"] = (f"alert policy min_kinds lowered from {min_kinds} to 1: "
                           f"{len(kinds)} evidence kind(s) cannot meet it")
        else:
            row["min_kinds"] = min_kinds
        if row["row"] == "full composite":
            row.update(_row_metrics(main))
            continue
        alerts_cfg = attrs.evolve(mon.config.alerts, min_kinds=row["min_kinds"])
        if ablation == "replay":
            per_run = [replay_alerts(r.cache, alerts=alerts_cfg, detectors=row["detectors"]) for r in results]
            comps = []
            for r in results:
                sel = [j for j, n in enumerate(r.cache.names) if n in row["detectors"]]
                comps.append(combine(r.cache.detector_scores[:, sel], r.cache.weights[sel])[0])
            row.update(_row_metrics(_summary([r.part(alerts=a, composite=c)
                                              for r, a, c in zip(results, per_run, comps)], grace_s=grace_s)))
        else:
            disable = [n for n in names if n not in row["detectors"]]
            sub = [score_run(r.run, factory(disable=disable, alerts={"min_kinds": row["min_kinds"]}),
                             progress=progress) for r in results]
            row.update(_row_metrics(_summary([x.part() for x in sub], grace_s=grace_s)))
        row["mode"] = ablation
    metrics["ablation"] = rows
    metrics["ablation_mode"] = ablation
    metrics["targets"] = _targets(metrics)
    total = time.perf_counter() - t0
    scoring = sum(r.seconds for r in results)
    metrics["timing"].update({"seconds": total, "scoring_seconds": scoring,
                              "samples_per_s": pt["samples"] / scoring if scoring > 0 else None})
    return Evaluation(_json_ready(metrics), results)


def _same_detectors(results: Sequence[RunResult]) -> None:
    sets = {r.run.name: r.cache.names for r in results}
    if len(set(sets.values())) > 1:
        raise OcadConfigError(f"the Monitors of the runs had different detectors ({sets}): were models or "
                              "plugins installed while evaluating? Run again.")


def _contributions(event_lists: Iterable[Sequence[AlertEvent]]) -> dict[str, float]:
    tot: dict[str, float] = {}
    for events in event_lists:
        for ev in events:
            if ev.event == "open":
                for e in ev.alert.evidence:
                    tot[e.detector] = tot.get(e.detector, 0.0) + e.contribution
    s = sum(tot.values())
    return {k: v / s for k, v in sorted(tot.items(), key=lambda kv: -kv[1])} if s else {}


# -- tuning ------------------------------------------------------------------------------
WEIGHT_GRID = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0)
ALERT_GRID: dict[str, tuple[float, ...]] = {
    # The composite of calibrated scores averages about 0.5 on normal data (a mean of
    # roughly uniform scores), so thresholds well above it matter most.
    "open_threshold": (0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8),
    "evidence_threshold": (0.97, 0.98, 0.99, 0.995, 0.998, 0.999),
    "confirm_samples": (1, 2, 3, 4),
    "hold_down_s": (15.0, 30.0, 60.0, 120.0, 180.0, 300.0),
}


@attrs.frozen
class TuneResult:
    """Best weights and alert thresholds found on the tuning seeds, with before/after metrics."""

    suite: str
    seeds: tuple[int, ...]
    weights: dict[str, float]
    alerts: dict[str, Any]
    before: dict[str, Any]
    after: dict[str, Any]
    max_false_alerts_per_endpoint_day: float
    evaluations: int
    max_false_alarm_rate: float = 0.05

    def config_mapping(self, base: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """``base`` (a config mapping, e.g. the TOML the tuning started from) with the tuned values."""
        out: dict[str, Any] = {k: (dict(v) if isinstance(v, Mapping) else v) for k, v in (base or {}).items()}
        dets = {k: dict(v) for k, v in out.get("detectors", {}).items()}
        for n, w in self.weights.items():
            dets[n] = {**dets.get(n, {}), "weight": w}
        out["detectors"] = dets
        out["alerts"] = {**out.get("alerts", {}), **self.alerts}
        return out

    def to_toml(self, base: Mapping[str, Any] | None = None) -> str:
        b, a = self.before, self.after
        head = [
            f"# Written by `ocad tune-weights` on suite {self.suite!r}, tuning seeds {list(self.seeds)} only.",
            f"# Objective: event F1, subject to <= {self.max_false_alerts_per_endpoint_day:g} false alerts per "
            f"endpoint-day and a point false-alarm rate <= {self.max_false_alarm_rate:g} "
            f"({self.evaluations} candidates).",
            *(f"# {label:<7} event F1 {_f(m['event_f1'])}, precision {_f(m['event_precision'])}, recall "
              f"{_f(m['event_recall'])}, false alerts/endpoint-day {_f(m['false_alerts_per_endpoint_day'])}, "
              f"false-alarm rate {_f(m.get('false_alarm_rate'), 4)}, lead p50 {_f(m['lead_time_p50_s'], 0)} s"
              for label, m in (("before:", b), ("after:", a))),
            "# Load with Monitor(\"<this file>\") or `ocad evaluate --config <this file>`.",
            "",
        ]
        return "\n".join(head) + _toml_dumps(self.config_mapping(base))

    def write(self, path: str | os.PathLike[str], base: Mapping[str, Any] | None = None) -> Path:
        p = Path(path)
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(self.to_toml(base), encoding="utf-8")
        MonitorConfig.from_toml(p)  # what we write must load
        return p


def _f(v: Any, nd: int = 3) -> str:
    return "-" if v is None or (isinstance(v, float) and not math.isfinite(v)) else f"{v:.{nd}f}"


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else ("nan" if v != v else ("inf" if v > 0 else "-inf"))
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise OcadConfigError(f"cannot write {v!r} ({type(v).__name__}) to TOML")


def _toml_key(k: str) -> str:
    return k if k.replace("_", "").replace("-", "").isalnum() else _toml_value(str(k))


def _toml_dumps(d: Mapping[str, Any]) -> str:
    """TOML for a config mapping: top-level tables, one level of sub-tables, inline tables below."""
    lines: list[str] = []
    for top, body in d.items():
        if not isinstance(body, Mapping):
            raise OcadConfigError(f"config key {top!r} must be a table")
        scalars = {k: v for k, v in body.items() if not isinstance(v, Mapping)}
        tables = {k: v for k, v in body.items() if isinstance(v, Mapping)}
        if top in ("detectors", "metrics"):
            for name, sub in tables.items():
                lines.append(f"[{_toml_key(top)}.{_toml_key(name)}]")
                lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in sub.items()]
                lines.append("")
            if scalars:
                raise OcadConfigError(f"[{top}] holds only tables")
            continue
        lines.append(f"[{_toml_key(top)}]")
        lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in {**scalars, **tables}.items()]
        lines.append("")
    return "\n".join(lines)


def tune_weights(suite: Suite | str | os.PathLike[str] = "default", *, factory: MonitorFactory | None = None,
                 seeds: Sequence[int] | None = None, max_false_alerts_per_endpoint_day: float = 1.0,
                 max_false_alarm_rate: float = 0.05, rounds: int = 2, weight_grid: Sequence[float] = WEIGHT_GRID,
                 alert_grid: Mapping[str, Sequence[float]] | None = None, grace_s: float = 120.0,
                 progress: bool = False) -> TuneResult:
    """Coordinate search over detector weights and alert thresholds on the suite's *tuning* seeds.

    Each tuning fleet is scored once; every candidate replays the cached detector scores
    (:func:`replay_alerts`). The objective is event F1 among candidates with at most
    ``max_false_alerts_per_endpoint_day`` and a point false-alarm rate (share of normal
    samples under an open alert) of at most ``max_false_alarm_rate``; ties go to the longer
    drift lead time, then to fewer false alerts. Without the second bound, alerts that never
    resolve would win: one endless alert "detects" every later fault of its endpoint and is
    never false. ``min_kinds`` is not tuned: one detector alone never opens an alert.

    Raises :class:`OcadConfigError` when ``seeds`` holds a test seed of the suite.
    """
    suite = suite if isinstance(suite, Suite) else load_suite(suite)
    seeds = tuple(suite.tune_seeds if seeds is None else seeds)
    leaked = sorted(set(seeds) & set(suite.test_seeds))
    if leaked:
        raise OcadConfigError(f"seed(s) {leaked} are test seeds of suite {suite.name!r}; tune-weights reads "
                              f"only tuning seeds (suite tuning seeds: {list(suite.tune_seeds)})")
    if not seeds:
        raise OcadConfigError("tune-weights needs at least one tuning seed")
    factory = factory or MonitorFactory()
    grid = dict(ALERT_GRID if alert_grid is None else alert_grid)
    results, mon = [], None
    for run in suite.runs("tune", seeds=seeds):
        mon = factory()
        results.append(score_run(run, mon, progress=progress))
    if mon is None:
        raise OcadConfigError("nothing to tune on: no labelled runs")
    names = tuple(mon.composite.names)
    _same_detectors(results)
    base_alerts = mon.config.alerts
    groups = [_group_by_endpoint(r.cache.endpoint_id, r.cache.ts) for r in results]
    negatives = sum(int((~r.actual).sum()) for r in results)
    state: dict[str, Any] = {**{f"w:{n}": float(w) for n, w in zip(names, mon.composite.weights)},
                             **{k: getattr(base_alerts, k) for k in grid}}
    seen: dict[tuple[Any, ...], tuple[tuple[Any, ...], dict[str, Any]]] = {}

    def evaluate_state(st: Mapping[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any]]:
        key = tuple(sorted(st.items()))
        if key in seen:
            return seen[key]
        w = {n: st[f"w:{n}"] for n in names}
        if not any(v > 0 for v in w.values()):
            res = ((False, -1.0, -math.inf, -math.inf), {})
            seen[key] = res
            return res
        cfg = attrs.evolve(base_alerts, **{k: st[k] for k in grid})
        per_run = [replay_alerts(r.cache, weights=w, alerts=cfg) for r in results]
        ev = _summary([r.part(alerts=a) for r, a in zip(results, per_run)], grace_s=grace_s, point=False)["event"]
        fp = sum(int((_open_mask(a, r.cache.ts, g) & ~r.actual).sum()) for r, a, g in zip(results, per_run, groups))
        ev["false_alarm_rate"] = far = fp / negatives if negatives else 0.0
        fapd = ev["false_alerts_per_endpoint_day"]
        f1 = ev["event_f1"] if math.isfinite(ev["event_f1"]) else 0.0
        lead = ev["lead_time_p50_s"] if ev["lead_time_p50_s"] is not None else -math.inf
        ok = fapd <= max_false_alerts_per_endpoint_day and far <= max_false_alarm_rate
        res = ((bool(ok), round(f1, 4), lead, -fapd), ev)
        seen[key] = res
        return res

    best_key, before = evaluate_state(state)
    coords: list[tuple[str, Sequence[Any]]] = [(f"w:{n}", tuple(weight_grid)) for n in names]
    coords += [(k, tuple(v)) for k, v in grid.items()]
    for rnd in range(max(rounds, 1)):
        changed = False
        for key, values in coords:
            for v in values:
                if v == state[key]:
                    continue
                cand = {**state, key: type(state[key])(v) if not isinstance(state[key], bool) else v}
                k, _ = evaluate_state(cand)
                if k > best_key:
                    best_key, state, changed = k, cand, True
            if progress:
                print(f"tune round {rnd + 1}: {key} = {state[key]}  (event F1 {best_key[1]:.4f}, "
                      f"{len(seen)} candidates)", file=sys.stderr)
        if not changed:
            break
    _, after = evaluate_state(state)
    keep = ("event_precision", "event_recall", "event_f1", "false_alerts_per_endpoint_day", "false_alarm_rate",
            "lead_time_p50_s", "mttd_s", "events", "alerts", "false_alerts")
    return TuneResult(
        suite=suite.name, seeds=seeds, weights={n: float(state[f"w:{n}"]) for n in names},
        alerts={k: (int(state[k]) if k == "confirm_samples" else float(state[k])) for k in grid},
        before=_json_ready({k: before.get(k) for k in keep}), after=_json_ready({k: after.get(k) for k in keep}),
        max_false_alerts_per_endpoint_day=float(max_false_alerts_per_endpoint_day),
        max_false_alarm_rate=float(max_false_alarm_rate), evaluations=len(seen))


# -- text output ---------------------------------------------------------------------------
def _p(v: Any, nd: int = 3) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return f"{v:.{nd}f}"


def format_evaluation(m: Mapping[str, Any]) -> str:
    """The readable table ``ocad evaluate`` prints: overall, per fault type, ablation, forecaster, targets."""
    src = m["source"]
    out = []
    if src.get("kind") == "suite":
        out.append(f"OCAD evaluate: suite {src['suite']!r}, {src['split']} seeds {src['seeds']}: "
                   f"{len(m['runs'])} fleets, {m['samples']:,} endpoint-samples, {m['endpoint_days']:.1f} "
                   "endpoint-days")
    else:
        out.append(f"OCAD evaluate: {', '.join(src['runs'])}: {m['samples']:,} endpoint-samples, "
                   f"{m['endpoint_days']:.2f} endpoint-days")
    missing = [r["row"].lstrip("+ ") for r in m.get("ablation", []) if r["status"] != "ok"]
    out.append("detectors: " + ", ".join(m["detectors"])
               + (f"   ({', '.join(missing)}: not installed)" if missing else ""))
    out.append("")
    out.append("overall, after the alert policy")
    out.append(f"  events  precision {_p(m['event_precision'])}  recall {_p(m['event_recall'])}  "
               f"F1 {_p(m['event_f1'])}   {m['events_detected']}/{m['events']} events detected, "
               f"{m['alerts']} alerts ({m['false_alerts']} false), "
               f"{_p(m['false_alerts_per_endpoint_day'])} false alerts per endpoint-day")
    out.append(f"  samples precision {_p(m['precision'])}  recall {_p(m['recall'])}  F1 {_p(m['f1'])}  "
               f"false-alarm rate {_p(m['false_alarm_rate'], 4)}  ROC-AUC {_p(m['roc_auc'])}  "
               f"PR-AUC {_p(m['pr_auc'])}")
    lt = ", ".join(m.get("lead_time_fault_types") or []) or "none labelled"
    out.append(f"  timing  mean time to detect {_p(m['mttd_s'], 0)} s   lead time p50 {_p(m['lead_time_p50_s'], 0)} s"
               f" ({lt})")
    if len(m["runs"]) > 1:
        for r in m["runs"]:
            out.append(f"  {r['run']:<22} events {r['events']:>4}  precision {_p(r['event_precision'])}  "
                       f"recall {_p(r['event_recall'])}  F1 {_p(r['event_f1'])}  "
                       f"false alerts/endpoint-day {_p(r['false_alerts_per_endpoint_day'], 2)}")
    out.append("")
    out.append(f"{'fault type':<15}{'events':>7}{'detected':>9}{'recall':>8}{'pt recall':>10}"
               f"{'mean TTD s':>11}{'lead p50 s':>11}")
    for ft, r in m["per_fault_type"].items():
        out.append(f"{ft:<15}{r['events']:>7}{r['detected']:>9}{_p(r['recall'], 2):>8}"
                   f"{_p(r.get('point_recall'), 2):>10}{_p(r['mttd_s'], 0):>11}{_p(r['lead_time_p50_s'], 0):>11}")
    if m.get("ablation"):
        out.append("")
        out.append(f"ablation ({m['ablation_mode']})")
        out.append(f"{'row':<17}{'ev prec':>8}{'ev rec':>8}{'ev F1':>7}{'pt F1':>7}{'FAR':>8}{'FA/ep-d':>8}"
                   f"{'lead p50':>9}{'PR-AUC':>8}  detectors")
        for r in m["ablation"]:
            if r["status"] != "ok":
                out.append(f"{r['row']:<17}{r['status']}")
                continue
            star = "*" if r.get("min_kinds") == 1 and r.get("note") else ""
            out.append(f"{r['row'] + star:<17}{_p(r['event_precision']):>8}{_p(r['event_recall']):>8}"
                       f"{_p(r['event_f1'], 2):>7}{_p(r['f1'], 2):>7}{_p(r['false_alarm_rate'], 4):>8}"
                       f"{_p(r['false_alerts_per_endpoint_day'], 2):>8}{_p(r['lead_time_p50_s'], 0):>9}"
                       f"{_p(r['pr_auc']):>8}  {'+'.join(r['detectors'])}")
        notes = {r["note"] for r in m["ablation"] if r.get("note")}
        for n in sorted(notes):
            out.append(f"  * {n}")
    out.append("")
    fc = m["forecaster"]
    if fc["status"] != "ok":
        out.append(f"forecaster: {fc['status']}")
    else:
        out.append("forecaster (residual detector's TCNs vs naive last value; samples with no fault in the window)")
        out.append(f"{'metric':<17}{'n':>8}{'MSE':>10}{'MAE':>8}{'RMSE':>8}{'R2':>6} |{'MSE':>10}{'MAE':>8}"
                   f"{'RMSE':>8}{'R2':>6} |{'skill':>6}")
        for met, r in fc["metrics"].items():
            a, b = r["model"], r["naive"]
            out.append(f"{met:<17}{a['n']:>8}{_p(a['mse'], 4):>10}{_p(a['mae'], 3):>8}{_p(a['rmse'], 3):>8}"
                       f"{_p(a['r2'], 2):>6} |{_p(b['mse'], 4):>10}{_p(b['mae'], 3):>8}{_p(b['rmse'], 3):>8}"
                       f"{_p(b['r2'], 2):>6} |{_p(r['skill_vs_naive'], 2):>6}")
        out.append(f"{'':<17}{'':>8}{'model':>32} |{'naive':>32} | 1 - MSE/naive MSE")
    out.append("")
    out.append("targets")
    for t in m["targets"]:
        v = t["value"]
        vs = (f"{_p(v[0])} vs {_p(v[1])}" if isinstance(v, list) else _p(v, 0 if "lead" in t["key"] else 3))
        out.append(f"  {'met ' if t['met'] else 'MISS'}  {t['description']:<46}{t['target']:>12}  {vs}")
    low = [ft for ft, r in m["per_fault_type"].items() if r["recall"] is not None and r["recall"] < 0.9]
    if low:
        out.append(f"  fault types under 0.90 event recall: {', '.join(low)}")
    return "\n".join(out)
