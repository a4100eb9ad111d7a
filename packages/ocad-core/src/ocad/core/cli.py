"""The ``ocad`` command line: demo, detect, simulate, calibrate, plugins, evaluate, tune-weights, report
(+ plugin commands).

Conventions (docs/cli.md): ``-`` is standard input / output; global options (``-v``, ``-q``,
``--debug``) go before or after the command; optional dependencies a command needs are checked
before it starts; an error is one line on stderr, no traceback (``--debug`` shows it), with an
exit code that says what kind (:data:`EXIT_USAGE`, :data:`EXIT_DATA`, :data:`EXIT_MISSING_EXTRA`,
:data:`EXIT_INTERNAL`).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ._errors import OcadConfigError, OcadDependencyError, OcadError, OcadValidationError, require

__all__ = ["EXIT_DATA", "EXIT_INTERNAL", "EXIT_MISSING_EXTRA", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

#: Exit codes (documented in docs/cli.md and tested).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: an exception OCAD did not raise on purpose (--debug shows the traceback)
EXIT_USAGE = 2  # bad command line or config file (argparse's own code for usage errors)
EXIT_DATA = 3  # the input: a missing / unreadable file, invalid records, a bad artifact
EXIT_MISSING_EXTRA = 4  # an optional dependency is not installed; the message names the extra

log = logging.getLogger("ocad.cli")


def _add_fleet_args(p: argparse.ArgumentParser, endpoints: int, hours: float, seed: int) -> None:
    p.add_argument("--endpoints", type=int, default=endpoints, help=f"endpoints to simulate (default {endpoints})")
    p.add_argument("--hours", type=float, default=hours, help=f"hours of samples (default {hours})")
    p.add_argument("--seed", type=int, default=seed, help=f"random seed (default {seed})")
    p.add_argument("--interval", type=float, default=5.0, help="seconds between samples (default 5)")


def _monitor(args: argparse.Namespace) -> Any:
    from ._monitor import Monitor

    tz = getattr(args, "tz", None)
    if getattr(args, "model_dir", None):
        from ._time import parse_tz

        mon = Monitor.from_model_dir(args.model_dir, args.config)
        mon.tz = parse_tz(tz)
    elif getattr(args, "config", None):
        mon = Monitor(args.config, tz=tz)
    else:
        mon = Monitor({"monitor": {"use_shipped_models": not getattr(args, "core_only", False)}}, tz=tz)
    if getattr(args, "labels", None):
        mon.set_labels(args.labels)
    return mon


def run_fleet(mon: Any, fleet: Any, *, label: str = "scoring", progress: bool = True) -> list[Any]:
    """Feed a generated fleet to a Monitor tick by tick; returns all alert events."""
    from ._progress import Progress

    events: list[Any] = []
    n = len(fleet.ts)
    with Progress(n, label, enabled=progress) as bar:
        step = max(n // 200, 1)
        for t in range(n):
            ep, ts, vals = fleet.columns(t)
            events += mon.observe_columns(ep, ts, vals)
            if (t + 1) % step == 0:
                bar.update(step)
    return events


def detector_contributions(events: Sequence[Any]) -> dict[str, float]:
    """Share of each detector in the evidence of opened alerts (sums to 1)."""
    tot: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.event == "open":
            for e in ev.alert.evidence:
                tot[e.detector] += e.contribution
    s = sum(tot.values())
    return {k: v / s for k, v in sorted(tot.items(), key=lambda kv: -kv[1])} if s else {}


# -- commands -----------------------------------------------------------------
def cmd_demo(args: argparse.Namespace) -> int:
    from .tooling._evaluation import alerts_from_events, match_events, summarize_matches
    from .tooling._io import write_events
    from .tooling._synthetic import generate_fleet

    print(f"Generating a fleet: {args.endpoints} endpoints x {args.hours} h every {args.interval} s "
          f"(seed {args.seed}) with labelled faults ...", file=sys.stderr)
    fleet = generate_fleet(args.endpoints, args.hours * 3600, args.interval, seed=args.seed)
    mon = _monitor(args)
    names = ", ".join(f"{d.name} ({d.kind})" for d in mon.detectors)
    print(f"Detectors: {names}", file=sys.stderr)
    events = run_fleet(mon, fleet)
    alerts = alerts_from_events(events)
    end = float(fleet.ts[-1])
    matches, false = match_events(alerts, fleet.events, end_ts=end)
    days = len(fleet.endpoints) * (end - float(fleet.ts[0]) + args.interval) / 86400.0
    summary = summarize_matches(matches, false, len(alerts), days)
    out = write_events(events, args.out)

    print()
    print(f"OCAD demo: {len(fleet.endpoints)} endpoints, {len(fleet.ts)} ticks, "
          f"{len(fleet.events)} labelled fault events")
    print(f"{'fault type':<15}{'events':>8}{'detected':>10}{'recall':>8}{'mean TTD s':>12}{'lead p50 s':>12}")
    for ft, r in summary["per_fault_type"].items():
        ttd = f"{r['mttd_s']:.0f}" if r["mttd_s"] is not None else "-"
        lead = f"{r['lead_time_p50_s']:.0f}" if r["lead_time_p50_s"] is not None else "-"
        print(f"{ft:<15}{r['events']:>8}{r['detected']:>10}{r['recall']:>8.2f}{ttd:>12}{lead:>12}")
    print(f"{'all':<15}{summary['events']:>8}{summary['events_detected']:>10}{summary['event_recall']:>8.2f}")
    print(f"alerts: {summary['alerts']}  false alerts: {summary['false_alerts']}  "
          f"event precision: {summary['event_precision']:.2f}  "
          f"false alerts per endpoint-day: {summary['false_alerts_per_endpoint_day']:.3f}")
    contrib = detector_contributions(events)
    if contrib:
        print("detector contributions to opened alerts: "
              + ", ".join(f"{k} {v:.0%}" for k, v in contrib.items()))
    first = [ev for ev in events if ev.event == "open"][:3]
    for ev in first:
        a = ev.alert
        ev_txt = "; ".join(f"{e.detector}/{e.metric}: {_num(e.observed)} vs {_num(e.expected)}"
                           for e in a.evidence[:3])
        print(f"  e.g. {a.severity:<8} {a.endpoint_id} at +{a.opened_ts - fleet.ts[0]:.0f}s "
              f"score {a.score:.2f} [{'+'.join(a.kinds)}] {ev_txt}")
    h = mon.health()
    bad = {n: d["last_error"] for n, d in h["detectors"].items() if d["failures"] or d["disabled"]}
    if bad:
        print(f"detector problems: {bad}")
    print(f"alert events written to {out}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2), encoding="utf-8")
    return 0


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.3g}"


def cmd_simulate(args: argparse.Namespace) -> int:
    from .tooling._synthetic import FAULT_TYPES, generate_fleet

    faults: Any = True
    if args.faults == "none":
        faults = False
    elif args.faults != "all":
        faults = [f.strip() for f in args.faults.split(",")]
        bad = [f for f in faults if f not in FAULT_TYPES]
        if bad:
            print(f"ocad simulate: unknown fault type(s) {bad}; choose from {list(FAULT_TYPES)}", file=sys.stderr)
            return 2
    fleet = generate_fleet(args.endpoints, args.hours * 3600, args.interval, seed=args.seed, faults=faults)
    if Path(args.out).suffix.lower() in (".parquet", ".pq"):
        # The same labelled-file layout as the CSV (fault_type "" = normal), read by
        # evaluate --data and train --data alike.
        from ._errors import require

        require("pyarrow", "io", "ocad simulate --out *.parquet")
        fleet.to_frame(long=args.long).to_parquet(args.out, index=False)
    else:
        fleet.write_csv(args.out, long=args.long)
    if args.events:
        Path(args.events).write_text(json.dumps(fleet.events_table(), indent=1), encoding="utf-8")
    print(f"wrote {len(fleet.endpoints)} endpoints x {len(fleet.ts)} samples to {args.out} "
          f"({len(fleet.events)} fault events)")
    return 0


def _chunk_labels(chunk: Any, cols: Sequence[str], seen: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
    """Endpoint labels of one chunk's ``--label-columns``, checked against the earlier chunks'.

    Returns the endpoints whose labels are new or grew (all their labels), for ``set_labels``.
    """
    from ._labels import labels_from_records

    def text(v: Any) -> Any:  # a numeric column (Parquet) holds rack 3 as 3.0
        if isinstance(v, float):
            return None if v != v else str(int(v)) if v.is_integer() else str(v)
        return v

    # One row per distinct (endpoint, labels): a chunk repeats them on every sample.
    combos = set(zip(chunk.endpoint_id.tolist(), *(chunk.extra[c].tolist() for c in cols)))
    rows = [{"endpoint_id": t[0], **{c: text(v) for c, v in zip(cols, t[1:])}} for t in combos]
    changed: dict[str, dict[str, str]] = {}
    for e, labels in labels_from_records(rows, cols).items():
        old = seen.get(e, {})
        for k, v in labels.items():
            if k in old and old[k] != v:
                raise OcadValidationError(f"labels[{e!r}][{k!r}]", v,
                                          f"conflicts with {old[k]!r} given earlier for the same endpoint")
        if any(k not in old for k in labels):
            seen[e] = changed[e] = {**old, **labels}
    return changed


def cmd_detect(args: argparse.Namespace) -> int:
    from .tooling._io import SampleReader

    # Optional extras are checked before the file is read, not after.
    if args.metrics_port is not None:
        require("prometheus_client", "prometheus", "ocad detect --metrics-port")
    if args.alertmanager_url:
        require("httpx", "alertmanager", "ocad detect --alertmanager-url")
    label_cols = [c.strip() for c in (args.label_columns or "").split(",") if c.strip()]
    try:
        reader = SampleReader(args.file, chunk_rows=args.chunk_rows, keep=label_cols, tz=args.tz)
    except OcadValidationError as exc:
        if label_cols and exc.field in label_cols:
            raise OcadValidationError("--label-columns", [exc.field], "no such column(s) in the input") from None
        raise
    mon = _monitor(args)
    metrics_server = sink = None
    try:
        if args.metrics_port is not None:
            from .integrations.prometheus import serve

            try:
                metrics_server = serve(mon, args.metrics_port, args.metrics_addr)
            except OSError as exc:
                raise OcadConfigError(f"--metrics-port {args.metrics_port} on {args.metrics_addr}: {exc}") from None
            print(f"metrics on {metrics_server.url}", file=sys.stderr)
        if args.alertmanager_url:
            from .integrations.alertmanager import AlertmanagerSink

            sink = AlertmanagerSink(args.alertmanager_url, generator_url=args.generator_url).start()
        events, out, missing_in_file = _detect(args, mon, reader, label_cols, sink)
        say = sys.stderr if out == "-" else sys.stdout  # a summary on stdout would mix with the events
        if sink is not None:
            sink.close(timeout=30.0)
            st = sink.stats
            print(f"alertmanager {sink.url}: {st['sent']} alerts posted, {st['failed']} failed, "
                  f"{st['rejected']} rejected, {st['dropped']} dropped, {sink.pending} not sent", file=say)
            sink = None
        if metrics_server is not None and args.metrics_linger > 0:
            import time

            print(f"serving metrics for {args.metrics_linger:g} s more", file=sys.stderr)
            time.sleep(args.metrics_linger)
    finally:
        if sink is not None:
            sink.close(timeout=5.0)
        if metrics_server is not None:
            metrics_server.close()
    h = mon.health()["validation"]
    opened = sum(ev.event == "open" for ev in events)
    have = sorted(k for k in reader.seen_metrics if k in mon.validator.names)
    where = "standard output" if out == "-" else str(out)
    print(f"{reader.rows} records, {h['values_rejected']} values rejected, {missing_in_file} missing "
          f"(of {len(have)} metrics in the file); {opened} alerts opened, {len(events)} events written to {where}",
          file=say)
    if h["values_rejected"] or h["dropped_records"] or h["unknown_metrics"]:
        print("validation: " + json.dumps({k: h[k] for k in ("rejected", "dropped_records", "unknown_metrics")}),
              file=say)
    return 0


def _detect(args: argparse.Namespace, mon: Any, reader: Any, label_cols: Sequence[str],
            sink: Any) -> tuple[list[Any], str, int]:
    """Feed the file chunk by chunk (posting to ``sink``), write the events; (events, out, missing)."""
    from ._progress import Progress
    from .tooling._io import event_format, write_events

    fmt = args.format or (event_format(args.out, "csv") if args.out else "csv")
    if fmt == "parquet":
        require("pyarrow", "io", "ocad detect --format parquet")
    if args.out:
        out = args.out
    elif reader.name == "<stdin>":
        out = "-"
    else:
        base = Path(args.file)
        for suf in (".gz", ".parquet", ".pq", ".csv"):
            if base.name.lower().endswith(suf):
                base = base.with_name(base.name[:-len(suf)])
        out = base.as_posix() + (".alerts.alertmanager.json" if fmt == "alertmanager" else f".alerts.{fmt}")
    events: list[Any] = []
    missing_in_file = 0
    n_metrics = len(mon.metrics.names())
    seen_labels: dict[str, dict[str, str]] = {}
    quiet = getattr(args, "quiet", False) or reader.total_rows is None
    with Progress(reader.total_rows or 1, "detecting", enabled=not quiet) as bar:
        for chunk in reader.chunks():
            if label_cols:
                new_labels = _chunk_labels(chunk, label_cols, seen_labels)
                if new_labels:
                    mon.set_labels(new_labels)
            m0 = mon.stats.values_missing
            new = mon.observe_columns(chunk.endpoint_id, chunk.ts, chunk.values)
            # The Validator counts a metric the file has no column for as missing in every row: the
            # summary counts only the cells of the metrics the file has.
            absent = n_metrics - sum(1 for k in chunk.values if k in mon.validator.names)
            missing_in_file += mon.stats.values_missing - m0 - len(chunk) * absent
            if sink is not None:
                sink.send(new)
            events += new
            bar.update(len(chunk))
    if fmt == "alertmanager":
        from .integrations.alertmanager import alertmanager_payloads

        doc = json.dumps(alertmanager_payloads(events, generator_url=args.generator_url), indent=1)
        if out == "-":
            sys.stdout.write(doc + "\n")
        else:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            Path(out).write_text(doc, encoding="utf-8")
    else:
        write_events(events, out, fmt)
    return events, out, missing_in_file


def cmd_calibrate(args: argparse.Namespace) -> int:
    from ._monitor import Monitor
    from .tooling._synthetic import generate_fleet

    if args.config:
        mon = Monitor(args.config, tz=args.tz)
    else:
        mon = Monitor({"monitor": {"use_shipped_models": False}}, tz=args.tz)
    if args.data:
        from .tooling._io import iter_chunks

        data: Any = iter_chunks(args.data, tz=args.tz)
    else:
        fleet = generate_fleet(args.endpoints, args.hours * 3600, args.interval, seed=args.seed, faults=False)
        data = fleet.iter_ticks()
    doc = mon.calibrate(data)
    doc["source"] = args.data or f"simulated: endpoints={args.endpoints} hours={args.hours} seed={args.seed}"
    Path(args.out).write_text(json.dumps(doc, indent=1, sort_keys=True), encoding="utf-8")
    print(f"calibrated {sorted(doc['detectors'])} -> {args.out}")
    return 0


def cmd_plugins(args: argparse.Namespace) -> int:
    from ._monitor import Monitor
    from .plugins._registry import default_registry

    reg = default_registry()
    mon = Monitor(registry=reg)
    if args.json:
        doc = {
            "plugins": [{"name": p.name, "version": p.version, "source": p.source} for p in reg.plugins()],
            "detectors": [{"name": d.name, "kind": d.kind, "metrics": list(d.metrics)} for d in mon.detectors],
            "metrics": [sp.to_dict() for sp in mon.metrics],
            "failures": [{"plugin": f.plugin, "stage": f.stage, "error": str(f.error)} for f in reg.failures],
            "artifact_errors": [str(e) for e in mon.artifact_errors],
        }
        print(json.dumps(doc, indent=1))
        return 0
    print(f"{'plugin':<24}{'version':<12}source")
    for p in reg.plugins():
        print(f"{p.name:<24}{p.version:<12}{p.source}")
    print()
    print(f"{'detector':<24}{'kind':<14}metrics")
    for d in mon.detectors:
        print(f"{d.name:<24}{d.kind:<14}{','.join(d.metrics)}")
    print()
    print("metrics: " + ", ".join(mon.metrics.names()))
    if reg.failures:
        print()
        print("FAILURES:")
        for f in reg.failures:
            print(f"  {f.plugin} ({f.stage}): {f.error}")
    if mon.artifact_errors:  # e.g. a shipped model that fails verification: its detector is off
        print()
        print("ARTIFACT ERRORS:")
        for e in mon.artifact_errors:
            print(f"  {e}")
    return 0


def _quality_factory(args: argparse.Namespace) -> Any:
    import attrs

    from ._config import MonitorConfig
    from .tooling._quality import MonitorFactory

    cfg = MonitorConfig.coerce(args.config) if getattr(args, "config", None) else MonitorConfig()
    if getattr(args, "core_only", False):
        cfg = attrs.evolve(cfg, use_shipped_models=False)
    return MonitorFactory(cfg, model_dir=getattr(args, "model_dir", None))


def _quality_source(args: argparse.Namespace) -> Any:
    from .tooling._quality import load_labelled_file

    if args.data:
        return load_labelled_file(args.data, args.events)
    return args.suite


def _families(args: argparse.Namespace) -> list[str] | None:
    """``--family a --family b,c`` -> ["a", "b", "c"]; None when not given."""
    if not getattr(args, "family", None):
        return None
    if args.data:
        from ._errors import OcadConfigError

        raise OcadConfigError("--family selects scenario families of a suite (--suite generalization), not --data")
    return [f.strip() for v in args.family for f in v.split(",") if f.strip()]


def cmd_evaluate(args: argparse.Namespace) -> int:
    from .tooling._quality import evaluate, format_evaluation

    ev = evaluate(_quality_source(args), split=args.split, factory=_quality_factory(args),
                  ablation=args.ablation, progress=not getattr(args, "quiet", False), families=_families(args))
    print(format_evaluation(ev.metrics))
    if args.json:
        print(f"metrics written to {ev.write_json(args.json)}")
    if getattr(args, "model_dir", None):
        for path in refresh_reports(args.model_dir, ev.metrics, source=args.data or f"suite {args.suite}"):
            print(f"performance report refreshed: {path}")
    return 0


#: The evaluation figures copied into each active version's ``performance_report.json`` ``detection``.
DETECTION_FIELDS = ("event_f1", "event_precision", "event_recall", "false_alerts_per_endpoint_day",
                    "false_alarm_rate", "mttd_s", "lead_time_p50_s", "events", "events_detected", "alerts",
                    "false_alerts", "endpoint_days", "per_fault_type", "roc_auc", "pr_auc", "forecaster")


def refresh_reports(model_dir: str, metrics: Any, *, source: str) -> list[Path]:
    """Put an evaluation's detection figures into the store's active versions' performance reports.

    Only for a model store (a plain artifact directory has no reports). The rest of
    each report (prediction, operational, dataset) is kept; a version without a
    report gets one with just ``detection``.
    """
    import datetime as dt

    from .artifacts import ModelStore

    if not ModelStore.is_store(model_dir):
        return []
    st = ModelStore(model_dir)
    det = {k: metrics.get(k) for k in DETECTION_FIELDS}
    det.update(source=source, measured=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
               scope="the Monitor running this store's active versions (ocad evaluate --model-dir)")
    out = []
    for name in st.names():
        v = st.active(name)
        if v is None:
            continue
        rep = st.report(name, v) or {"schema_version": 1, "model": {"name": name, "version": v}}
        rep["detection"] = det
        out.append(st.write_report(name, v, rep))
    return out


def cmd_tune_weights(args: argparse.Namespace) -> int:
    import tomllib

    from .tooling._quality import tune_weights

    seeds = [int(x) for x in args.seeds.split(",")] if args.seeds else None
    res = tune_weights(args.suite, factory=_quality_factory(args), seeds=seeds, rounds=args.rounds,
                       max_false_alerts_per_endpoint_day=args.max_false_alerts_per_endpoint_day,
                       max_false_alarm_rate=args.max_false_alarm_rate, progress=not getattr(args, "quiet", False))
    base = tomllib.loads(Path(args.config).read_text(encoding="utf-8")) if args.config else None
    out = res.write(args.out, base)
    print(f"tuned on suite {res.suite!r}, tuning seeds {list(res.seeds)} ({res.evaluations} candidates)")
    print("weights: " + ", ".join(f"{k} {v:g}" for k, v in res.weights.items()))
    print("alerts:  " + ", ".join(f"{k} {v:g}" for k, v in res.alerts.items()))
    for label, m in (("before", res.before), ("after", res.after)):
        print(f"{label:<7} event F1 {_num(m['event_f1'])}  precision {_num(m['event_precision'])}  "
              f"recall {_num(m['event_recall'])}  false alerts/endpoint-day {_num(m['false_alerts_per_endpoint_day'])}"
              f"  false-alarm rate {_num(m['false_alarm_rate'])}  lead p50 {_num(m['lead_time_p50_s'])} s")
    print(f"config written to {out} (use: ocad evaluate --config {out})")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .tooling._quality import evaluate, format_evaluation
    from .tooling._report import write_report

    factory = _quality_factory(args)
    ev = evaluate(_quality_source(args), split=args.split, factory=factory,
                  ablation=args.ablation, progress=not getattr(args, "quiet", False), families=_families(args))
    print(format_evaluation(ev.metrics))
    if args.json:
        print(f"metrics written to {ev.write_json(args.json)}")
    out = write_report(ev, args.out, max_endpoints=args.endpoints, open_threshold=factory.config.alerts.open_threshold)
    print(f"report written to {out}")
    return 0


def _add_quality_args(p: argparse.ArgumentParser, *, data: bool = True) -> None:
    p.add_argument("--suite", default="default",
                   help="suite name ('default'; 'generalization': test-only scenario families) or TOML path "
                        "(default: 'default')")
    if data:
        p.add_argument("--data", help="a labelled CSV/Parquet file (endpoint_id, ts, metrics, fault_type) "
                                      "instead of a suite")
        p.add_argument("--events", help="with --data: fault events JSON (ocad simulate --events) "
                                        "instead of deriving them from fault_type runs")
        p.add_argument("--split", choices=("test", "tune"), default="test",
                       help="which seeds of the suite to evaluate (default: test)")
        p.add_argument("--family", action="extend", nargs="+", metavar="NAME",
                       help="with --suite generalization: only these scenario families (names, repeatable, or a "
                            "comma list)")
        p.add_argument("--ablation", choices=("replay", "rerun", "none"), default="replay",
                       help="ablation from cached detector scores (replay, default), by re-running "
                            "Monitors (rerun, slow), or none")
    p.add_argument("--config", help="Monitor config (TOML)")
    p.add_argument("--model-dir", help="trained artifacts / model store to use")
    p.add_argument("--core-only", action="store_true", help="no ML detectors even if installed")


_GLOBAL_OPTIONS: tuple[tuple[tuple[str, ...], str], ...] = (
    (("-v", "--verbose"), "log at INFO level"),
    (("-q", "--quiet"), "no progress on stderr, warnings only when they matter (log at ERROR)"),
    (("--debug",), "show the traceback of an error (and log at DEBUG)"),
)


def _add_global_options(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """The global options; on a subcommand they default to SUPPRESS so that ``ocad -v detect`` keeps -v."""
    for flags, text in _GLOBAL_OPTIONS:
        if any(f in p._option_string_actions for f in flags):  # a plugin command that has its own
            continue
        p.add_argument(*flags, action="store_true", default=argparse.SUPPRESS if sub else False, help=text)


def _add_tz(p: argparse.ArgumentParser) -> None:
    p.add_argument("--tz", help="time zone of naive timestamps in the input (IANA name such as Europe/Paris, "
                                "UTC, or +02:00); without it they are refused (docs/timestamps.md)")


def _version() -> str:
    from importlib import metadata

    from . import __version__

    parts = [f"ocad-core {__version__}"]
    for dist in ("ocad-detectors-ml", "ocad-train"):
        try:
            parts.append(f"{dist} {metadata.version(dist)}")
        except metadata.PackageNotFoundError:
            pass
    return "ocad " + __version__ + " (" + ", ".join(parts) + f"; Python {sys.version.split()[0]})"


def build_parser() -> argparse.ArgumentParser:
    from .plugins._registry import default_registry

    parser = argparse.ArgumentParser(
        prog="ocad", description="OCAD anomaly detection for network operations",
        epilog="exit codes: 0 ok, 1 internal error (a bug: rerun with --debug), 2 usage or config, "
               "3 input data, 4 missing optional dependency (the message names the extra)")
    parser.add_argument("--version", action="version", version=_version())
    _add_global_options(parser, sub=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    p = sub.add_parser("demo", help="simulate a fleet with faults, run the Monitor, summarise the alerts")
    _add_fleet_args(p, endpoints=60, hours=6.0, seed=11)
    p.add_argument("--out", default="ocad-demo-alerts.jsonl", help="alert events file (.jsonl/.json/.csv)")
    p.add_argument("--json", help="also write the summary as JSON here")
    p.add_argument("--core-only", action="store_true", help="no ML detectors even if installed")
    p.add_argument("--config", help="Monitor config (TOML)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("simulate", help="write a generated, labelled fleet to CSV or Parquet")
    _add_fleet_args(p, endpoints=20, hours=2.0, seed=0)
    p.add_argument("--out", required=True,
                   help="labelled file: .csv, or .parquet / .pq (extra 'io'); fault_type '' = normal")
    p.add_argument("--long", action="store_true", help="long format (endpoint_id, ts, metric, value)")
    p.add_argument("--faults", default="all", help="'all', 'none' or a comma list of fault types")
    p.add_argument("--events", help="write the labelled fault events as JSON here")
    p.set_defaults(func=cmd_simulate)

    p = sub.add_parser("detect", help="run the Monitor over a CSV/Parquet file and write alert events")
    p.add_argument("file", help="CSV (.csv, .csv.gz), Parquet file or directory/dataset, wide or long format; "
                                "'-' reads standard input")
    p.add_argument("--config", help="Monitor config (TOML)")
    p.add_argument("--model-dir", help="trained artifacts / model store to use")
    p.add_argument("--core-only", action="store_true", help="no ML detectors")
    p.add_argument("--format", choices=("csv", "json", "jsonl", "parquet", "alertmanager"), default=None,
                   help="alert events format (default: from --out's suffix, else csv); 'alertmanager': a JSON "
                        "list of Alertmanager API v2 alerts (POST it to /api/v2/alerts)")
    p.add_argument("--out", help="output file, '-' for standard output (default: FILE.alerts.<format>; "
                                 "standard output when FILE is '-')")
    _add_tz(p)
    p.add_argument("--chunk-rows", type=int, default=100_000,
                   help="rows read and scored at a time: bounds memory (default 100000)")
    p.add_argument("--labels", help="endpoint inventory (CSV/Parquet: endpoint_id + one column per label); "
                                    "labels travel with the alerts")
    p.add_argument("--label-columns", help="comma list of input columns that are endpoint labels, not metrics")
    p.add_argument("--generator-url", help="alertmanager generatorURL; {endpoint_id} and {alert_id} are replaced")
    p.add_argument("--alertmanager-url", help="also post the alerts to this Alertmanager (extra: alertmanager)")
    p.add_argument("--metrics-port", type=int, help="serve Prometheus metrics on this port while detecting "
                                                    "(extra: prometheus)")
    p.add_argument("--metrics-addr", default="127.0.0.1", help="address for --metrics-port (default 127.0.0.1)")
    p.add_argument("--metrics-linger", type=float, default=0.0,
                   help="keep serving metrics this many seconds after the file is done (default 0)")
    p.set_defaults(func=cmd_detect)

    p = sub.add_parser("calibrate", help="fit the core detectors' calibration on normal data")
    _add_fleet_args(p, endpoints=80, hours=12.0, seed=3)
    p.add_argument("--data", help="normal data file instead of simulating ('-': standard input)")
    p.add_argument("--config", help="Monitor config (TOML)")
    p.add_argument("--out", required=True, help="calibration JSON to write")
    _add_tz(p)
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("plugins", help="list plugins, detectors, metrics and load failures")
    p.add_argument("--json", action="store_true", help="as one JSON document (for scripts)")
    p.set_defaults(func=cmd_plugins)

    p = sub.add_parser("evaluate", help="quality metrics over a labelled suite or file (after the alert policy)")
    _add_quality_args(p)
    p.add_argument("--json", help="write every metric as JSON (stable keys) here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("tune-weights", help="fit detector weights and alert thresholds on a suite's tuning seeds")
    _add_quality_args(p, data=False)
    p.add_argument("--seeds", help="comma list of tuning seeds (default: the suite's; test seeds are refused)")
    p.add_argument("--out", default="ocad-tuned.toml", help="config TOML to write (default ocad-tuned.toml)")
    p.add_argument("--max-false-alerts-per-endpoint-day", type=float, default=1.0,
                   help="constraint of the search (default 1.0)")
    p.add_argument("--max-false-alarm-rate", type=float, default=0.05,
                   help="constraint: share of normal samples under an open alert (default 0.05)")
    p.add_argument("--rounds", type=int, default=2, help="coordinate-search rounds (default 2)")
    p.set_defaults(func=cmd_tune_weights)

    p = sub.add_parser("report", help="evaluate, then write a self-contained HTML report (extra: report)")
    _add_quality_args(p)
    p.add_argument("--out", default="ocad-report.html", help="HTML file (default ocad-report.html)")
    p.add_argument("--json", help="also write the metrics as JSON here")
    p.add_argument("--endpoints", type=int, default=8, help="endpoints to plot (default 8)")
    p.set_defaults(func=cmd_report)

    default_registry().add_cli_commands(sub)
    for name, sp in sub.choices.items():
        _add_global_options(sp, sub=True)
    return parser


def _needs(args: argparse.Namespace) -> list[tuple[str, str, str]]:
    """Optional dependencies the command will need: (module, extra, purpose), checked before any work."""
    cmd = getattr(args, "command", None)
    needs: list[tuple[str, str, str]] = []

    def parquet(path: Any, what: str) -> None:
        if path and path != "-" and (Path(path).is_dir() or str(path).lower().endswith((".parquet", ".pq"))):
            needs.append(("pyarrow", "io", f"ocad {cmd} {what} (Parquet)"))

    if cmd == "report":
        needs.append(("matplotlib", "report", "ocad report"))
    if cmd in ("evaluate", "report"):
        parquet(getattr(args, "data", None), "--data")
    if cmd == "calibrate":
        parquet(getattr(args, "data", None), "--data")
    if cmd == "detect":
        parquet(getattr(args, "file", None), "FILE")
        parquet(getattr(args, "out", None), "--out")
        if getattr(args, "format", None) == "parquet":
            needs.append(("pyarrow", "io", "ocad detect --format parquet"))
    if cmd == "simulate":
        parquet(getattr(args, "out", None), "--out")
    return needs


def main(argv: Sequence[str] | None = None) -> int:
    """The ``ocad`` command; returns the exit code (see :data:`EXIT_USAGE` and the others)."""
    return run(build_parser(), argv)


def run(parser: argparse.ArgumentParser, argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` with ``parser`` and run the chosen command's ``func`` (plugins reuse this).

    Errors become one line on stderr and an exit code: :data:`EXIT_USAGE` (command line, config),
    :data:`EXIT_DATA` (input), :data:`EXIT_MISSING_EXTRA`, :data:`EXIT_INTERNAL` (anything else);
    ``--debug`` raises instead, with the traceback.
    """
    args = parser.parse_args(argv)
    debug = getattr(args, "debug", False)
    level = (logging.DEBUG if debug else logging.INFO if getattr(args, "verbose", False)
             else logging.ERROR if getattr(args, "quiet", False) else logging.WARNING)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    prog = f"{parser.prog} {getattr(args, 'command', '') or ''}".strip()
    # The level of OCAD's loggers for this command only: run() is also called in-process (tests,
    # an embedding app's own CLI), where a lasting change would silence later warnings.
    ocad_log = logging.getLogger("ocad")
    old_level = ocad_log.level
    ocad_log.setLevel(level)
    try:
        for module, extra, purpose in _needs(args):
            require(module, extra, purpose)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # `ocad detect f.csv --out - | head`: the reader left; not an error
        try:
            sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keep the interpreter's final flush quiet
        except OSError:
            pass
        return EXIT_OK
    except Exception as exc:  # noqa: BLE001 - the one place that turns every error into an exit code
        if debug:
            raise
        code, text = _classify(exc)
        print(f"{prog}: error: {text}", file=sys.stderr)
        if code == EXIT_INTERNAL:
            print(f"{prog}: this is a bug in OCAD or a plugin; rerun with --debug for the traceback",
                  file=sys.stderr)
        return code
    finally:
        ocad_log.setLevel(old_level)


def _classify(exc: BaseException) -> tuple[int, str]:
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OcadDependencyError):
        return EXIT_MISSING_EXTRA, text
    if isinstance(exc, OcadConfigError):
        return EXIT_USAGE, text
    if isinstance(exc, OcadError):
        return EXIT_DATA, text
    if isinstance(exc, OSError):  # permission denied, disk full, a directory where a file was expected
        return EXIT_DATA, f"{type(exc).__name__}: {text}"
    return EXIT_INTERNAL, f"{type(exc).__name__}: {text}"


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
