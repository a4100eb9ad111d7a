"""The asv suites cannot rot: ``asv check`` imports every suite, one quick benchmark runs.

What ``make asv-quick`` (and CI) does, in the current environment (``--python=same``):
the benchmarks import the installed packages, so an API change that breaks a
suite fails here instead of on the next ``asv continuous``. The benchmark run is
the full stack for one endpoint (with the shipped ML models when installed),
about 10 s. Timing targets are *not* checked here: they live in
``benchmarks/compare.py`` and ``docs/performance.md``.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
ONE = r"^bench_monitor.TickSuite.time_observe_tick\(1\)$"


def _asv() -> list[str]:
    exe = shutil.which("asv", path=str(Path(sys.executable).parent)) or shutil.which("asv")
    if exe is None:
        pytest.skip("asv is not installed (pip install asv)")
    return [exe]


def _run(args: list[str], home: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    # A private HOME: asv keeps its machine description in ~/.asv-machine.json.
    env = dict(os.environ, HOME=str(home))
    return subprocess.run(args, cwd=BENCH, env=env, capture_output=True, text=True, timeout=timeout)


def test_asv_check_and_one_quick_benchmark(tmp_path: Path) -> None:
    asv = _asv()
    if not (ROOT / ".git").exists():
        pytest.skip("asv needs the git checkout (it records the commit)")
    out = _run([*asv, "check", "--python=same"], tmp_path, 60)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "No problems found" in out.stdout + out.stderr

    out = _run([*asv, "machine", "--yes", "--machine", "ci-check"], tmp_path, 30)
    assert out.returncode == 0, out.stdout + out.stderr
    out = _run([*asv, "run", "--python=same", "--quick", "--machine", "ci-check", "--show-stderr",
                "--bench", ONE], tmp_path, 120)
    text = out.stdout + out.stderr
    assert out.returncode == 0, text
    assert "bench_monitor.TickSuite.time_observe_tick" in text and "failed" not in text.lower(), text
