"""Atomic model store: a training process killed with SIGKILL while it writes a new version.

Guarantee (docs/reliability.md, G8): whatever instant the publishing process
dies at, the active version still loads (hashes verified, and a Monitor builds
its detector from the store), no partial version is visible to
``ModelStore.versions()``, and the next publish succeeds.

The child process runs the real write path (``ocad.train.publish_artifact`` →
``ocad.core.artifacts.write_artifact`` → ``ModelStore.promote``); one function of it is
wrapped to stop the process *inside* the write, at a known point, and to tell
the parent so. The parent then kills it with SIGKILL (no cleanup handler runs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ocad.core import Monitor
from ocad.core.artifacts import ModelStore, load_artifact
from ocad.core.plugins import PluginRegistry

pytest.importorskip("ocad.train")
ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

from ocad.train import publish_artifact  # noqa: E402

NAME = "tcn-udp_echo_rtt_ms"

CHILD = r"""
import os, shutil, sys, time
from pathlib import Path

where, manifest_path, model_path, store_root, flag = sys.argv[1:6]

def stop_here():
    Path(flag).write_text(str(os.getpid()))
    time.sleep(120)          # the parent kills us during this sleep
    os._exit(3)              # never reached when the test works

if where == "copy":          # half of the model file is in the temporary directory
    def slow_copy(src, dst, *a, **k):
        data = Path(src).read_bytes()
        with open(dst, "wb") as f:
            f.write(data[: len(data) // 2])
            f.flush()
            stop_here()
    shutil.copyfile = slow_copy
else:                        # right after the fsync of the manifest (before the rename) or of active.json
    target = {"before_rename": "manifest.json", "promote": ".active.json."}[where]
    real_fsync = os.fsync
    def fsync(fd):
        real_fsync(fd)
        try:
            name = os.path.basename(os.readlink(f"/proc/self/fd/{fd}"))
        except OSError:
            return
        if name.startswith(target) if target.startswith(".") else name == target:
            stop_here()
    os.fsync = fsync

import json
from ocad.train import publish_artifact
manifest = json.loads(Path(manifest_path).read_text())
# dedupe=False: the same manifest again must still be written (this tests the write path)
publish_artifact(store_root, manifest, {"model": ("model.onnx", Path(model_path))}, dedupe=False)
os._exit(4)                  # the write finished: the kill came too late
"""


@pytest.fixture()
def store(tmp_path: Path) -> tuple[ModelStore, Path, Path]:
    """A store whose active ``NAME`` is 1.0.0 (the shipped forecaster), and that artifact's inputs."""
    src = ml_plugin.models_dir() / NAME
    manifest = json.loads((src / "manifest.json").read_text())
    for k in ("files", "schema_version"):
        manifest.pop(k)
    mpath = tmp_path / "manifest.json"
    mpath.write_text(json.dumps(manifest))
    model = tmp_path / "model.onnx"
    shutil.copyfile(src / "model.onnx", model)
    st = ModelStore(tmp_path / "store")
    publish_artifact(st, manifest, {"model": ("model.onnx", model)})
    assert (st.versions(NAME), st.active(NAME)) == (["1.0.0"], "1.0.0")
    return st, mpath, model


def _kill_mid_write(where: str, st: ModelStore, mpath: Path, model: Path, tmp: Path) -> None:
    flag = tmp / f"flag-{where}"
    env = {**os.environ, "OCAD_PLUGINS_AUTOLOAD": "0"}
    proc = subprocess.Popen([sys.executable, "-c", CHILD, where, str(mpath), str(model), str(st.root), str(flag)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while not flag.exists():
            if proc.poll() is not None:
                out = proc.stdout.read().decode() if proc.stdout else ""
                pytest.fail(f"child exited with {proc.returncode} before the kill point:\n{out}")
            if time.monotonic() > deadline:
                pytest.fail("child never reached the kill point")
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout:
            proc.stdout.close()


@pytest.mark.parametrize("where", ["copy", "before_rename", "promote"])
def test_sigkill_during_publish_keeps_the_active_version(store, tmp_path, where):
    st, mpath, model = store
    _kill_mid_write(where, st, mpath, model, tmp_path)

    vdir = st.root / NAME / "versions"
    leftovers = [p.name for p in vdir.iterdir() if p.name.startswith(".")]
    if where == "promote":
        # The new version was complete (renamed into place) before the pointer write died:
        # visible, verified, but not active.
        assert st.versions(NAME) == ["1.0.0", "1.1.0"]
        load_artifact(st.version_dir(NAME, "1.1.0"))
        assert leftovers == []
        # The interrupted pointer write left at most its hidden temp file; active.json is whole.
        assert [p.name for p in (st.root / NAME).iterdir() if p.name.startswith(".active.json.")]
    else:
        # Killed inside the temporary directory: a hidden leftover, never a version.
        assert st.versions(NAME) == ["1.0.0"]
        assert len(leftovers) == 1 and leftovers[0].startswith(".1.1.0.tmp-")
    assert st.active(NAME) == "1.0.0"
    assert json.loads((st.root / NAME / "active.json").read_text())["version"] == "1.0.0"
    art = st.load(NAME)  # hashes verified
    assert art.version == "1.0.0"

    # A Monitor still builds the detector from the store's active version.
    mon = Monitor.from_model_dir(st.root, {"monitor": {"metrics": ["udp_echo_rtt_ms"]}},
                                 registry=PluginRegistry(autoload=False, plugins=[ml_plugin]), strict=True)
    assert "residual" in [d.name for d in mon.detectors]
    assert mon.health()["artifact_errors"] == []

    # The next publish is not blocked by what the killed process left behind.
    manifest = json.loads(mpath.read_text())
    nxt = publish_artifact(st, manifest, {"model": ("model.onnx", model)}, dedupe=False)
    expected = "1.2.0" if where == "promote" else "1.1.0"
    assert nxt.version == expected and st.active(NAME) == expected
