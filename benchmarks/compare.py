"""OCAD performance comparison: every figure of ``docs/performance.md`` from one invocation.

Usage::

    python benchmarks/compare.py --out benchmarks/results/compare.json   # make bench-compare

Runtime figures (ticks, memory, import) are measured in fresh interpreters that
import neither torch nor scikit-learn (``pip install "ocad-core[ml]"``); each one
checks that and reports it. The ONNX-vs-framework comparisons run in this
process, which imports both. Times are medians in seconds (the N=1 tick also as
its 99th percentile), ratios are other / ours (> 1: ours is faster).

The tick: a Monitor with every detector (built-ins, plus the ML detectors when
their shipped models are installed) whose windows are full, then timed
``observe_columns`` calls, each a new tick of N endpoints (see
``benchmarks/benchmarks/common.py``). On a shared machine wall time includes the
time other processes take the CPU from us; CPU time (``process_time``) is
reported next to it.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

TARGETS = {  # key: (comparison, bound) -- "<=" a time or size, ">=" a ratio
    "tick_1_p99_s": ("<=", 0.001),
    "tick_10k_s": ("<=", 0.1),
    "tick_100k_s": ("<=", 1.5),
    "tcn_ort_vs_torch_b1": (">=", 5.0),
    "tcn_ort_vs_torch_b10k": (">=", 1.5),
    "iforest_onnx_vs_sklearn_b1": (">=", 100.0),
    "iforest_onnx_vs_sklearn_b100k": (">=", 1.0),
    "rss_1k_endpoints_mb": ("<=", 100.0),
    "import_s": ("<=", 0.3),
}


# -- runtime workers (fresh interpreters, no torch / scikit-learn) ---------------------------------

def _no_training_libs() -> dict[str, Any]:
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "sklearn"})
    return {"training_libs_loaded": loaded}


def worker_tick(n: int, ticks: int, ml: bool, records: bool) -> dict[str, Any]:
    from benchmarks.common import warm_monitor

    mon, src = warm_monitor(n, ml=ml)
    stages = _time_stages(mon)
    feed = (lambda: mon.observe(src.next_records())) if records else (lambda: mon.observe_columns(*src.next()))
    for _ in range(3 if n > 1_000 else 20):  # untimed: lazy initialisation, caches
        feed()
    for h in mon.composite.health.values():
        h.calls, h.total_time_s = 0, 0.0
    for v in stages.values():
        v.clear()
    wall, cpu = [], []
    for _ in range(ticks):
        w0, c0 = time.perf_counter(), time.process_time()
        feed()
        wall.append(time.perf_counter() - w0)
        cpu.append(time.process_time() - c0)
    per_det = {name: h.total_time_s / h.calls for name, h in mon.composite.health.items() if h.calls}
    per_stage = {k: float(np.median(v)) for k, v in stages.items() if v}
    return {"n": n, "ticks": ticks, "detectors": [d.name for d in mon.detectors], "window": mon.window,
            "stage_median_s": per_stage,
            "wall_median_s": float(np.median(wall)), "wall_p99_s": float(np.percentile(wall, 99)),
            "cpu_median_s": float(np.median(cpu)), "cpu_p99_s": float(np.percentile(cpu, 99)),
            "detector_median_s": per_det, **_no_training_libs()}


def _time_stages(mon: Any) -> dict[str, list[float]]:
    """Wrap the Monitor's stages with timers (this worker's Monitor only)."""
    stages: dict[str, list[float]] = {}

    def timed(obj: Any, attr: str, name: str) -> None:
        fn = getattr(obj, attr)
        stages[name] = []

        def wrapper(*a: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*a, **kw)
            finally:
                stages[name].append(time.perf_counter() - t0)

        setattr(obj, attr, wrapper)

    timed(mon.validator, "from_columns", "validate")
    timed(mon.validator, "from_records", "validate_records")
    timed(mon.store, "window_of", "window_gather")
    timed(mon.features, "compute", "features")
    timed(mon.composite, "score", "detectors")
    timed(mon.policy, "update", "alerts")
    return stages


def worker_rss(n: int) -> dict[str, Any]:
    import resource

    from benchmarks.common import warm_monitor

    mon, src = warm_monitor(n, ml=True, observe=True)
    for _ in range(10):
        mon.observe_columns(*src.next())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    with open("/proc/self/statm") as f:
        now_mb = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    return {"n": n, "detectors": [d.name for d in mon.detectors], "max_rss_mb": peak_mb, "rss_now_mb": now_mb,
            "store_mb": mon.store.nbytes() / 2**20, **_no_training_libs()}


_IMPORT_SNIPPET = """
import sys, time, json
t0, c0 = time.perf_counter(), time.process_time()
import {module}
t1, c1 = time.perf_counter(), time.process_time()
extra = {{}}
if {monitor}:
    from ocad.core import Monitor
    sys.path.insert(0, {here!r})
    from benchmarks.common import make_monitor
    make_monitor(ml=True)
    extra["monitor_s"] = time.perf_counter() - t1
print(json.dumps({{"import_s": t1 - t0, "import_cpu_s": c1 - c0, **extra,
                  "training_libs_loaded": sorted({{m.split('.')[0] for m in sys.modules}} & {{'torch', 'sklearn'}})}}))
"""


_PYCACHE: str | None = None


def _env() -> dict[str, str]:
    """Subprocess environment: the benchmark helpers importable, and bytecode cached.

    pip compiles an installed package's bytecode; a development environment may run
    with PYTHONDONTWRITEBYTECODE (every import compiles from source). The workers
    cache bytecode in a private directory instead, so that imports cost what they
    cost installed, without writing into the source tree.
    """
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if _PYCACHE is not None:
        env["PYTHONPYCACHEPREFIX"] = _PYCACHE
    return env


def _run_json(cmd: list[str], timeout: float = 1800) -> dict[str, Any]:
    env = _env()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(*args: str) -> dict[str, Any]:
    return _run_json([sys.executable, str(Path(__file__).resolve()), "--worker", *args])


def measure_import(module: str, repeats: int, monitor: bool = False) -> dict[str, Any]:
    cmd = [sys.executable, "-c", _IMPORT_SNIPPET.format(module=module, monitor=monitor, here=str(HERE))]
    _run_json(cmd)  # untimed: fills the bytecode cache
    runs = [_run_json(cmd) for _ in range(repeats)]
    out = {"import_s": statistics.median(r["import_s"] for r in runs),
           "import_s_min": min(r["import_s"] for r in runs),
           "import_cpu_s": statistics.median(r["import_cpu_s"] for r in runs),
           "training_libs_loaded": sorted({m for r in runs for m in r["training_libs_loaded"]})}
    if monitor:
        out["monitor_s"] = statistics.median(r["monitor_s"] for r in runs)
    return out


# -- ONNX vs framework (this process) ----------------------------------------------------------------

def _interleaved(fns: dict[str, Any], x: np.ndarray, *, min_runs: int, seconds: float) -> dict[str, float]:
    """Median seconds per call of each function.

    Rounds alternate the functions (load from other processes hits all alike); within a
    round each runs a block of back-to-back calls lasting ~10 ms (at least one), so that
    a 20-microsecond call is timed warm, as a loop of calls runs, and not just after
    the other library has walked through the cache.
    """
    block: dict[str, int] = {}
    for k, f in fns.items():
        f(x)  # warm-up
        t0 = time.perf_counter()
        f(x)
        block[k] = max(1, int(0.01 / max(time.perf_counter() - t0, 1e-7)))
    times: dict[str, list[float]] = {k: [] for k in fns}
    end = time.perf_counter() + seconds
    while min(len(t) for t in times.values()) < min_runs or time.perf_counter() < end:
        for k, f in fns.items():
            t0 = time.perf_counter()
            for _ in range(block[k]):
                f(x)
            times[k].append((time.perf_counter() - t0) / block[k])
        if min(len(t) for t in times.values()) >= 10 * min_runs:
            break
    return {k: float(np.median(v)) for k, v in times.items()}


def compare_tcn(quick: bool) -> dict[str, Any]:
    from benchmarks import models

    models.single_thread_training_libs()
    model, onnx_bytes, arch = models.tcn_pair()
    ort = models.ort_forecast(models.runtime_session(onnx_bytes))
    torch_run = models.torch_forecast(model)
    out: dict[str, Any] = {"tcn_architecture": arch}
    for b, runs, secs in ((1, 30, 3.0), (10_000, 3 if quick else 5, 0.0)):
        x = models.tcn_inputs(b, arch["window"])
        diff = float(np.max(np.abs(ort(x) - torch_run(x))))
        med = _interleaved({"ort": ort, "torch": torch_run}, x, min_runs=runs, seconds=secs)
        key = "b1" if b == 1 else "b10k"
        out[f"tcn_ort_{key}_s"], out[f"tcn_torch_{key}_s"] = med["ort"], med["torch"]
        out[f"tcn_ort_vs_torch_{key}"] = med["torch"] / med["ort"]
        out[f"tcn_max_abs_diff_{key}"] = diff
    return out


def compare_iforest(quick: bool) -> dict[str, Any]:
    from benchmarks import models

    models.single_thread_training_libs()
    forest, onnx_bytes, test = models.iforest_pair()
    ort = models.ort_forecast(models.runtime_session(onnx_bytes))
    out: dict[str, Any] = {"iforest_trees": len(forest.estimators_), "iforest_features": int(test.shape[1])}
    for b, runs, secs in ((1, 30, 3.0), (1_000, 20, 1.0), (100_000, 2 if quick else 3, 0.0)):
        x = np.ascontiguousarray(test[:b])
        diff = float(np.max(np.abs(ort(x) - forest.score_samples(x))))
        med = _interleaved({"onnx": ort, "sklearn": forest.score_samples}, x, min_runs=runs, seconds=secs)
        key = {1: "b1", 1_000: "b1k", 100_000: "b100k"}[b]
        out[f"iforest_onnx_{key}_s"], out[f"iforest_sklearn_{key}_s"] = med["onnx"], med["sklearn"]
        out[f"iforest_onnx_vs_sklearn_{key}"] = med["sklearn"] / med["onnx"]
        out[f"iforest_max_abs_diff_{key}"] = diff
    return out


# -- report ---------------------------------------------------------------------------------------------

def _fmt(key: str, v: Any) -> str:
    if not isinstance(v, (int, float)):
        return str(v)
    if key.endswith("_mb"):
        return f"{v:.1f} MB"
    if key.endswith("_s"):
        return f"{v * 1e3:.3f} ms" if v < 1 else f"{v:.2f} s"
    return f"{v:.1f}x"


def table(res: dict[str, Any]) -> str:
    lines = [f"{'figure':<34}{'value':>14}  {'target':>10}  status"]
    for key, (op, bound) in TARGETS.items():
        v = res.get(key)
        if v is None:
            lines.append(f"{key:<34}{'n/a':>14}  {op}{_fmt(key, bound):>9}  not measured")
            continue
        ok = v <= bound if op == "<=" else v >= bound
        by = (v / bound) if op == "<=" else (bound / v)
        status = "met" if ok else f"MISSED ({by:.1f}x {'over' if op == '<=' else 'short'})"
        lines.append(f"{key:<34}{_fmt(key, v):>14}  {op}{_fmt(key, bound):>9}  {status}")
    lines.append("")
    lines.append("context (not targets):")
    for key in ("tick_1_median_s", "tick_1_cpu_median_s", "tick_1_cpu_p99_s", "tick_1_records_p99_s",
                "tick_1_core_median_s", "tick_1_core_p99_s", "tick_1k_s", "tick_1k_core_s", "tick_10k_cpu_s",
                "tick_10k_core_s",
                "tick_100k_cpu_s", "tick_100k_core_s", "tcn_ort_b1_s", "tcn_torch_b1_s", "tcn_ort_b10k_s",
                "tcn_torch_b10k_s", "iforest_onnx_b1_s", "iforest_sklearn_b1_s", "iforest_onnx_vs_sklearn_b1k",
                "iforest_onnx_b100k_s", "iforest_sklearn_b100k_s", "rss_1k_now_mb", "import_cpu_s",
                "import_ml_s", "monitor_build_s"):
        if key in res:
            lines.append(f"  {key:<32}{_fmt(key, res[key]):>14}")
    for key in ("tick_1_stage_s", "tick_1_detector_s", "tick_1k_stage_s", "tick_1k_detector_s", "tick_10k_stage_s",
                "tick_10k_detector_s", "tick_100k_stage_s", "tick_100k_detector_s"):
        if key in res:
            parts = ", ".join(f"{k} {_fmt('x_s', v)}" for k, v in res[key].items())
            lines.append(f"  {key:<32}{parts}")
    return "\n".join(lines)


def markdown(res: dict[str, Any]) -> str:
    """The docs/performance.md tables of a result file (``--render``)."""
    out = ["| key | value | target | status |", "|---|---:|---:|---|"]
    for key, (op, bound) in TARGETS.items():
        v = res.get(key)
        if v is None:
            out.append(f"| `{key}` | n/a | {op} {_fmt(key, bound)} | not measured |")
            continue
        ok = v <= bound if op == "<=" else v >= bound
        by = (v / bound) if op == "<=" else (bound / v)
        status = "met" if ok else f"**missed**, {by:.1f}x {'over' if op == '<=' else 'short'}"
        out.append(f"| `{key}` | {_fmt(key, v)} | {op} {_fmt(key, bound)} | {status} |")
    out += ["", "| endpoints | tick (all detectors) | CPU | core detectors only | per endpoint (all) |",
            "|---:|---:|---:|---:|---:|"]
    for n, key in ((1, "1"), (1_000, "1k"), (10_000, "10k"), (100_000, "100k")):
        t = res.get("tick_1_median_s") if key == "1" else res.get(f"tick_{key}_s")
        if t is None:
            continue
        cpu = res.get("tick_1_cpu_median_s") if key == "1" else res.get(f"tick_{key}_cpu_s")
        core = res.get("tick_1_core_median_s") if key == "1" else res.get(f"tick_{key}_core_s")
        out.append(f"| {n:,} | {_fmt('x_s', t)} | {_fmt('x_s', cpu) if cpu else ''} | "
                   f"{_fmt('x_s', core) if core else ''} | {t / n * 1e6:,.1f} µs |")
    stages = ["validate", "window_gather", "features", "detectors", "alerts"]
    dets = list(res.get("detectors", []))
    out += ["", "| endpoints | " + " | ".join(stages + dets) + " |", "|---:|" + "---:|" * (len(stages) + len(dets))]
    for n, key in ((1, "1"), (1_000, "1k"), (10_000, "10k"), (100_000, "100k")):
        st, de = res.get(f"tick_{key}_stage_s"), res.get(f"tick_{key}_detector_s")
        if not st or not de:
            continue
        cells = [_fmt("x_s", st[k]) if k in st else "" for k in stages]
        cells += [_fmt("x_s", de[k]) if k in de else "" for k in dets]
        out.append(f"| {n:,} | " + " | ".join(cells) + " |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results" / "compare.json")
    p.add_argument("--quick", action="store_true", help="fewer repetitions, no 100 000-endpoint tick")
    p.add_argument("--render", type=Path, help="print the markdown tables of a result file and exit")
    p.add_argument("--worker", nargs="+", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.render:
        print(markdown(json.loads(args.render.read_text(encoding="utf-8"))))
        return 0
    if args.worker:
        kind, *rest = args.worker
        if kind == "tick":
            n, ticks, ml, records = int(rest[0]), int(rest[1]), rest[2] == "ml", rest[3] == "records"
            print(json.dumps(worker_tick(n, ticks, ml, records)))
        elif kind == "rss":
            print(json.dumps(worker_rss(int(rest[0]))))
        return 0

    global _PYCACHE
    import tempfile

    _PYCACHE = tempfile.mkdtemp(prefix="ocad-bench-pycache-")
    t_start = time.perf_counter()
    res: dict[str, Any] = {}
    log = lambda msg: print(f"[{time.perf_counter() - t_start:6.1f}s] {msg}", flush=True)  # noqa: E731
    loaded: set[str] = set()

    log("tick N=1 (observe_columns, all detectors)")
    r = run_worker("tick", "1", "300" if args.quick else "1000", "ml", "columns")
    res.update(tick_1_p99_s=r["wall_p99_s"], tick_1_median_s=r["wall_median_s"], tick_1_cpu_p99_s=r["cpu_p99_s"],
               tick_1_cpu_median_s=r["cpu_median_s"], tick_1_detector_s=r["detector_median_s"],
               tick_1_stage_s=r["stage_median_s"],
               detectors=r["detectors"], monitor_window=r["window"])
    loaded |= set(r["training_libs_loaded"])
    log("tick N=1 (observe, records)")
    r = run_worker("tick", "1", "300" if args.quick else "1000", "ml", "records")
    res.update(tick_1_records_p99_s=r["wall_p99_s"], tick_1_records_median_s=r["wall_median_s"])
    log("tick N=1, core detectors only")
    r = run_worker("tick", "1", "300" if args.quick else "1000", "core", "columns")
    res.update(tick_1_core_p99_s=r["wall_p99_s"], tick_1_core_median_s=r["wall_median_s"])
    sizes = [(1_000, "1k", 10), (10_000, "10k", 3 if args.quick else 5)] + \
        ([] if args.quick else [(100_000, "100k", 3)])
    for n, key, ticks in sizes:
        log(f"tick N={n}")
        r = run_worker("tick", str(n), str(ticks), "ml", "columns")
        res[f"tick_{key}_s"] = r["wall_median_s"]
        res[f"tick_{key}_cpu_s"] = r["cpu_median_s"]
        res[f"tick_{key}_detector_s"] = r["detector_median_s"]
        res[f"tick_{key}_stage_s"] = r["stage_median_s"]
        loaded |= set(r["training_libs_loaded"])
        log(f"tick N={n}, core detectors only")
        r = run_worker("tick", str(n), str(ticks), "core", "columns")
        res[f"tick_{key}_core_s"] = r["wall_median_s"]
    log("max RSS, 1 000 endpoints warmed")
    r = run_worker("rss", "1000")
    res.update(rss_1k_endpoints_mb=r["max_rss_mb"], rss_1k_now_mb=r["rss_now_mb"], store_1k_mb=r["store_mb"])
    loaded |= set(r["training_libs_loaded"])
    log("import times (fresh interpreters)")
    r = measure_import("ocad.core", 3 if args.quick else 7)
    res.update(import_s=r["import_s"], import_min_s=r["import_s_min"], import_cpu_s=r["import_cpu_s"])
    r = measure_import("ocad.detectors_ml", 3 if args.quick else 5, monitor=True)
    res.update(import_ml_s=r["import_s"], monitor_build_s=r["monitor_s"])
    loaded |= set(r["training_libs_loaded"])
    res["runtime_training_libs_loaded"] = sorted(loaded)

    log("TCN: onnxruntime vs eager PyTorch")
    res.update(compare_tcn(args.quick))
    log("Isolation Forest: ONNX vs scikit-learn")
    res.update(compare_iforest(args.quick))

    with open("/proc/loadavg") as f:
        load = f.read().split()[:3]
    res["environment"] = {"python": platform.python_version(), "machine": platform.machine(),
                          "cpus": os.cpu_count(), "loadavg_at_end": load, "quick": args.quick,
                          "seconds": round(time.perf_counter() - t_start, 1),
                          "numpy": np.__version__}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(res, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    print()
    print(table(res))
    print(f"\nwrote {args.out}")
    import shutil

    shutil.rmtree(_PYCACHE, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
