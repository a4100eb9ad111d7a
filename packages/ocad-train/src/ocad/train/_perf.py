"""Per-version performance reports and the quality gate between a candidate and the active version.

``performance_report.json`` (beside each version's ``manifest.json``; written by
``ocad train``, refreshed by ``ocad evaluate --model-dir``, shown by ``ocad models
show``) has these sections (every field is documented in ``docs/retraining.md``):

``model``
    name, version, kind, format, created, architecture, window, metrics, the
    hyperparameters that shape the model, ``init_from`` (warm start), library versions.
``dataset``
    fingerprint, source, rows, endpoints, time span (first / last timestamp,
    seconds), median sample interval, the split fractions, training windows.
``prediction``
    per metric on the held-out (chronological test) split: ``mae``, ``naive_mae``
    (last-value forecast on the same windows), ``mae_ratio_to_naive``, ``rmse``,
    ``r2``, ``n``, ``beats_naive``. Forecasters only.
``comparison``
    the version that was active when the report was written, measured by the same
    code on the *same* held-out windows of the same data: its ``mae`` / ``naive_mae``
    per metric and ``ratio`` = (candidate MAE / naive) / (active MAE / naive)
    (equal windows: the plain MAE ratio). ``null`` when nothing was active.
``detection``
    event F1, precision, recall, false alerts per endpoint-day, per fault type,
    of the Monitor running the store's models, on labelled data (``null`` until
    labelled data was given to ``ocad evaluate --model-dir`` / the gate).
``operational``
    artifact and model file bytes, ``ms_per_1k_forecasts`` measured with
    onnxruntime (one thread, batches of 1000, median of 5 runs), parity with torch.

The gate (:func:`gate`) refuses a candidate that does not beat the naive forecast
on every metric, whose ``comparison.ratio`` exceeds ``mae_tolerance`` (default
1.02: at most 2 % worse than the active version), or, with labelled data, whose
shadow run has a lower event F1 or more false alerts per endpoint-day than the
active version's on the same stream.
"""

from __future__ import annotations

import datetime as _dt
import logging
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs
import numpy as np

from ocad.core import OcadConfigError
from ocad.core.artifacts import LoadedArtifact, ModelStore

__all__ = ["DEFAULT_MAE_TOLERANCE", "GateVerdict", "build_report", "forecast_accuracy", "gate",
           "write_report"]

log = logging.getLogger("ocad.train")

REPORT_SCHEMA = 1
#: Candidate MAE / active MAE (relative to naive, on the same windows) allowed by the gate.
DEFAULT_MAE_TOLERANCE = 1.02


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _f(v: Any) -> float | None:
    try:
        v = float(v)
    except (TypeError, ValueError):
        return None
    return v if np.isfinite(v) else None


# -- measurements -------------------------------------------------------------------

def _session(art: LoadedArtifact, threads: int = 1) -> Any:
    from ._export import ort_session

    return ort_session(art.file("model"), threads=threads)


def split_settings(manifest: Mapping[str, Any]) -> dict[str, Any]:
    """The split a forecaster was measured on (fractions, gap, fill limit, cap, seed)."""
    h = manifest.get("hyperparameters") or {}
    return {"fractions": tuple(h.get("fractions", (0.6, 0.2, 0.2))), "gap": h.get("gap"),
            "fill_limit": h.get("fill_limit", 3), "max_eval_windows": h.get("max_eval_windows"),
            "max_train_windows": h.get("max_train_windows"),
            "seed": int(h.get("seed", manifest.get("seed", 0)) or 0)}


def forecast_accuracy(art: LoadedArtifact, table: Any, split: Mapping[str, Any]) -> dict[str, Any]:
    """The forecaster's held-out accuracy on ``table``'s chronological test split (ONNX, as deployed).

    ``split``: :func:`split_settings` of the *reference* (the candidate), so that
    the candidate and the active version are scored on the same part of the data.
    """
    from ._datasets import build_sequence_datasets
    from ._tcn import evaluate_forecast

    inputs = art.manifest["inputs"]
    metric = inputs["metrics"][0]
    window = int(inputs["window"])
    cap = split.get("max_eval_windows")
    # The training run's caps: the random subsample of the test windows is then the one training scored.
    ds = build_sequence_datasets(table, metric, window, fractions=split["fractions"], gap=split.get("gap"),
                                 fill_limit=split["fill_limit"],
                                 max_windows={"train": split.get("max_train_windows"), "validation": cap,
                                              "test": cap}, seed=split["seed"])
    test = ds["test"]
    if len(test) == 0:
        raise OcadConfigError(f"{art.name}@{art.version}: no usable test windows of {metric!r} (window {window}) "
                              "in the data")
    sess = _session(art)
    iname, oname = inputs["input_name"], inputs["output_name"]
    yhat = np.concatenate([sess.run([oname], {iname: test.x[i:i + 8192]})[0][:, 0]
                           for i in range(0, len(test), 8192)]).astype(np.float32)
    m = evaluate_forecast(test.y, yhat, test.naive)
    return {k: _f(v) if k != "n" else int(v) for k, v in m.items()}


def _prediction_entry(m: Mapping[str, Any]) -> dict[str, Any]:
    mae, naive = _f(m.get("mae")), _f(m.get("naive_mae"))
    return {"mae": mae, "naive_mae": naive, "mae_ratio_to_naive": mae / naive if mae is not None and naive else None,
            "rmse": _f(m.get("rmse")), "r2": _f(m.get("r2")), "n": m.get("n"),
            "beats_naive": bool(mae is not None and naive is not None and mae < naive)}


def ms_per_1k(art: LoadedArtifact, repeats: int = 5) -> float | None:
    """Milliseconds for 1000 forecasts (or 1000 feature rows) in one onnxruntime call, one thread."""
    inputs = art.manifest.get("inputs") or {}
    if art.manifest.get("format") != "onnx":
        return None
    if art.manifest.get("kind") == "forecaster":
        shape = (1000, int(inputs["window"]))
    else:
        shape = (1000, len(inputs.get("features") or []))
    rng = np.random.default_rng(0)
    x = (1.0 + 0.1 * rng.standard_normal(shape)).astype(np.float32)
    sess = _session(art)
    iname, oname = inputs["input_name"], inputs["output_name"]
    sess.run([oname], {iname: x})  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sess.run([oname], {iname: x})
        times.append(time.perf_counter() - t0)
    return float(np.median(times) * 1000.0)


def dataset_info(table: Any, manifest: Mapping[str, Any]) -> dict[str, Any]:
    td = dict(manifest.get("training_data") or {})
    out: dict[str, Any] = {"fingerprint": td.get("fingerprint"), "source": td.get("source"),
                           "training_windows": td.get("n_samples")}
    if table is not None:
        starts = [float(t[0]) for t in table.ts if len(t)]
        ends = [float(t[-1]) for t in table.ts if len(t)]
        steps = np.concatenate([np.diff(np.asarray(t, np.float64)) for t in table.ts if len(t) > 1] or [np.array([])])
        out.update(rows=int(table.n_samples), endpoints=int(table.n_endpoints),
                   time_span={"start_ts": min(starts) if starts else None, "end_ts": max(ends) if ends else None,
                              "seconds": (max(ends) - min(starts)) if starts else None},
                   interval_s=_f(np.median(steps)) if steps.size else None, metrics=list(table.metrics),
                   source=out["source"] or table.source)
    else:
        out.update(rows=td.get("n_rows"), endpoints=td.get("n_endpoints"))
    out["split"] = list(split_settings(manifest)["fractions"])
    return out


def _model_info(art: LoadedArtifact) -> dict[str, Any]:
    m = art.manifest
    h = {k: v for k, v in (m.get("hyperparameters") or {}).items() if k not in ("history", "tuning")}
    return {"name": art.name, "version": art.version, "kind": m.get("kind"), "format": m.get("format"),
            "created": m.get("created"), "architecture": (m.get("model") or {}).get("architecture")
            or ("isolation_forest" if m.get("kind") == "multivariate" else None),
            "window": (m.get("inputs") or {}).get("window"), "metrics": (m.get("inputs") or {}).get("metrics"),
            "hyperparameters": h, "init_from": h.get("init_from"),
            "tuning": (m.get("hyperparameters") or {}).get("tuning"),
            "library_versions": m.get("library_versions")}


def build_report(store: ModelStore, art: LoadedArtifact, *, table: Any = None, generated_by: str = "ocad train",
                 compare: bool = True, detection: Mapping[str, Any] | None = None,
                 tuning: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The performance report of ``art`` (see module docs); ``table``: the data it was trained on."""
    m = art.manifest
    kind = m.get("kind")
    prediction: dict[str, Any] | None = None
    comparison: dict[str, Any] | None = None
    if kind == "forecaster":
        metric = m["inputs"]["metrics"][0]
        split = split_settings(m)
        own = forecast_accuracy(art, table, split) if table is not None else (m.get("metrics") or {}).get("test", {})
        prediction = {"split": "test (chronological, normal windows)", "per_metric": {metric: _prediction_entry(own)}}
        active = store.active(art.name)
        if compare and table is not None and active is not None and active != art.version:
            try:
                other = store.load(art.name, active)
                theirs = forecast_accuracy(other, table, split)
                comparison = {"active_version": active,
                              "evaluated_on": "the same test split of the same data",
                              "per_metric": {metric: {**_prediction_entry(theirs),
                                                      "ratio": _ratio(own, theirs)}}}
            except Exception as exc:  # noqa: BLE001 - a report without a comparison, stated
                log.warning("%s: could not score active version %s on the same data: %s", art.name, active, exc)
                comparison = {"active_version": active, "error": f"{type(exc).__name__}: {exc}"}
    elif kind == "multivariate":
        prediction = None
    files = [p for p in Path(art.path).iterdir() if p.is_file() and p.name != "performance_report.json"]
    try:
        speed = ms_per_1k(art)
    except Exception as exc:  # noqa: BLE001
        log.warning("%s: timing failed: %s", art.name, exc)
        speed = None
    model_file = Path(art.file("model")) if "model" in (m.get("files") or {}) else None
    return {
        "schema_version": REPORT_SCHEMA,
        "generated": _now(),
        "generated_by": generated_by,
        "model": {**_model_info(art), **({"tuning": dict(tuning)} if tuning else {})},
        "dataset": dataset_info(table, m),
        "prediction": prediction,
        "comparison": comparison,
        "detection": dict(detection) if detection else None,
        "operational": {
            "artifact_bytes": int(sum(p.stat().st_size for p in files)),
            "model_bytes": int(model_file.stat().st_size) if model_file is not None else None,
            "ms_per_1k_forecasts": speed,
            "measured_with": "onnxruntime, 1 thread, one call of 1000 rows, median of 5",
            "parity_max_abs_diff": (m.get("parity") or {}).get("max_abs_diff"),
            "validation": (m.get("metrics") or {}).get("validation") if kind == "multivariate" else None,
        },
    }


def _ratio(own: Mapping[str, Any], theirs: Mapping[str, Any]) -> float | None:
    a, an = _f(own.get("mae")), _f(own.get("naive_mae"))
    b, bn = _f(theirs.get("mae")), _f(theirs.get("naive_mae"))
    if a is None or b is None or not b:
        return None
    if an and bn:
        return (a / an) / (b / bn) if b / bn else None
    return a / b


def write_report(store: ModelStore, art: LoadedArtifact, **kw: Any) -> dict[str, Any]:
    rep = build_report(store, art, **kw)
    store.write_report(art.name, art.version, rep)
    return rep


# -- the gate ------------------------------------------------------------------------

@attrs.frozen
class GateVerdict:
    """The gate's decision for one candidate: every check, passed or not, with its numbers."""

    name: str
    candidate: str
    active: str | None
    passed: bool
    checks: tuple[Mapping[str, Any], ...]

    def reasons(self) -> list[str]:
        return [c["detail"] for c in self.checks if not c["passed"]]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "candidate": self.candidate, "active": self.active, "passed": self.passed,
                "checks": [dict(c) for c in self.checks]}


def _check(check: str, passed: bool, detail: str, **numbers: Any) -> dict[str, Any]:
    return {"check": check, "passed": bool(passed), "detail": detail, **numbers}


def gate(store: ModelStore, name: str, candidate: str, *, mae_tolerance: float = DEFAULT_MAE_TOLERANCE,
         table: Any = None, detection: Mapping[str, Any] | None = None, f1_tolerance: float = 0.0,
         false_alert_tolerance: float = 0.0) -> GateVerdict:
    """Judge ``name@candidate`` against the naive forecast and the active version.

    ``table``: data to measure both versions on (its chronological test split);
    without it the candidate's ``performance_report.json`` is used, which must
    have compared against the version active *now*. ``detection``: a shadow
    comparison on labelled data (:func:`ocad.core.tooling._shadow.compare_store`'s dict)
    whose ``active`` / ``candidate`` summaries are checked for event F1 and false
    alerts per endpoint-day.
    """
    if not mae_tolerance >= 1.0:
        raise OcadConfigError(f"mae tolerance {mae_tolerance!r} must be >= 1.0 (1.02 = at most 2 % worse)")
    art = store.load(name, candidate)
    active = store.active(name)
    checks: list[dict[str, Any]] = []
    if active == candidate:
        checks.append(_check("not_active", False, f"{name}@{candidate} is already the active version"))
        return GateVerdict(name, candidate, active, False, tuple(checks))
    kind = art.manifest.get("kind")
    if kind == "forecaster":
        if table is not None:
            rep = build_report(store, art, table=table, generated_by="ocad models promote --data")
        else:
            rep = store.report(name, candidate) or build_report(store, art, table=None, compare=False)
        for metric, p in ((rep.get("prediction") or {}).get("per_metric") or {}).items():
            checks.append(_check(
                "beats_naive", p.get("beats_naive"),
                f"{metric}: test MAE {_fmt(p.get('mae'))} vs naive {_fmt(p.get('naive_mae'))}"
                + ("" if p.get("beats_naive") else " (does not beat the naive last-value forecast)"),
                metric=metric, mae=p.get("mae"), naive_mae=p.get("naive_mae")))
        if active is not None:
            comp = rep.get("comparison") or {}
            if comp.get("active_version") != active or comp.get("error"):
                why = (comp.get("error") or f"the report compared against {comp.get('active_version')!r}, "
                       f"the active version is now {active}")
                checks.append(_check("not_worse_than_active", False,
                                     f"cannot compare with the active version {active}: {why}; give --data FILE "
                                     "to measure both on the same held-out split"))
            else:
                for metric, c in (comp.get("per_metric") or {}).items():
                    r = c.get("ratio")
                    ok = r is not None and r <= mae_tolerance
                    checks.append(_check(
                        "not_worse_than_active", ok,
                        f"{metric}: MAE ratio candidate/active {_fmt(r)} (tolerance {mae_tolerance:g}) on the "
                        f"same test windows; active {active} MAE {_fmt(c.get('mae'))}",
                        metric=metric, ratio=r, tolerance=mae_tolerance, active_mae=c.get("mae")))
        else:
            checks.append(_check("not_worse_than_active", True, "no active version yet: nothing to compare with"))
    elif active is None:
        checks.append(_check("not_worse_than_active", True, "no active version yet: nothing to compare with"))
    elif detection is None:
        checks.append(_check("not_worse_than_active", False,
                             f"kind {kind!r} has no forecast to score against the active version {active}; its gate "
                             "is the detection check: give labelled data (--labelled FILE)"))
    if detection is not None:
        a = (detection.get("active") or {}).get("detection") or {}
        c = (detection.get("candidate") or {}).get("detection") or {}
        af1, cf1 = _f(a.get("event_f1")), _f(c.get("event_f1"))
        afa, cfa = _f(a.get("false_alerts_per_endpoint_day")), _f(c.get("false_alerts_per_endpoint_day"))
        if af1 is None or cf1 is None:
            checks.append(_check("event_f1", True, "no labelled fault events in the data: event F1 not checked"))
        else:
            checks.append(_check("event_f1", cf1 >= af1 - f1_tolerance,
                                 f"event F1 candidate {cf1:.3f} vs active {af1:.3f} (may drop by {f1_tolerance:g})",
                                 candidate_value=cf1, active_value=af1, tolerance=f1_tolerance))
        if afa is not None and cfa is not None:
            checks.append(_check("false_alerts_per_endpoint_day", cfa <= afa + false_alert_tolerance,
                                 f"false alerts per endpoint-day candidate {cfa:.3f} vs active {afa:.3f} "
                                 f"(may rise by {false_alert_tolerance:g})",
                                 candidate_value=cfa, active_value=afa, tolerance=false_alert_tolerance))
    passed = all(c["passed"] for c in checks)
    return GateVerdict(name, candidate, active, passed, tuple(checks))


def _fmt(v: Any) -> str:
    v = _f(v)
    return "-" if v is None else f"{v:.4g}"


def refresh_detection(store: ModelStore, names: Sequence[str] | None, detection: Mapping[str, Any],
                      *, source: str) -> list[Path]:
    """Put a Monitor evaluation's detection figures into the active versions' reports."""
    out = []
    for n in names or store.names():
        v = store.active(n)
        if v is None:
            continue
        rep = store.report(n, v) or build_report(store, store.load(n, v), compare=False,
                                                 generated_by="ocad evaluate")
        rep["detection"] = {**dict(detection), "source": source, "measured": _now(),
                            "scope": "the Monitor with this store's active versions"}
        out.append(store.write_report(n, v, rep))
    return out
