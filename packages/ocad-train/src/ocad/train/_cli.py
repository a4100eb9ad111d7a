"""``ocad train``, ``ocad export`` and ``ocad models``: added to the ``ocad`` CLI through the plugin hook.

Heavy imports (torch, pandas, onnx) happen inside the handlers, so ``ocad --help``
and every Monitor start (which loads this plugin) stay fast.

Commands::

    ocad train (--data FILE | --simulate [--endpoints N --hours H --seed S])
               --metrics a,b,c --out DIR [--epochs E --window W --config TOML
               --tune N --resume --mlflow --threads T --quiet
               --init-from active --promote [--force --reason TEXT]]
    ocad retrain --data DIR_OR_FILE --store DIR [--init-from active --labelled FILE ...]
    ocad export --checkpoint WORK/tcn-<metric>/best.pt --out model.onnx [--dataset test.parquet]
    ocad models list --store DIR
    ocad models show NAME [--version V] --store DIR
    ocad models promote [NAME] VERSION --store DIR [--data FILE --labelled FILE --force --reason TEXT]
    ocad models shadow --data FILE --store DIR [--candidate NAME=VERSION ... --json OUT]
    ocad models rollback NAME --store DIR

``ocad train`` adds *candidate* versions; only the quality gate (``ocad models
promote``, ``train --promote``, ``ocad retrain``) makes one active: it must beat
the naive forecast and not be worse than the active version on the same
held-out split beyond ``--mae-tolerance`` (default 1.02), and with labelled
data (``--labelled``) not lower event F1 or raise false alerts per
endpoint-day. ``--force --reason`` overrides it; the store's log keeps the
reason. ``ocad retrain`` exit codes: :data:`RETRAIN_EXIT_CODES`.

``ocad export`` re-exports a trained checkpoint (``best.pt``, written by every
training run into the store's work directory) to ONNX and runs the parity check
on the test windows saved next to it; ``ocad train`` already exports and checks
every model it publishes, so this is only needed to re-export with another
onnx / torch version or to audit an artifact.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocad.core import OcadConfigError, OcadError

__all__ = ["RETRAIN_EXIT_CODES", "add_commands", "build_parser", "main"]

#: ``ocad retrain`` (and ``ocad train --promote``) exit codes, for schedulers and CI.
RETRAIN_EXIT_CODES = {
    0: "promoted: every new candidate passed the gate and is active",
    1: "failed: training or evaluation raised an error (nothing promoted by this run)",
    2: "usage or data error (bad arguments, missing / unreadable data); nothing trained",
    3: "kept: the gate refused at least one candidate (it stays a candidate; passing ones were promoted)",
    4: "unchanged: same data fingerprint and metrics as existing versions; no new version",
}

log = logging.getLogger("ocad.train")


def add_commands(subparsers: Any) -> None:
    """Add ``train``, ``export`` and ``models`` to an ``argparse`` sub-parser collection."""
    p = subparsers.add_parser(
        "train", help="fit what the data supports into a model store: core calibration, forecasters, forest",
        description="Fit into a model store what the data supports, and say what was skipped and why: "
                    "always the core detectors' calibration on the normal samples (artifact core-calibration); "
                    "one TCN forecaster per --metrics metric where the series holds enough windows (exported "
                    "to ONNX, parity-checked, residual scores calibrated); the multivariate Isolation Forest "
                    "where the data has >= 2 metrics and enough rows. Rows labelled as a fault (fault_type / "
                    "label column) are never learnt from.")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--data", metavar="FILE", help="CSV / Parquet, wide or long (endpoint_id, ts, ...), "
                                                    "optionally labelled (fault_type: '' / none = normal)")
    src.add_argument("--simulate", action="store_true", help="train on a synthetic fleet")
    p.add_argument("--endpoints", type=int, help="simulated endpoints (default 60)")
    p.add_argument("--hours", type=float, help="simulated hours (default 6)")
    p.add_argument("--seed", type=int, help="seed for the simulation and the training")
    p.add_argument("--metrics", help="comma-separated metrics to forecast (any column of the data)")
    p.add_argument("--out", required=True, metavar="DIR", help="model store to write (created if needed)")
    p.add_argument("--config", metavar="TOML", help="training config (see ocad.train._config)")
    p.add_argument("--epochs", type=int, help="maximum epochs per forecaster")
    p.add_argument("--window", type=int, help="input window length (samples)")
    p.add_argument("--threads", type=int, help="torch threads (default 2)")
    p.add_argument("--tune", type=int, metavar="N", help="Optuna trials per metric first (extra 'tune')")
    p.add_argument("--resume", action="store_true", help="continue interrupted trainings from checkpoints")
    p.add_argument("--mlflow", action="store_true", help="track the run in MLflow (extra 'mlflow')")
    p.add_argument("--no-multivariate", action="store_true", help="skip the multivariate model")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_gate_args(p, promote_flag=True)
    p.add_argument("--init-from", choices=("active",), help="warm start from the active versions' weights")
    p.set_defaults(func=cmd_train)

    p = subparsers.add_parser(
        "retrain", help="train -> evaluate -> gate -> promote or keep (exit codes for schedulers)",
        description="A retraining job: train candidates on DATA, measure them against the naive forecast and "
                    "the active versions on the same held-out split (and on labelled data with --labelled), "
                    "promote those the gate accepts. Exit codes: "
                    + "; ".join(f"{k} {v}" for k, v in RETRAIN_EXIT_CODES.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, metavar="DIR_OR_FILE",
                   help="CSV / Parquet; a directory: its newest *.csv / *.parquet file")
    p.add_argument("--store", required=True, metavar="DIR", help="model store (created if needed)")
    p.add_argument("--metrics", help="metrics to forecast (default: the active forecasters' metrics, else the "
                                     "config's)")
    p.add_argument("--config", metavar="TOML", help="training config")
    p.add_argument("--epochs", type=int, help="maximum epochs per forecaster")
    p.add_argument("--window", type=int, help="input window length (samples; ignored with --init-from)")
    p.add_argument("--threads", type=int, help="torch threads")
    p.add_argument("--seed", type=int, help="training seed")
    p.add_argument("--init-from", choices=("active",), help="warm start from the active versions' weights")
    p.add_argument("--no-multivariate", action="store_true", help="skip the multivariate model")
    p.add_argument("--json", metavar="OUT", help="write the run's summary (verdicts, versions) as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    _add_gate_args(p, promote_flag=False)
    p.set_defaults(func=cmd_retrain, tune=None, resume=False, mlflow=False, simulate=False, endpoints=None,
                   hours=None, promote=True, out=None)

    p = subparsers.add_parser("export", help="re-export a trained checkpoint to ONNX with a parity check")
    p.add_argument("--checkpoint", required=True, help="best.pt written by a training run")
    p.add_argument("--out", required=True, help="ONNX file to write")
    p.add_argument("--dataset", help="held-out windows (Parquet; default: test.parquet next to the checkpoint)")
    p.add_argument("--tol", type=float, default=1e-4,
                   help="parity tolerance per unit of the window's scale: |diff| <= tol * max(1, mean |x|) "
                        "(default 1e-4)")
    p.set_defaults(func=cmd_export)

    p = subparsers.add_parser("models", help="list, show, promote and roll back models in a store")
    msub = p.add_subparsers(dest="models_command", metavar="ACTION", required=True)
    q = msub.add_parser("list", help="models, their versions and the active one")
    q.add_argument("--store", required=True, metavar="DIR")
    q.set_defaults(func=cmd_models_list)
    q = msub.add_parser("show", help="a version's manifest (default: the active one)")
    q.add_argument("name")
    q.add_argument("--version")
    q.add_argument("--store", required=True, metavar="DIR")
    q.add_argument("--full", action="store_true", help="the whole manifest, calibration table included")
    q.set_defaults(func=cmd_models_show)
    q = msub.add_parser("promote", help="make a candidate active if it passes the quality gate",
                        description="NAME VERSION: that model's version; VERSION alone: that candidate version of "
                                    "every model that has it (e.g. all models of one training run).")
    q.add_argument("target", nargs="+", metavar="[NAME] VERSION")
    q.add_argument("--store", required=True, metavar="DIR")
    q.add_argument("--data", metavar="FILE", help="measure candidate and active on this file's held-out "
                                                  "(chronological test) split instead of the report's numbers")
    _add_gate_args(q, promote_flag=False)
    q.set_defaults(func=cmd_models_promote)
    q = msub.add_parser("shadow", help="candidate and active versions side by side on the same stream")
    q.add_argument("--data", required=True, metavar="FILE", help="CSV / Parquet (labelled: a fault_type column)")
    q.add_argument("--store", required=True, metavar="DIR")
    q.add_argument("--candidate", action="append", metavar="NAME=VERSION",
                   help="a candidate (repeatable; VERSION alone: that version of every model having it); "
                        "default: each model's newest candidate")
    q.add_argument("--events", metavar="JSON", help="fault events (ocad simulate --events) instead of runs of "
                                                    "fault_type")
    q.add_argument("--config", metavar="TOML", help="Monitor config for both sides")
    q.add_argument("--json", metavar="OUT", help="comparison JSON (default: shadow-report.json)",
                   default="shadow-report.json")
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_models_shadow)
    q = msub.add_parser("rollback", help="re-activate the previously active version")
    q.add_argument("name")
    q.add_argument("--store", required=True, metavar="DIR")
    q.set_defaults(func=cmd_models_rollback)


def _add_gate_args(p: argparse.ArgumentParser, *, promote_flag: bool) -> None:
    from ._perf import DEFAULT_MAE_TOLERANCE

    if promote_flag:
        p.add_argument("--promote", action="store_true",
                       help="promote the new versions that pass the quality gate (default: candidates only)")
    if not any(a.dest == "labelled" for a in p._actions):
        p.add_argument("--labelled", metavar="FILE",
                       help="labelled data (fault_type) the candidates did not train on: the gate also requires "
                            "no lower event F1 and no more false alerts per endpoint-day than the active versions")
    p.add_argument("--mae-tolerance", type=float, default=DEFAULT_MAE_TOLERANCE,
                   help=f"largest candidate/active held-out MAE ratio (default {DEFAULT_MAE_TOLERANCE})")
    p.add_argument("--force", action="store_true", help="promote even if the gate refuses (needs --reason)")
    p.add_argument("--reason", help="why the gate is overridden (kept in the store's log)")


def _check_force(args: argparse.Namespace) -> None:
    if getattr(args, "force", False) and not (args.reason or "").strip():
        raise OcadConfigError("--force needs --reason '...': a forced promotion is recorded with its reason")


# -- train -------------------------------------------------------------------------

def _config_from_args(args: argparse.Namespace) -> Any:
    from ._config import load_config

    cfg = load_config(args.config)
    data: dict[str, Any] = {}
    if args.data:
        data.update(file=args.data, simulate=False)
    elif args.simulate:
        data.update(file=None, simulate=True)
    for key in ("endpoints", "hours"):
        if getattr(args, key) is not None:
            data[key] = getattr(args, key)
    changes: dict[str, Any] = {}
    if args.seed is not None:
        data["seed"] = args.seed
        changes["seed"] = args.seed
    fc = {k: getattr(args, k) for k in ("epochs", "window", "threads") if getattr(args, k) is not None}
    if args.metrics:
        changes["metrics"] = [m.strip() for m in args.metrics.split(",") if m.strip()]
    if args.no_multivariate:
        changes["multivariate"] = {**cfg.multivariate, "enabled": False}
    return cfg.evolve(data=data, forecaster=fc, **changes)


def cmd_train(args: argparse.Namespace) -> int:
    from ocad.core.artifacts import ModelStore

    from ._pipeline import train_all

    _check_force(args)
    cfg = _config_from_args(args)
    if not cfg.data.file and not cfg.data.simulate:
        raise OcadConfigError("ocad train: give --data FILE or --simulate (or [data] in --config)")
    store = ModelStore(args.out).init()
    before = {n: set(store.versions(n)) for n in store.names()}
    tracker = None
    if args.mlflow or cfg.mlflow.get("enabled"):
        from ._tracking import MlflowTracker

        tracker = MlflowTracker(tracking_uri=cfg.mlflow.get("tracking_uri") or None,
                                experiment=cfg.mlflow.get("experiment", "ocad"),
                                run_name=cfg.mlflow.get("run_name"),
                                params={"metrics": ",".join(cfg.metrics), "seed": cfg.seed})
    try:
        arts = train_all(cfg, store, resume=args.resume, progress=not args.quiet,
                         tune_trials=args.tune, tracker=tracker, init_from=args.init_from)
    finally:
        if tracker is not None:
            tracker.close()
    summary = _summarise_run(store, arts, before)
    for d in getattr(arts, "decisions", ()):
        print(f"{'fitted' if d.fitted else 'SKIPPED':<8}{d.model}: {d.reason}")
    if not args.promote:
        for r in summary:
            if r["status"] == "candidate":
                print(f"{r['name']}@{r['version']} is a candidate; promote it through the quality gate with: "
                      f"ocad models promote {r['name']} {r['version']} --store {args.out}")
        print(f"store: {args.out} (decisions in train_report.json)")
        return 0
    return _gate_and_promote(store, summary, args)


def _summarise_run(store: Any, arts: Sequence[Any], before: dict[str, set[str]]) -> list[dict[str, Any]]:
    """Print one line per trained model; returns [{name, version, status}] (candidate / duplicate)."""
    from ._manifest import duplicate_note

    print(f"{'model':<28}{'version':<10}{'test MAE':>12}{'naive MAE':>12}{'vs active':>11}{'parity':>10}  status")
    out = []
    for a in arts:
        dup = a.version in before.get(a.name, set())
        rep = store.report(a.name, a.version) or {}
        pred: dict[str, Any] = next(iter(((rep.get("prediction") or {}).get("per_metric") or {}).values()), {})
        comp: dict[str, Any] = next(iter(((rep.get("comparison") or {}).get("per_metric") or {}).values()), {})
        par = (a.manifest.get("parity") or {}).get("max_abs_diff")
        status = "duplicate" if dup else "candidate"
        note = duplicate_note(a.version) if dup else status
        if dup and store.active(a.name) == a.version:
            note += " (the active version)"
        print(f"{a.name:<28}{a.version:<10}{_num(pred.get('mae')):>12}{_num(pred.get('naive_mae')):>12}"
              f"{_num(comp.get('ratio')):>11}{_num(par):>10}  {note}")
        out.append({"name": a.name, "version": a.version, "status": status,
                    "active_before": store.active(a.name), "note": note})
    return out


def _detection_check(store: Any, candidates: dict[str, str], args: argparse.Namespace) -> dict[str, Any] | None:
    if not getattr(args, "labelled", None):
        return None
    from ocad.core.tooling._shadow import compare_store

    return compare_store(store.root, args.labelled, candidates=candidates, config=getattr(args, "monitor_config", None),
                         progress=not getattr(args, "quiet", True))


def _gate_and_promote(store: Any, summary: list[dict[str, Any]], args: argparse.Namespace,
                      table: Any = None) -> int:
    """Gate every new candidate of a run; promote those that pass (or all with --force). Exit code."""
    from ._perf import gate

    todo = {r["name"]: r["version"] for r in summary
            if r["status"] == "candidate" or (r["status"] == "duplicate" and store.active(r["name"]) != r["version"])}
    if not todo:
        print("unchanged: every model has the same data fingerprint and metrics as its active version")
        return 4
    detection = _detection_check(store, todo, args)
    refused = 0
    for r in summary:
        if r["name"] not in todo:
            r["decision"] = "unchanged"
            continue
        v = gate(store, r["name"], r["version"], mae_tolerance=args.mae_tolerance, table=table, detection=detection)
        r["gate"] = v.to_dict()
        if detection is not None:
            _record_detection(store, r["name"], r["version"], detection)
        _print_verdict(v)
        if v.passed or args.force:
            store.promote(r["name"], r["version"], forced=not v.passed, reason=args.reason if not v.passed else None,
                          gate=v.to_dict())
            r["decision"] = "promoted (forced)" if not v.passed else "promoted"
            print(f"{r['name']}: active version is now {r['version']}"
                  + (f" (FORCED against the gate: {args.reason})" if not v.passed else ""))
        else:
            refused += 1
            r["decision"] = "kept"
            print(f"{r['name']}@{r['version']} stays a candidate; active remains {store.active(r['name'])}")
    if detection is not None:
        _print_shadow(detection)
    return 3 if refused else 0


def _record_detection(store: Any, name: str, version: str, detection: dict[str, Any]) -> None:
    """The shadow run's candidate-side detection figures into the candidate's report."""
    rep = store.report(name, version)
    if rep is None:
        return
    rep["detection"] = {**detection["candidate"]["detection"], "source": detection["data"],
                        "scope": "shadow run: the store's active versions with this run's candidates swapped in "
                                 f"({detection['candidate']['versions']})",
                        "active_side": detection["active"]["detection"]}
    store.write_report(name, version, rep)


def _print_verdict(v: Any) -> None:
    print(f"gate {v.name}@{v.candidate} vs active {v.active or '-'}: {'PASS' if v.passed else 'REFUSED'}")
    for c in v.checks:
        print(f"  [{'ok' if c['passed'] else 'NO'}] {c['detail']}")


def _num(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, (int, float)) else "-"


# -- export ------------------------------------------------------------------------

def cmd_export(args: argparse.Namespace) -> int:
    from ._datasets import read_sequence_dataset
    from ._export import check_parity, export_tcn_onnx, window_scale
    from ._forecaster import INPUT_NAME, OUTPUT_NAME, parity_inputs
    from ._last_step import check_last_step
    from ._tcn import load_checkpoint_model, predict

    ck = Path(args.checkpoint)
    model, cfg, metric = load_checkpoint_model(ck)
    ds_path = Path(args.dataset) if args.dataset else ck.parent / "test.parquet"
    if not ds_path.is_file():
        raise OcadConfigError(f"no held-out windows for the parity check at {ds_path}; pass --dataset")
    ds = read_sequence_dataset(ds_path)
    if ds.window != cfg.window:
        raise OcadConfigError(f"{ds_path} has window {ds.window}, the checkpoint expects {cfg.window}")
    out = export_tcn_onnx(model, cfg.window, args.out, input_name=INPUT_NAME, output_name=OUTPUT_NAME,
                          metadata={"ocad.metric": metric})
    try:
        px = parity_inputs(ds.x, 10_000, cfg.seed)
        parity = check_parity(lambda b: predict(model, b), out, px, tol=args.tol, input_name=INPUT_NAME,
                              scale=window_scale(px))
        check_last_step(model, out, px, input_name=INPUT_NAME)
    except OcadError:
        out.unlink(missing_ok=True)
        raise
    print(f"exported {metric or 'model'} -> {out}; parity max |diff| {parity['max_abs_diff']:.3g} "
          f"over {parity['n']} inputs")
    return 0


# -- models ------------------------------------------------------------------------

def _store(args: argparse.Namespace) -> Any:
    from ocad.core.artifacts import ModelStore

    if not ModelStore.is_store(args.store):
        raise OcadConfigError(f"{args.store} is not a model store (no store.json); train into it first")
    return ModelStore(args.store)


def cmd_models_list(args: argparse.Namespace) -> int:
    st = _store(args)
    names = st.names()
    if not names:
        print(f"no models in {args.store}")
        return 0
    print(f"{'model':<28}{'active':<10}{'candidates':<22}versions")
    for n in names:
        print(f"{n:<28}{st.active(n) or '-':<10}{', '.join(st.candidates(n)) or '-':<22}{', '.join(st.versions(n))}")
    return 0


def cmd_models_show(args: argparse.Namespace) -> int:
    st = _store(args)
    art = st.load(args.name, args.version)
    m = dict(art.manifest)
    if not args.full:
        m.pop("calibration", None)
        if isinstance(m.get("hyperparameters"), dict):
            m["hyperparameters"] = {k: v for k, v in m["hyperparameters"].items() if k != "history"}
    m["active"] = st.active(args.name) == art.version
    m["candidate"] = art.version in st.candidates(args.name)
    m["path"] = str(art.path)
    m["performance_report"] = st.report(args.name, art.version)
    m["store_log"] = [e for e in st.log(args.name) if e.get("version") == art.version]
    print(json.dumps(m, indent=2, sort_keys=True))
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    """Exit 0 promoted (or already active), 3 refused by the gate."""
    _check_force(args)
    st = _store(args)
    if len(args.target) > 2:
        raise OcadConfigError(f"models promote takes [NAME] VERSION, not {args.target}")
    if len(args.target) == 2:
        name, version = args.target
        if version not in st.versions(name):
            raise OcadConfigError(f"{name} has no version {version!r}; it has {st.versions(name)}")
        if st.active(name) == version:
            print(f"{name}: {version} is already the active version")
            return 0
        todo = [name]
    else:
        version = args.target[0]
        todo = [n for n in st.names() if version in st.candidates(n)]
        if not todo:
            raise OcadConfigError(f"no model in {args.store} has a candidate version {version!r}")
    table = None
    if args.data:
        from ._data import as_table

        table = as_table(args.data)
    summary = [{"name": n, "version": version, "status": "candidate"} for n in todo]
    return _gate_and_promote(st, summary, args, table=table)


def _parse_candidates(st: Any, specs: Sequence[str] | None) -> dict[str, str] | None:
    if not specs:
        return None
    out: dict[str, str] = {}
    for spec in specs:
        if "=" in spec:
            n, v = spec.split("=", 1)
            out[n.strip()] = v.strip()
        else:
            have = [n for n in st.names() if spec in st.versions(n)]
            if not have:
                raise OcadConfigError(f"--candidate {spec}: no model in the store has version {spec}")
            out.update({n: spec for n in have})
    return out


def cmd_models_shadow(args: argparse.Namespace) -> int:
    from ocad.core.tooling._shadow import compare_store

    st = _store(args)
    res = compare_store(st.root, args.data, candidates=_parse_candidates(st, args.candidate), config=args.config,
                        events_path=args.events, progress=not args.quiet)
    _print_shadow(res)
    Path(args.json).write_text(json.dumps(res, indent=2, sort_keys=True, default=str), encoding="utf-8")
    print(f"comparison written to {args.json}")
    return 0


def _print_shadow(res: dict[str, Any]) -> None:
    sh = res["shadow"]
    a, c = res["active"], res["candidate"]
    changed = {n: f"{a['versions'].get(n, '-')} -> {v}" for n, v in c["versions"].items()
               if a["versions"].get(n) != v}
    print(f"shadow on {res['data']} ({'labelled' if res['labelled'] else 'unlabelled'}, "
          f"{res['endpoint_days']:.2f} endpoint-days): " + ", ".join(f"{n} {d}" for n, d in changed.items()))
    for nm, d in res["like_for_like"].items():
        if not d["same_metrics"]:
            print(f"  WARNING detector {nm}: metrics {d['active_metrics']} (active) vs {d['candidate_metrics']}")
    corr = sh["scores"].get("correlation")
    print(f"  composite score correlation {_num(corr)} over {sh['scores']['n']} endpoint-samples; "
          + ", ".join(f"{n} {_num(d.get('correlation'))}" for n, d in sh["detectors"].items()))
    print(f"  alert episodes: active {sh['active_alerts']}, candidate {sh['candidate_alerts']}, both {sh['both']}, "
          f"only active {len(sh['only_active'])}, only candidate {len(sh['only_candidate'])}")
    print(f"  {'':<16}{'alerts':>8}{'false/ep-day':>14}{'event F1':>10}{'precision':>11}{'recall':>8}")
    for label, side in (("active", a), ("candidate", c)):
        d = side["detection"]
        print(f"  {label:<16}{d['alerts']:>8}{_num(d.get('false_alerts_per_endpoint_day')):>14}"
              f"{_num(d.get('event_f1')):>10}{_num(d.get('event_precision')):>11}{_num(d.get('event_recall')):>8}")
    if res["labelled"]:
        types = sorted(set(a["detection"].get("per_fault_type") or {}) | set(c["detection"].get("per_fault_type") or {}))
        for ft in types:
            ra = (a["detection"].get("per_fault_type") or {}).get(ft) or {}
            rc = (c["detection"].get("per_fault_type") or {}).get(ft) or {}
            print(f"  {ft:<16} recall active {_num(ra.get('recall'))} ({ra.get('detected', 0)}/{ra.get('events', 0)})"
                  f"  candidate {_num(rc.get('recall'))} ({rc.get('detected', 0)}/{rc.get('events', 0)})")


# -- retrain -----------------------------------------------------------------------

def _newest_data_file(path: str) -> str:
    p = Path(path)
    if p.is_dir():
        files = [f for f in p.iterdir() if f.is_file() and f.suffix.lower() in (".csv", ".parquet", ".pq")]
        if not files:
            raise OcadConfigError(f"--data {path}: no *.csv or *.parquet file in the directory")
        return str(max(files, key=lambda f: (f.stat().st_mtime, f.name)))
    if not p.is_file():
        raise OcadConfigError(f"--data {path}: no such file or directory")
    return str(p)


def cmd_retrain(args: argparse.Namespace) -> int:
    """train -> evaluate -> gate -> promote or keep; exit codes :data:`RETRAIN_EXIT_CODES`."""
    from ocad.core import OcadValidationError
    from ocad.core.artifacts import ModelStore

    from ._pipeline import train_all

    try:
        _check_force(args)
        args.data = _newest_data_file(args.data)
        if args.labelled and not Path(args.labelled).is_file():
            raise OcadConfigError(f"--labelled {args.labelled}: no such file")
        store = ModelStore(args.store).init()
        if not args.metrics:
            active = [n[len("tcn-"):] for n in store.names() if n.startswith("tcn-") and store.active(n)]
            if active:
                args.metrics = ",".join(active)
        args.out = args.store
        cfg = _config_from_args(args)
        if not cfg.metrics:
            raise OcadConfigError("no metrics to train: the store has no active forecaster; give --metrics")
    except (OcadConfigError, OcadValidationError) as exc:
        print(f"ocad retrain: usage/data error: {exc}", file=sys.stderr)
        return 2
    before = {n: set(store.versions(n)) for n in store.names()}
    print(f"retrain: data {args.data}, store {args.store}, metrics {', '.join(cfg.metrics)}"
          + (", warm start from the active versions" if args.init_from else ""))
    try:
        arts = train_all(cfg, store, progress=not args.quiet, init_from=args.init_from)
    except (OcadConfigError, OcadValidationError) as exc:
        print(f"ocad retrain: usage/data error: {exc}", file=sys.stderr)
        return 2
    summary = _summarise_run(store, arts, before)
    for d in getattr(arts, "decisions", ()):
        print(f"{'fitted' if d.fitted else 'SKIPPED':<8}{d.model}: {d.reason}")
    rc = _gate_and_promote(store, summary, args)
    print(f"retrain: exit {rc} ({RETRAIN_EXIT_CODES[rc]})")
    if args.json:
        doc = {"exit_code": rc, "meaning": RETRAIN_EXIT_CODES[rc], "data": args.data, "store": str(args.store),
               "models": summary}
        Path(args.json).write_text(json.dumps(doc, indent=2, sort_keys=True, default=str), encoding="utf-8")
    return rc


def cmd_models_rollback(args: argparse.Namespace) -> int:
    st = _store(args)
    prev = st.rollback(args.name)
    print(f"{args.name}: rolled back to {prev}")
    return 0


# -- standalone --------------------------------------------------------------------

def build_parser() -> argparse.ArgumentParser:
    """A parser with only this package's commands (``ocad.core.cli`` adds them through the hook)."""
    parser = argparse.ArgumentParser(prog="ocad", description="OCAD training and model store commands")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    add_commands(parser.add_subparsers(dest="command", metavar="COMMAND"))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one of this package's commands; returns the exit code (1 on an OCAD error)."""
    from ocad.core.cli import run

    return run(build_parser(), argv)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
