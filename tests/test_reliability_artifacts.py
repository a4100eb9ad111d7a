"""Broken model artifacts in a Monitor: disabled and reported, or refused when strict (docs/reliability.md, G2).

The shipped default artifacts are copied to a temporary directory and one of
them is broken in one way per case. ``Monitor.from_model_dir``

* by default: skips that artifact's detector (a forecaster drops out of the
  residual detector; a broken Isolation Forest removes ``multivariate``),
  reports one message naming the artifact and the problem in
  ``health()["artifact_errors"]`` (and the log), and runs every other detector;
* with ``strict=True``: refuses to start with an ``OcadError`` naming the
  artifact and the problem: ``OcadArtifactError`` when ocad-core's verification
  (manifest, paths, hashes, schema version) fails, ``OcadPluginError`` carrying
  the plugin's ``OcadArtifactError`` message when the ml plugin refuses the
  model (ONNX that onnxruntime cannot load, a graph signature that does not
  match the manifest, a field it does not understand).

``packages/ocad-core/tests/test_artifact_store.py`` checks ``load_artifact``
alone; ``packages/ocad-detectors-ml/tests/test_ml_plugin.py`` two of these
cases on synthetic models. Here every case goes through the Monitor on the
real shipped models.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from ocad.core import Monitor, OcadArtifactError, OcadError, OcadPluginError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

TCN = "tcn-lbm_rtt_ms"
IFOREST = "iforest-multivariate"
GAUGES = ("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms")


def registry() -> PluginRegistry:
    return PluginRegistry(autoload=False, plugins=[ml_plugin])


def _manifest(d: Path) -> dict:
    return json.loads((d / "manifest.json").read_text())


def _write_manifest(d: Path, m: dict) -> None:
    (d / "manifest.json").write_text(json.dumps(m))


def _edit(d: Path, change: Callable[[dict], None]) -> None:
    m = _manifest(d)
    change(m)
    _write_manifest(d, m)


def _rehash(d: Path) -> None:
    """Make the manifest's hash match the (broken) file, so that only the later checks can refuse it."""
    def fix(m: dict) -> None:
        data = (d / "model.onnx").read_bytes()
        m["files"]["model"].update(sha256=hashlib.sha256(data).hexdigest(), bytes=len(data))
    _edit(d, fix)


def tamper(d: Path) -> None:
    data = bytearray((d / "model.onnx").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (d / "model.onnx").write_bytes(bytes(data))


def truncate(d: Path) -> None:
    data = (d / "model.onnx").read_bytes()
    (d / "model.onnx").write_bytes(data[: len(data) // 3])


def truncate_rehashed(d: Path) -> None:
    truncate(d)
    _rehash(d)


def escape_path(d: Path) -> None:
    # A real file with a matching hash, outside the artifact: refused for its path alone.
    outside = d.parent / "tcn-udp_echo_rtt_ms" / "model.onnx"
    _edit(d, lambda m: m["files"]["model"].update(path="../tcn-udp_echo_rtt_ms/model.onnx",
                                                  sha256=hashlib.sha256(outside.read_bytes()).hexdigest()))


def absolute_path(d: Path) -> None:
    _edit(d, lambda m: m["files"]["model"].update(path=str((d / "model.onnx").resolve())))


def symlink_out(d: Path) -> None:
    (d / "model.onnx").unlink()
    os.symlink(d.parent / "tcn-udp_echo_rtt_ms" / "model.onnx", d / "model.onnx")
    _rehash(d)


def drop_last_feature(m: dict) -> None:
    """A manifest that describes one feature less than the graph reads (consistent in itself)."""
    inp = m["inputs"]
    last = inp["features"].pop()
    if isinstance(inp.get("impute"), dict):
        inp["impute"].pop(last, None)
    elif isinstance(inp.get("impute"), list):
        inp["impute"].pop()
    for k in ("center", "scale"):
        m["scaler"][k] = m["scaler"][k][:-1]


CASES: dict[str, tuple[str, Callable[[Path], None], str, type[OcadError]]] = {
    # name: (artifact, break it, problem (regex), strict error)
    "tampered": (TCN, tamper, r"sha256 mismatch.*modified or truncated", OcadArtifactError),
    "truncated": (TCN, truncate, r"sha256 mismatch.*modified or truncated", OcadArtifactError),
    "truncated-rehashed": (TCN, truncate_rehashed, r"(onnxruntime cannot load|refused to load) model\.onnx", OcadPluginError),
    "iforest-tampered": (IFOREST, tamper, r"sha256 mismatch", OcadArtifactError),
    "missing-field": (IFOREST, lambda d: _edit(d, lambda m: m.pop("calibration")),
                      r"missing required field\(s\) \['calibration'\]", OcadArtifactError),
    "missing-files": (TCN, lambda d: _edit(d, lambda m: m.pop("files")), r"missing required field", OcadArtifactError),
    "not-json": (TCN, lambda d: (d / "manifest.json").write_text('{"name": '), r"not valid JSON", OcadArtifactError),
    "path-escape": (TCN, escape_path, r"escapes the artifact directory", OcadArtifactError),
    "absolute-path": (TCN, absolute_path, r"must be a relative path", OcadArtifactError),
    "symlink-escape": (TCN, symlink_out, r"escapes the artifact directory", OcadArtifactError),
    "wrong-window": (TCN, lambda d: _edit(d, lambda m: m["inputs"].update(window=24)),
                     r"graph input 'x' has shape .*expected \(batch, 24\)", OcadPluginError),
    "wrong-input-name": (IFOREST, lambda d: _edit(d, lambda m: m["inputs"].update(input_name="features")),
                         r"the ONNX graph has inputs \['X'\]", OcadPluginError),
    "wrong-feature-count": (IFOREST, lambda d: _edit(d, drop_last_feature), r"expected \(N, \d+\)", OcadPluginError),
    "schema-version": (TCN, lambda d: _edit(d, lambda m: m.update(schema_version=2)),
                       r"schema_version 2 is not supported.*upgrade ocad-core", OcadArtifactError),
    "unknown-fill-policy": (TCN, lambda d: _edit(d, lambda m: m["inputs"].update(fill_policy={"method": "spline"})),
                            r"fill_policy\.method = 'spline' is not understood", OcadPluginError),
    "wrong-kind-fields": (TCN, lambda d: _edit(d, lambda m: m["inputs"].update(metrics=["udp_echo_rtt_ms", "x"])),
                          r"a forecaster has exactly one metric", OcadPluginError),
}


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    return generate_fleet(6, 40 * 5.0, seed=2, faults=False)


def _copy_shipped(dest: Path) -> Path:
    shutil.copytree(ml_plugin.models_dir(), dest)
    return dest


def _run(mon: Monitor, fleet) -> dict:  # type: ignore[no-untyped-def]
    for cols in fleet.iter_ticks():
        mon.observe_columns(*cols)
    return mon.health()["detectors"]


def test_the_intact_shipped_models_build_every_detector(tmp_path, fleet):
    mon = Monitor.from_model_dir(_copy_shipped(tmp_path / "models"), registry=registry(), strict=True)
    dets = {d.name: d for d in mon.detectors}
    assert dets["residual"].metrics == GAUGES and "multivariate" in dets
    assert mon.health()["artifact_errors"] == []


@pytest.mark.parametrize("case", list(CASES))
def test_a_broken_artifact_is_disabled_reported_and_the_rest_runs(tmp_path, fleet, case, caplog):
    artifact, breaker, problem, strict_error = CASES[case]
    d = _copy_shipped(tmp_path / "models")
    breaker(d / artifact)

    with caplog.at_level(logging.ERROR):
        mon = Monitor.from_model_dir(d, registry=registry())
    (err,) = mon.health()["artifact_errors"]  # exactly one problem, the planted one
    assert artifact in err
    assert re.search(problem, err), err
    assert any(artifact in r.getMessage() for r in caplog.records)  # and it is logged

    dets = {x.name: x for x in mon.detectors}
    if artifact == IFOREST:
        assert "multivariate" not in dets and dets["residual"].metrics == GAUGES
    else:
        assert dets["residual"].metrics == ("udp_echo_rtt_ms", "ecpri_delay_us")
        assert "multivariate" in dets
    # Everything that was built runs: scored every tick, no failure.
    health = _run(mon, fleet)
    assert {n for n, h in health.items() if h["calls"] == 40 and h["failures"] == 0} == set(dets)

    with pytest.raises(strict_error) as ei:
        Monitor.from_model_dir(d, registry=registry(), strict=True)
    msg = str(ei.value)
    assert artifact in msg and re.search(problem, msg), msg


def test_artifact_errors_survive_in_health_as_json(tmp_path):
    d = _copy_shipped(tmp_path / "models")
    tamper(d / TCN)
    mon = Monitor.from_model_dir(d, registry=registry())
    doc = json.loads(json.dumps(mon.health()))
    assert len(doc["artifact_errors"]) == 1 and TCN in doc["artifact_errors"][0]


def test_a_model_file_swapped_after_verification_is_refused(tmp_path, monkeypatch):
    """Time of check vs time of use: the bytes onnxruntime runs are hashed again."""
    from ocad.detectors_ml import _session

    d = _copy_shipped(tmp_path / "models")
    real = _session.load_session

    def swap_then_load(artifact, config, role="model"):  # type: ignore[no-untyped-def]
        if artifact.name == TCN:
            tamper(artifact.path)
        return real(artifact, config, role)

    monkeypatch.setattr(_session, "load_session", swap_then_load)
    for mod in ("_residual", "_multivariate"):
        m = __import__(f"ocad.detectors_ml.{mod}", fromlist=["load_session"])
        if hasattr(m, "load_session"):
            monkeypatch.setattr(m, "load_session", swap_then_load)
    mon = Monitor.from_model_dir(d, registry=registry())
    (err,) = mon.health()["artifact_errors"]
    assert TCN in err and "changed after it was verified" in err
    assert {x.name: x for x in mon.detectors}["residual"].metrics == ("udp_echo_rtt_ms", "ecpri_delay_us")


def test_nothing_usable_at_all_is_an_error_even_when_lenient(tmp_path):
    d = tmp_path / "empty"
    d.mkdir()
    with pytest.raises(OcadArtifactError, match="no artifacts found"):
        Monitor.from_model_dir(d, registry=registry())


def test_all_artifacts_broken_leaves_the_core_detectors_running(tmp_path, fleet):
    d = _copy_shipped(tmp_path / "models")
    for a in sorted(p for p in d.iterdir() if p.is_dir()):
        tamper(a)
    mon = Monitor.from_model_dir(d, registry=registry())
    assert len(mon.health()["artifact_errors"]) == 4
    names = {x.name for x in mon.detectors}
    assert not names & {"residual", "multivariate"} and {"rule", "spike", "continuity"} <= names
    health = _run(mon, fleet)
    assert all(h["calls"] == 40 and h["failures"] == 0 for h in health.values())
    assert np.isfinite(mon.store.count).all()
