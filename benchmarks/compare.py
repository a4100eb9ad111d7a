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

Memory: peak RSS of a worker process per N (``rss_*``), and with ``--baseline-models DIR``
the tick and RSS of another set of model artifacts (e.g. an older release's, see
docs/performance.md) measured in the same run, so that before / after ratios do not
mix two load situations. Baselines next to the stack: a numpy rolling z-score over the
same ticks (the floor of what a user could write instead) and the float32 GEMM rate
of this core (onnxruntime MatMul, 1024^3), so that the forecasters' fraction of peak
is visible.
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
    "tcn_forecast_us_b10k": ("<=", 1.5),
    "tcn_ort_vs_torch_b1": (">=", 5.0),
    "tcn_ort_vs_torch_b10k": (">=", 1.5),
    "iforest_onnx_vs_sklearn_b1": (">=", 100.0),
    "iforest_onnx_vs_sklearn_b100k": (">=", 1.0),
    "rss_1k_endpoints_mb": ("<=", 100.0),
    "rss_100k_mb": ("<=", 600.0),
    "import_s": ("<=", 0.3),
}


# -- runtime workers (fresh interpreters, no torch / scikit-learn) ---------------------------------

def _no_training_libs() -> dict[str, Any]:
    loaded = sorted({m.split(".")[0] for m in sys.modules} & {"torch", "sklearn"})
    return {"training_libs_loaded": loaded}


def _bench_env() -> None:
    """A baseline run: other model artifacts (``OCAD_BENCH_MODELS``), the shipped ones otherwise."""
    root = os.environ.get("OCAD_BENCH_MODELS")
    if root:
        from ocad.detectors_ml import _plugin

        _plugin.models_dir = lambda: Path(root)


def _apply_block_rows(mon: Any) -> None:
    rows = os.environ.get("OCAD_BENCH_BLOCK_ROWS")
    if rows:
        for d in mon.detectors:
            for fc in getattr(d, "forecasters", ()):
                fc.block_rows = int(rows)


def worker_tick(n: int, ticks: int, ml: bool, records: bool) -> dict[str, Any]:
    from benchmarks.common import warm_monitor

    _bench_env()
    mon, src = warm_monitor(n, ml=ml)
    _apply_block_rows(mon)
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


def _rss_now_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def worker_rss(n: int) -> dict[str, Any]:
    """Peak RSS of a process that runs a Monitor of ``n`` endpoints (windows full, then ticks)."""
    import resource

    from benchmarks.common import make_monitor, warm_monitor

    _bench_env()
    make_monitor(ml=True)  # imports, sessions: the fixed part of the RSS
    base_mb = _rss_now_mb()
    mon, src = warm_monitor(n, ml=True, observe=n <= 1_000)
    _apply_block_rows(mon)
    for _ in range(10 if n <= 1_000 else 3):
        mon.observe_columns(*src.next())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux
    return {"n": n, "detectors": [d.name for d in mon.detectors], "max_rss_mb": peak_mb,
            "rss_now_mb": _rss_now_mb(), "rss_base_mb": base_mb, "store_mb": mon.store.nbytes() / 2**20,
            **_no_training_libs()}


def worker_zscore(n: int, ticks: int) -> dict[str, Any]:
    """The floor: a numpy rolling z-score per endpoint and metric over the same ticks.

    What a user could write instead of OCAD: a ring buffer of the last ``W`` samples,
    running sums (NaN-aware: missing samples do not count), ``z = (x - mean) / std``
    of the newest sample, an alert where ``|z| > 4`` on any metric. Timed like the
    Monitor's tick, including taking the tick's columns from the same source.
    """
    from benchmarks.common import TickSource

    window = 32
    src = TickSource(n)
    m = len(src.metrics)
    ring = np.zeros((window, n, m))
    ok = np.zeros((window, n, m), bool)
    s1, s2, cnt = np.zeros((n, m)), np.zeros((n, m)), np.zeros((n, m))

    def tick(k: int) -> np.ndarray:
        _, _, cols = src.next()
        x = np.column_stack([cols[name] for name in src.metrics])
        good = np.isfinite(x)
        xv = np.where(good, x, 0.0)
        j = k % window
        old, old_ok = ring[j], ok[j]
        s1[:] += xv - old
        s2[:] += xv * xv - old * old
        cnt[:] += good.astype(float) - old_ok
        ring[j], ok[j] = xv, good
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s1 / cnt
            sd = np.sqrt(np.maximum(s2 / cnt - mean * mean, 0.0))
            z = (xv - mean) / sd
        return (np.abs(np.where(good & (cnt >= 8), z, 0.0)) > 4.0).any(axis=1)

    for k in range(window + 3):
        tick(k)
    wall = []
    for k in range(window + 3, window + 3 + ticks):
        t0 = time.perf_counter()
        tick(k)
        wall.append(time.perf_counter() - t0)
    return {"n": n, "wall_median_s": float(np.median(wall))}


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


def _run_json(cmd: list[str], timeout: float = 1800, extra_env: dict[str, str] | None = None) -> dict[str, Any]:
    env = {**_env(), **(extra_env or {})}
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd[:4])} ... failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def run_worker(*args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    return _run_json([sys.executable, str(Path(__file__).resolve()), "--worker", *args], extra_env=env)


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


def gemm_session(n: int = 1024) -> tuple[Any, dict[str, np.ndarray], float]:
    """An onnxruntime MatMul of two ``n x n`` float32 matrices (the runtime's session options) and its FLOPs."""
    import onnx
    from onnx import TensorProto, helper

    from benchmarks import models

    g = helper.make_graph([helper.make_node("MatMul", ["a", "b"], ["c"])], "gemm",
                          [helper.make_tensor_value_info(k, TensorProto.FLOAT, [n, n]) for k in "ab"],
                          [helper.make_tensor_value_info("c", TensorProto.FLOAT, [n, n])])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    onnx.checker.check_model(m)
    rng = np.random.default_rng(0)
    feeds = {k: rng.standard_normal((n, n)).astype(np.float32) for k in "ab"}
    return models.runtime_session(m.SerializeToString()), feeds, 2.0 * n ** 3


def compare_tcn(quick: bool) -> dict[str, Any]:
    """The forecaster graphs: last-step (shipped, run in the detector's blocks) vs full graph vs torch.

    Within one interleaved measurement (same load for all): eager torch, the full graph
    (every output step; the artifacts before issue #12) in one call, the last-step graph
    in one call and in the residual detector's blocks, and a 1024^3 float32 MatMul for
    this core's GEMM rate.
    """
    from benchmarks import models
    from ocad.detectors_ml._residual import BLOCK_ROWS
    from ocad.train import tcn_flops

    models.single_thread_training_libs()
    model, onnx_bytes, arch = models.tcn_pair()
    full_bytes = models.tcn_pair(graph="full")[1]
    ort = models.ort_forecast(models.runtime_session(onnx_bytes))
    full = models.ort_forecast(models.runtime_session(full_bytes))
    torch_run = models.torch_forecast(model)

    def blocked(x: np.ndarray) -> np.ndarray:
        return np.concatenate([ort(x[i:i + BLOCK_ROWS]) for i in range(0, x.shape[0], BLOCK_ROWS)])

    gsess, gfeeds, gflop = gemm_session()

    def gemm(_: np.ndarray) -> Any:
        return gsess.run(None, gfeeds)

    flops = {g: 2 * tcn_flops(arch["window"], arch["hidden"], arch["levels"], arch["kernel_size"],
                              last_step=g == "last") for g in ("last", "full")}
    out: dict[str, Any] = {"tcn_architecture": arch, "tcn_block_rows": BLOCK_ROWS,
                           "tcn_flop_per_forecast": flops["last"], "tcn_full_flop_per_forecast": flops["full"]}
    for b, runs, secs in ((1, 30, 3.0), (10_000, 3 if quick else 7, 0.0)):
        x = models.tcn_inputs(b, arch["window"])
        ref = torch_run(x)
        key = "b1" if b == 1 else "b10k"
        out[f"tcn_max_abs_diff_{key}"] = float(np.max(np.abs(blocked(x) - ref)))
        out[f"tcn_full_max_abs_diff_{key}"] = float(np.max(np.abs(full(x) - ref)))
        fns = {"ort": blocked, "full": full, "torch": torch_run}
        if b > BLOCK_ROWS:
            fns["one_call"] = ort
        if b == 10_000:
            fns["gemm"] = gemm
        med = _interleaved(fns, x, min_runs=runs, seconds=secs)
        out[f"tcn_ort_{key}_s"], out[f"tcn_torch_{key}_s"] = med["ort"], med["torch"]
        out[f"tcn_full_{key}_s"] = med["full"]
        out[f"tcn_ort_vs_torch_{key}"] = med["torch"] / med["ort"]
        out[f"tcn_last_vs_full_{key}"] = med["full"] / med["ort"]
        if "one_call" in med:
            out[f"tcn_one_call_{key}_s"] = med["one_call"]
        if "gemm" in med:
            rate = gflop / med["gemm"]
            out["gemm_f32_gflops"] = rate / 1e9
            out["tcn_forecast_us_b10k"] = med["ort"] / b * 1e6
            out["tcn_full_forecast_us_b10k"] = med["full"] / b * 1e6
            out["tcn_fraction_of_peak"] = flops["last"] * b / med["ort"] / rate
            out["tcn_full_fraction_of_peak"] = flops["full"] * b / med["full"] / rate
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
    if "_us_" in key or key.endswith("_us"):
        return f"{v:.2f} µs"
    if key.endswith("_gflops"):
        return f"{v:.1f} GFLOP/s"
    if "fraction" in key:
        return f"{100 * v:.0f} %"
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
                "tcn_torch_b10k_s", "tcn_full_b10k_s", "tcn_one_call_b10k_s", "tcn_last_vs_full_b10k",
                "tcn_full_forecast_us_b10k", "gemm_f32_gflops", "tcn_fraction_of_peak", "tcn_full_fraction_of_peak",
                "zscore_100k_s", "rss_10k_mb", "rss_base_mb", "baseline_tick_100k_s", "baseline_rss_100k_mb",
                "iforest_onnx_b1_s", "iforest_sklearn_b1_s", "iforest_onnx_vs_sklearn_b1k",
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
    for prefix, label in (("", ""), ("baseline_", "before: ")):
        for n, key in ((1, "1"), (1_000, "1k"), (10_000, "10k"), (100_000, "100k")):
            st, de = res.get(f"{prefix}tick_{key}_stage_s"), res.get(f"{prefix}tick_{key}_detector_s")
            if not st or not de:
                continue
            cells = [_fmt("x_s", st[k]) if k in st else "" for k in stages]
            cells += [_fmt("x_s", de[k]) if k in de else "" for k in dets]
            out.append(f"| {label}{n:,} | " + " | ".join(cells) + " |")
    sizes = ((1, "1"), (1_000, "1k"), (10_000, "10k"), (100_000, "100k"))

    def tick(key: str, prefix: str = "") -> Any:
        return res.get(f"{prefix}tick_1_median_s" if key == "1" and not prefix else f"{prefix}tick_{key}_s")

    if any(f"baseline_tick_{k}_s" in res for _, k in sizes):
        out += ["", "| endpoints | tick before (baseline models) | tick now | speed-up | CPU before | CPU now | "
                "CPU speed-up | residual before | residual now |", "|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for n, key in sizes:
            b, a = res.get(f"baseline_tick_{key}_s"), tick(key)
            if b is None or a is None:
                continue
            cb = res.get(f"baseline_tick_{key}_cpu_s")
            ca = res.get("tick_1_cpu_median_s") if key == "1" else res.get(f"tick_{key}_cpu_s")
            cpu = (f"{_fmt('x_s', cb)} | {_fmt('x_s', ca)} | {cb / ca:.2f}x" if cb and ca else " | | ")
            rb = (res.get(f"baseline_tick_{key}_detector_s") or {}).get("residual")
            ra = (res.get(f"tick_{key}_detector_s") or {}).get("residual")
            out.append(f"| {n:,} | {_fmt('x_s', b)} | {_fmt('x_s', a)} | {b / a:.2f}x | {cpu} | "
                       f"{_fmt('x_s', rb) if rb else ''} | {_fmt('x_s', ra) if ra else ''} |")
    if any(f"zscore_{k}_s" in res for _, k in sizes):
        out += ["", "| endpoints | OCAD, all detectors | OCAD, core detectors | numpy rolling z-score | "
                "all / z-score | per endpoint: all, z-score |", "|---:|---:|---:|---:|---:|---:|"]
        for n, key in sizes:
            z, a = res.get(f"zscore_{key}_s"), tick(key)
            if z is None or a is None:
                continue
            core = res.get(f"tick_{key}_core_s")
            out.append(f"| {n:,} | {_fmt('x_s', a)} | {_fmt('x_s', core) if core else ''} | {_fmt('x_s', z)} | "
                       f"{a / z:,.0f}x | {a / n * 1e6:,.1f} µs, {z / n * 1e6:,.2f} µs |")
    rss = [(n, k) for n, k in sizes if f"rss_{k}_mb" in res or (k == "1k" and "rss_1k_endpoints_mb" in res)]
    if rss:
        out += ["", "| endpoints | peak RSS | window store | baseline models, one call per forecaster |",
                "|---:|---:|---:|---:|"]
        for n, key in rss:
            v = res.get("rss_1k_endpoints_mb") if key == "1k" else res.get(f"rss_{key}_mb")
            st = res.get(f"store_{key}_mb")
            bl = res.get(f"baseline_rss_{key}_mb")
            out.append(f"| {n:,} | {_fmt('x_mb', v)} | {_fmt('x_mb', st) if st is not None else ''} | "
                       f"{_fmt('x_mb', bl) if bl is not None else ''} |")
    if "gemm_f32_gflops" in res:
        g = res["gemm_f32_gflops"]
        out += ["", "| forecaster graph (batch 10 000) | FLOP per forecast | µs per forecast | GFLOP/s | "
                "of this core's GEMM rate |", "|---|---:|---:|---:|---:|"]
        for label, fk, tk in (("full (all 32 steps, one call)", "tcn_full_flop_per_forecast", "tcn_full_b10k_s"),
                              ("last step, one call", "tcn_flop_per_forecast", "tcn_one_call_b10k_s"),
                              (f"last step, blocks of {res.get('tcn_block_rows', '?')} (shipped)",
                               "tcn_flop_per_forecast", "tcn_ort_b10k_s")):
            f, t = res.get(fk), res.get(tk)
            if f is None or t is None:
                continue
            rate = f * 10_000 / t / 1e9
            out.append(f"| {label} | {f / 1e3:,.0f} k | {t / 10_000 * 1e6:.2f} | {rate:.1f} | {100 * rate / g:.0f} % |")
        out.append(f"| float32 GEMM 1024³ (onnxruntime MatMul, 1 thread) | | | {g:.1f} | 100 % |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=HERE / "results" / "compare.json")
    p.add_argument("--quick", action="store_true", help="fewer repetitions, no 100 000-endpoint tick")
    p.add_argument("--render", type=Path, help="print the markdown tables of a result file and exit")
    p.add_argument("--baseline-models", type=Path,
                   help="also measure the tick and RSS with these model artifacts (one directory per artifact), "
                        "each forecaster in one onnxruntime call per tick, as before issue #12")
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
        elif kind == "zscore":
            print(json.dumps(worker_zscore(int(rest[0]), int(rest[1]))))
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
    for n, key in [(1_000, "1k"), (10_000, "10k")] + ([] if args.quick else [(100_000, "100k")]):
        log(f"max RSS, {n} endpoints warmed")
        r = run_worker("rss", str(n))
        res[f"rss_{key}_mb"], res[f"store_{key}_mb"] = r["max_rss_mb"], r["store_mb"]
        res["rss_base_mb"] = r["rss_base_mb"]
        if n == 1_000:
            res.update(rss_1k_endpoints_mb=r["max_rss_mb"], rss_1k_now_mb=r["rss_now_mb"])
        loaded |= set(r["training_libs_loaded"])
    res.pop("rss_1k_mb", None)
    for n, key in [(1_000, "1k"), (10_000, "10k")] + ([] if args.quick else [(100_000, "100k")]):
        log(f"numpy rolling z-score, N={n}")
        res[f"zscore_{key}_s"] = run_worker("zscore", str(n), "20" if n < 100_000 else "10")["wall_median_s"]
    if args.baseline_models:
        env = {"OCAD_BENCH_MODELS": str(args.baseline_models.resolve()), "OCAD_BENCH_BLOCK_ROWS": "1000000000"}
        res["baseline_models"] = str(args.baseline_models)
        for n, key, ticks in [(1, "1", 300 if args.quick else 1000)] + [(a, k, t) for a, k, t in sizes]:
            log(f"baseline models: tick N={n}")
            r = run_worker("tick", str(n), str(ticks), "ml", "columns", env=env)
            res[f"baseline_tick_{key}_s"] = r["wall_median_s"]
            res[f"baseline_tick_{key}_cpu_s"] = r["cpu_median_s"]
            res[f"baseline_tick_{key}_detector_s"] = r["detector_median_s"]
            res[f"baseline_tick_{key}_stage_s"] = r["stage_median_s"]
            if n == 1:
                res["baseline_tick_1_p99_s"] = r["wall_p99_s"]
        log("baseline models: max RSS at the largest N")
        big, bkey = (10_000, "10k") if args.quick else (100_000, "100k")
        res[f"baseline_rss_{bkey}_mb"] = run_worker("rss", str(big), env=env)["max_rss_mb"]
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
