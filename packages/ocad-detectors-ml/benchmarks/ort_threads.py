"""How many onnxruntime intra-op threads should a tick use? Wall and CPU time per detector call.

Usage::

    python packages/ocad-detectors-ml/benchmarks/ort_threads.py [--model-dir DIR] [--n 100 1000 5000]

Builds the residual and multivariate detectors from the shipped models (or
``--model-dir``) once per thread setting and scores generated views of N
endpoints (``ocad.core.testing.make_view``), in interleaved rounds so that load
from other processes hits every setting alike. Prints the fastest wall time and
CPU time (all threads of the process) of one ``score`` call over the rounds
(the least disturbed by other processes on a shared host): a
second thread is only worth it when it cuts wall time by more than the CPU it
takes from the rest of the Monitor on a shared 2-core host.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from ocad.core.artifacts import find_artifacts, load_artifact
from ocad.core.plugins import ORAN_METRICS, DetectorContext, MetricRegistry
from ocad.core.testing import make_view
from ocad.detectors_ml import build_detectors, models_dir

SETTINGS = {"1 thread": {"intra_op_num_threads": 1},
            "2 threads": {"intra_op_num_threads": 2},
            "2 threads, spinning": {"intra_op_num_threads": 2, "allow_spinning": True}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model-dir", type=Path, default=None)
    p.add_argument("--n", type=int, nargs="+", default=[100, 1000, 5000])
    p.add_argument("--rounds", type=int, default=7)
    args = p.parse_args()
    root = args.model_dir or models_dir()
    arts = [load_artifact(x) for x in find_artifacts(root)]
    reg = MetricRegistry(ORAN_METRICS)
    dets = {name: {d.name: d for d in build_detectors(arts, DetectorContext(
        metrics=reg, window=32, session_options=opts, strict=True))} for name, opts in SETTINGS.items()}
    names = sorted(next(iter(dets.values())))
    print(f"{'detector':<14}{'N':>7}  " + "".join(f"{s + ' wall/cpu ms':>34}" for s in SETTINGS))
    for det_name in names:
        window = max(next(iter(dets.values()))[det_name].window, 32)
        for n in args.n:
            view = make_view(reg, n, window, seed=n, scenarios=("normal", "sparse_nan", "spike", "normal"))
            walls: dict[str, list[float]] = {s: [] for s in SETTINGS}
            cpus: dict[str, list[float]] = {s: [] for s in SETTINGS}
            for s in SETTINGS:  # warm-up
                dets[s][det_name].score(view)
            order = list(SETTINGS)
            for k in range(args.rounds):
                for s in order[k % len(order):] + order[:k % len(order)]:  # rotate: no position bias
                    w0, c0 = time.perf_counter(), time.process_time()
                    dets[s][det_name].score(view)
                    walls[s].append(time.perf_counter() - w0)
                    cpus[s].append(time.process_time() - c0)
            cells = "".join(f"{min(walls[s]) * 1e3:>22.2f} / {min(cpus[s]) * 1e3:8.2f}" for s in SETTINGS)
            print(f"{det_name:<14}{n:>7}  {cells}", flush=True)


if __name__ == "__main__":
    main()
