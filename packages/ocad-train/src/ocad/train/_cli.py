"""``ocad train``, ``ocad export`` and ``ocad models``: added to the ``ocad`` CLI through the plugin hook.

Heavy imports (torch, pandas, onnx) happen inside the handlers, so ``ocad --help``
and every Monitor start (which loads this plugin) stay fast.

Commands::

    ocad train (--data FILE | --simulate [--endpoints N --hours H --seed S])
               --metrics a,b,c --out DIR [--epochs E --window W --config TOML
               --tune N --resume --mlflow --threads T --quiet]
    ocad export --checkpoint WORK/tcn-<metric>/best.pt --out model.onnx [--dataset test.parquet]
    ocad models list --store DIR
    ocad models show NAME [--version V] --store DIR
    ocad models promote NAME VERSION --store DIR
    ocad models rollback NAME --store DIR

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

__all__ = ["add_commands", "build_parser", "main"]

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
    p.set_defaults(func=cmd_train)

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
    q = msub.add_parser("promote", help="make a version active")
    q.add_argument("name")
    q.add_argument("version")
    q.add_argument("--store", required=True, metavar="DIR")
    q.set_defaults(func=cmd_models_promote)
    q = msub.add_parser("rollback", help="re-activate the previously active version")
    q.add_argument("name")
    q.add_argument("--store", required=True, metavar="DIR")
    q.set_defaults(func=cmd_models_rollback)


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
    from ._pipeline import train_all

    cfg = _config_from_args(args)
    if not cfg.data.file and not cfg.data.simulate:
        raise OcadConfigError("ocad train: give --data FILE or --simulate (or [data] in --config)")
    tracker = None
    if args.mlflow or cfg.mlflow.get("enabled"):
        from ._tracking import MlflowTracker

        tracker = MlflowTracker(tracking_uri=cfg.mlflow.get("tracking_uri") or None,
                                experiment=cfg.mlflow.get("experiment", "ocad"),
                                run_name=cfg.mlflow.get("run_name"),
                                params={"metrics": ",".join(cfg.metrics), "seed": cfg.seed})
    try:
        arts = train_all(cfg, args.out, resume=args.resume, progress=not args.quiet,
                         tune_trials=args.tune, tracker=tracker)
    finally:
        if tracker is not None:
            tracker.close()
    print(f"{'model':<28}{'version':<10}{'test MAE':>12}{'naive MAE':>12}{'parity':>10}")
    for a in arts:
        t = (a.manifest.get("metrics") or {}).get("test") or {}
        par = (a.manifest.get("parity") or {}).get("max_abs_diff")
        print(f"{a.name:<28}{a.version:<10}{_num(t.get('mae')):>12}{_num(t.get('naive_mae')):>12}"
              f"{_num(par):>10}")
    for d in getattr(arts, "decisions", ()):
        print(f"{'fitted' if d.fitted else 'SKIPPED':<8}{d.model}: {d.reason}")
    print(f"store: {args.out} (decisions in train_report.json)")
    return 0


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
    print(f"{'model':<28}{'active':<10}versions")
    for n in names:
        print(f"{n:<28}{st.active(n) or '-':<10}{', '.join(st.versions(n))}")
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
    m["path"] = str(art.path)
    print(json.dumps(m, indent=2, sort_keys=True))
    return 0


def cmd_models_promote(args: argparse.Namespace) -> int:
    st = _store(args)
    if args.version not in st.versions(args.name):
        raise OcadConfigError(f"{args.name} has no version {args.version!r}; it has {st.versions(args.name)}")
    st.promote(args.name, args.version)
    print(f"{args.name}: active version is now {args.version}")
    return 0


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
