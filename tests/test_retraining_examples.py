"""The scheduled-retraining examples: the wrapper maps ``ocad retrain``'s exit codes; the YAML parses."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "retraining"


@pytest.mark.parametrize(("rc", "reloaded", "exit_code"), [(0, True, 0), (3, False, 0), (4, False, 0),
                                                           (2, False, 2), (1, False, 1)])
def test_wrapper_acts_on_the_exit_code(tmp_path: Path, rc: int, reloaded: bool, exit_code: int) -> None:
    stub = tmp_path / "ocad"
    stub.write_text(f'#!/usr/bin/env bash\necho "$@" > "{tmp_path}/argv"\nexit {rc}\n')
    stub.chmod(0o755)
    env = {**os.environ, "OCAD_BIN": str(stub), "OCAD_DATA": str(tmp_path / "exports"),
           "OCAD_STORE": str(tmp_path), "OCAD_LABELLED": str(tmp_path / "labelled.csv"),
           "OCAD_RELOAD": f"touch {tmp_path}/reloaded"}
    proc = subprocess.run(["bash", str(EXAMPLES / "ocad-retrain.sh")], env=env, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == exit_code, proc.stderr
    assert (tmp_path / "reloaded").exists() is reloaded
    argv = (tmp_path / "argv").read_text().split()
    assert argv[:5] == ["retrain", "--data", str(tmp_path / "exports"), "--store", str(tmp_path)]
    assert "--init-from" in argv and "--labelled" in argv and "--json" in argv


def test_ci_workflow_runs_retrain_and_branches_on_its_exit_code() -> None:
    yaml = pytest.importorskip("yaml")
    wf = yaml.safe_load((EXAMPLES / "github-workflow.yml").read_text())
    steps = wf["jobs"]["retrain"]["steps"]
    run = next(s["run"] for s in steps if s.get("id") == "retrain")
    assert "ocad retrain --data exports/ --store store/" in run
    assert all(f"{c})" in run for c in (0, 3, 4))
    assert any(s.get("if") == "steps.retrain.outputs.rc == '0'" for s in steps)
