"""Throughput (samples/s) of ocad.core.spark on Spark local[N] against the single-process Monitor.

Usage (needs the ``spark`` extra and Java 17+)::

    python benchmarks/spark_throughput.py                       # 200 endpoints x 2 h, local[2]
    python benchmarks/spark_throughput.py --endpoints 50 --hours 1 --no-stream
    python benchmarks/spark_throughput.py --out benchmarks/results/spark_throughput.json

Generates one seeded fleet (``generate_fleet``, wide: one sample = one endpoint at one
tick, every metric), then times, on the same data and the same Monitor configuration
(every installed detector, shipped ONNX models when installed):

* ``single``: one ``Monitor.observe(frame)`` in this process (one core);
* ``spark batch, buckets=...``: ``ocad.core.spark.score(df, scores=False)`` and collecting
  the events, for ``buckets=None`` (one per core), ``--buckets`` and one group per
  endpoint (on ``--per-endpoint`` endpoints only: it is slow, see docs/performance.md);
* ``spark batch + scores``: ``buckets=None``, scores and events, written to the ``noop`` sink;
* ``spark stream``: ``ocad.core.spark.stream`` over ``--chunks`` Parquet files, one
  micro-batch each (``maxFilesPerTrigger=1``, ``availableNow``), events to the ``noop`` sink.

The Spark input is cached first and one warm-up job starts the Python workers and builds
their Monitors, so the times are steady-state scoring, not JVM or worker start-up (reported
separately). Every run's events are checked against the single-process events.

Wall times on a shared host move with the other load, so the single-process and batch runs
are repeated in ``--rounds`` interleaved rounds (rotating their order) and the fastest round
of each is reported (the least disturbed), with the median and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import functools
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np


def _key(d: dict[str, Any]) -> tuple[Any, ...]:
    return (d["event"], d["endpoint_id"], float(d["ts"]), d["alert_id"], d["severity"], round(float(d["score"]), 9))


def _load() -> float:
    return os.getloadavg()[0]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--endpoints", type=int, default=200)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--cores", type=int, default=2, help="Spark master local[N]")
    p.add_argument("--buckets", type=int, nargs="*", default=[8], help="extra bucket counts to time")
    p.add_argument("--per-endpoint", type=int, default=20,
                   help="endpoints for the one-group-per-endpoint run (0: skip)")
    p.add_argument("--chunks", type=int, default=12, help="micro-batches of the streaming run")
    p.add_argument("--no-stream", action="store_true")
    p.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the single and batch runs")
    p.add_argument("--no-models", action="store_true", help="built-in detectors only, no plugins")
    p.add_argument("--out", type=Path, default=None, help="write the results as JSON")
    args = p.parse_args()

    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message="The copy keyword is deprecated")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")

    from ocad.core import Monitor
    from ocad.core.plugins import PluginRegistry
    from ocad.core.tooling import generate_fleet
    from ocad.core import spark as ocad_spark

    cfg = {"monitor": {"use_shipped_models": not args.no_models}}
    autoload = not args.no_models
    fleet = generate_fleet(n_endpoints=args.endpoints, duration_s=args.hours * 3600, seed=args.seed)
    frame = fleet.to_frame().drop(columns=["fault_type"])
    n = len(frame)
    results: list[dict[str, Any]] = []

    def report(name: str, samples: int, walls: list[float], same: bool | None, **extra: Any) -> None:
        best, med = min(walls), float(np.median(walls))
        r = {"run": name, "samples": samples, "wall_s": round(best, 2), "wall_s_median": round(med, 2),
             "rounds": len(walls), "samples_per_s": round(samples / best), "events_identical": same,
             "load_1min": round(_load(), 2), **extra}
        results.append(r)
        print(f"{name:<46} {samples:>9,d} samples {best:7.1f} s (median {med:6.1f}, {len(walls)}x) "
              f"{samples / best:>8,.0f} samples/s  events identical: {same}  load {r['load_1min']}", flush=True)

    def monitor() -> Any:
        return Monitor(cfg, registry=None if autoload else PluginRegistry(autoload=False))

    mon = monitor()
    print(f"{args.endpoints} endpoints x {args.hours} h = {n:,d} samples; detectors: "
          f"{', '.join(d.name for d in mon.detectors)}", flush=True)

    def single() -> tuple[float, list[Any]]:
        m = monitor()
        t0 = time.perf_counter()
        evs = m.observe(frame)
        return time.perf_counter() - t0, sorted(_key(e.to_dict()) for e in evs)

    from pyspark.sql import SparkSession

    t = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{args.cores}]").appName("ocad-spark-throughput")
             .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
             .config("spark.sql.shuffle.partitions", str(args.cores))  # = stream buckets: one task each
             .config("spark.pyspark.python", sys.executable)
             .config("spark.driver.memory", "2g")
             .config("spark.sql.execution.arrow.pyspark.enabled", "true").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    startup = time.perf_counter() - t
    print(f"SparkSession start: {startup:.1f} s (pyspark {spark.version})", flush=True)
    df = spark.createDataFrame(frame).cache()
    df.count()
    kw = {"autoload_plugins": autoload}

    def batch(data: Any, buckets: Any) -> tuple[float, list[Any]]:
        res = ocad_spark.score(data, cfg, buckets=buckets, scores=False, **kw)
        t0 = time.perf_counter()
        got = sorted(_key(r.asDict()) for r in res.events.collect())
        return time.perf_counter() - t0, got

    # Warm-up: start the Python workers and build their Monitors (and onnxruntime sessions).
    t = time.perf_counter()
    ocad_spark.score(df.filter(df.ts < float(fleet.ts[3])), cfg, buckets=args.cores * 4, scores=False,
                     **kw).events.collect()
    print(f"warm-up job (workers + Monitor builds): {time.perf_counter() - t:.1f} s", flush=True)

    runs: dict[str, Any] = {"single process (Monitor.observe)": single,
                            f"spark local[{args.cores}] batch, buckets=None ({args.cores})": lambda: batch(df, None)}
    for b in args.buckets:
        runs[f"spark local[{args.cores}] batch, buckets={b}"] = functools.partial(batch, df, b)
    walls: dict[str, list[float]] = {k: [] for k in runs}
    events: dict[str, list[Any]] = {}
    names = list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:  # rotate: no position bias
            w, ev = runs[name]()
            walls[name].append(w)
            events[name] = ev
            print(f"  round {r + 1}: {name}: {w:.1f} s (load {_load():.2f})", flush=True)
    ref = events[names[0]]
    for name in names:
        report(name, n, walls[name], None if name == names[0] else events[name] == ref,
               **({"events": len(ref)} if name == names[0] else {}))

    res = ocad_spark.score(df, cfg, buckets=None, persist=False, **kw)
    t = time.perf_counter()
    res.frame.write.format("noop").mode("overwrite").save()
    report(f"spark local[{args.cores}] batch + scores, buckets=None", n, [time.perf_counter() - t], None)

    if args.per_endpoint:
        ids = list(fleet.endpoint_ids()[: args.per_endpoint])
        sub = frame[frame["endpoint_id"].isin(ids)]
        m = monitor()
        t = time.perf_counter()
        sub_ref = sorted(_key(e.to_dict()) for e in m.observe(sub))
        report(f"single process, {len(ids)} endpoints", len(sub), [time.perf_counter() - t], None)
        w, got = batch(df.filter(df.endpoint_id.isin(ids)), "endpoint")
        report(f"spark local[{args.cores}] batch, per endpoint ({len(ids)})", len(sub), [w], got == sub_ref)

    if not args.no_stream:
        tmp = Path(tempfile.mkdtemp(prefix="ocad-spark-bench-"))
        try:
            src_dir = tmp / "in"
            src_dir.mkdir()
            for i, chunk in enumerate(np.array_split(np.asarray(fleet.ts), args.chunks)):
                frame[frame["ts"].isin(chunk)].to_parquet(src_dir / f"part-{i:04d}.parquet", index=False)
            src = spark.readStream.schema(df.schema).option("maxFilesPerTrigger", 1).parquet(str(src_dir))
            got: list[tuple[Any, ...]] = []

            def collect(bdf: Any, _bid: int) -> None:
                got.extend(_key(r.asDict()) for r in bdf.collect())

            t = time.perf_counter()
            q = (ocad_spark.stream(src, cfg, buckets=args.cores, **kw).writeStream.foreachBatch(collect)
                 .option("checkpointLocation", str(tmp / "ckpt")).trigger(availableNow=True).start())
            q.awaitTermination()
            wall = time.perf_counter() - t
            batches = sum(1 for pr in q.recentProgress if pr["numInputRows"] > 0)
            report(f"spark local[{args.cores}] stream, {batches} micro-batches, buckets={args.cores}", n, [wall],
                   sorted(got) == ref, micro_batches=batches)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    spark.stop()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        doc = {"endpoints": args.endpoints, "hours": args.hours, "seed": args.seed, "cores": args.cores,
               "samples": n, "detectors": [d.name for d in mon.detectors], "spark_startup_s": round(startup, 1),
               "python": platform.python_version(), "pyspark": spark.version, "cpus": os.cpu_count(),
               "results": results}
        args.out.write_text(json.dumps(doc, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
