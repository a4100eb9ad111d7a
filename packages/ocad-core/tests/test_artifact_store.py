"""Model artifacts (``ocad.core.artifacts._artifact``) and the versioned model store (``ocad.core.artifacts._store``)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from ocad.core import OcadArtifactError
from ocad.core.artifacts import LoadedArtifact, ModelStore, find_artifacts, load_artifact, write_artifact
from ocad.core.plugins import ModelArtifact
from ocad.core.artifacts import _artifact, _store

MODEL = b"\x08\x07fake-onnx-bytes" * 50


def manifest(**over) -> dict:
    m = {
        "name": "residual-udp", "kind": "forecaster", "version": "1.0.0", "format": "onnx",
        "inputs": {"metrics": ["udp_echo_rtt_ms"], "units": {"udp_echo_rtt_ms": "ms"}, "window": 32,
                   "dtype": "float32"},
        "calibration": {"probs": [0.0, 1.0], "quantiles": np.array([0.0, 3.5])},
        "library_versions": {"ocad-core": "0.1.0", "numpy": np.__version__},
        "training": {"mae": np.float32(0.25), "n": np.int64(1000)},
    }
    m.update(over)
    return m


@pytest.fixture
def art(tmp_path) -> LoadedArtifact:
    src = tmp_path / "scaler_src.json"
    src.write_text('{"type": "standard", "mean": [1.0], "scale": [2.0]}', encoding="utf-8")
    return write_artifact(tmp_path / "a", manifest(), {"model": ("model.onnx", MODEL),
                                                       "scaler": ("params/scaler.json", src)})


def rewrite_manifest(path: Path, **changes) -> None:
    m = json.loads((path / "manifest.json").read_text())
    for k, v in changes.items():
        if v is _DELETE:
            del m[k]
        else:
            m[k] = v
    (path / "manifest.json").write_text(json.dumps(m))


_DELETE = object()


def test_round_trip(art, tmp_path):
    assert isinstance(art, ModelArtifact)
    loaded = load_artifact(tmp_path / "a", expected_kind="forecaster")
    assert loaded == art
    m = loaded.manifest
    assert (loaded.name, loaded.kind, loaded.version) == ("residual-udp", "forecaster", "1.0.0")
    assert m["schema_version"] == 1 and m["created"].endswith("+00:00")
    assert m["files"]["model"] == {"path": "model.onnx", "sha256": hashlib.sha256(MODEL).hexdigest(),
                                   "bytes": len(MODEL)}
    assert loaded.file("model").read_bytes() == MODEL
    assert json.loads(loaded.file("scaler").read_text())["scale"] == [2.0]
    assert m["calibration"]["quantiles"] == [0.0, 3.5]  # numpy values became JSON numbers
    assert m["training"] == {"mae": 0.25, "n": 1000}
    with pytest.raises(OcadArtifactError, match="no file with role 'onnx'"):
        loaded.file("onnx")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp dir left


def test_existing_destination_is_immutable(art, tmp_path):
    with pytest.raises(OcadArtifactError, match="immutable"):
        write_artifact(tmp_path / "a", manifest(), {"model": ("model.onnx", b"other")})
    assert load_artifact(tmp_path / "a").file("model").read_bytes() == MODEL


def test_expected_kind(art, tmp_path):
    with pytest.raises(OcadArtifactError, match="kind is 'forecaster', expected 'multivariate'"):
        load_artifact(tmp_path / "a", expected_kind="multivariate")


def test_tampered_file_mentions_sha256(art, tmp_path):
    f = tmp_path / "a" / "model.onnx"
    data = bytearray(f.read_bytes())
    data[10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(OcadArtifactError) as ei:
        load_artifact(tmp_path / "a")
    msg = str(ei.value)
    assert "sha256" in msg and "model.onnx" in msg and "residual-udp@1.0.0" in msg


def test_truncated_file(art, tmp_path):
    f = tmp_path / "a" / "params" / "scaler.json"
    f.write_bytes(f.read_bytes()[:10])
    with pytest.raises(OcadArtifactError, match=r"sha256 mismatch .*truncated"):
        load_artifact(tmp_path / "a")


def test_truncated_manifest(art, tmp_path):
    mf = tmp_path / "a" / "manifest.json"
    mf.write_bytes(mf.read_bytes()[:-20])
    with pytest.raises(OcadArtifactError, match="not valid JSON"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize("field", _artifact.REQUIRED_FIELDS)
def test_manifest_missing_a_field(art, tmp_path, field):
    rewrite_manifest(tmp_path / "a", **{field: _DELETE})
    with pytest.raises(OcadArtifactError, match=f"missing required field.*'{field}'"):
        load_artifact(tmp_path / "a")


@pytest.mark.parametrize("changes, match", [
    ({"files": {}}, "non-empty object"),
    ({"files": {"model": {"path": "model.onnx"}}}, "needs 'path' and 'sha256'"),
    ({"files": {"model": {"path": "gone.onnx", "sha256": "0" * 64}}}, "gone.onnx does not exist"),
    ({"inputs": {"window": 3}}, "'metrics' list"),
    ({"schema_version": 2}, "schema_version 2 is not supported"),
    ({"schema_version": "1"}, "schema_version '1' is not supported"),
    ({"schema_version": 0}, "schema_version 0 is not supported"),
])
def test_malformed_manifests(art, tmp_path, changes, match):
    rewrite_manifest(tmp_path / "a", **changes)
    with pytest.raises(OcadArtifactError, match=match):
        load_artifact(tmp_path / "a")


def test_manifest_must_be_an_object_and_exist(tmp_path, art):
    (tmp_path / "a" / "manifest.json").write_text("[1, 2]")
    with pytest.raises(OcadArtifactError, match="JSON object"):
        load_artifact(tmp_path / "a")
    with pytest.raises(OcadArtifactError, match="no manifest.json"):
        load_artifact(tmp_path / "nowhere")


@pytest.mark.parametrize("path, match", [("../x", "escapes"), ("params/../../x", "escapes"),
                                         ("/etc/passwd", "relative path"), ("", "relative path")])
def test_paths_escaping_the_artifact_are_refused(art, tmp_path, path, match):
    (tmp_path / "x").write_bytes(MODEL)  # a file outside, with the right hash
    rewrite_manifest(tmp_path / "a", files={"model": {"path": path, "sha256": hashlib.sha256(MODEL).hexdigest()}})
    with pytest.raises(OcadArtifactError, match=match):
        load_artifact(tmp_path / "a")


def test_symlink_out_of_the_artifact_is_refused(art, tmp_path):
    outside = tmp_path / "outside.onnx"
    outside.write_bytes(MODEL)
    (tmp_path / "a" / "model.onnx").unlink()
    os.symlink(outside, tmp_path / "a" / "model.onnx")
    with pytest.raises(OcadArtifactError, match="escapes"):
        load_artifact(tmp_path / "a")


def test_write_refuses_escaping_paths_and_leaves_nothing(tmp_path):
    with pytest.raises((ValueError, OcadArtifactError), match="escapes"):
        write_artifact(tmp_path / "d" / "a", manifest(), {"model": ("../evil.onnx", MODEL)})
    assert not (tmp_path / "d" / "a").exists() and not (tmp_path / "d" / "evil.onnx").exists()
    assert list((tmp_path / "d").iterdir()) == []


# -- model store ------------------------------------------------------------------------------------

def put(store: ModelStore, version: str, payload: bytes = MODEL, name: str = "residual-udp") -> LoadedArtifact:
    return write_artifact(store.version_dir(name, version), manifest(name=name, version=version),
                          {"model": ("model.onnx", payload + version.encode())})


@pytest.fixture
def store(tmp_path) -> ModelStore:
    return ModelStore(tmp_path / "store").init()


def test_versions_next_version_promote_rollback(store):
    assert ModelStore.is_store(store.root) and store.names() == []
    assert store.next_version("residual-udp") == "1.0.0"
    for v in ("1.0.0", "1.2.0", "1.10.0"):
        put(store, v)
    assert store.versions("residual-udp") == ["1.0.0", "1.2.0", "1.10.0"]  # semantic, not string order
    assert store.next_version("residual-udp") == "1.11.0"
    assert store.names() == ["residual-udp"] and store.active("residual-udp") is None
    with pytest.raises(OcadArtifactError, match="no active version"):
        store.load("residual-udp")

    store.promote("residual-udp", "1.0.0")
    store.promote("residual-udp", "1.0.0")  # idempotent: no history entry
    store.promote("residual-udp", "1.10.0")
    assert store.active("residual-udp") == "1.10.0"
    assert store.load("residual-udp").version == "1.10.0"
    assert store.load("residual-udp", "1.2.0").version == "1.2.0"
    assert store.active_paths() == [store.version_dir("residual-udp", "1.10.0")]
    assert find_artifacts(store.root) == store.active_paths()

    assert store.rollback("residual-udp") == "1.0.0"
    assert store.active("residual-udp") == "1.0.0"
    with pytest.raises(OcadArtifactError, match="nothing to roll back"):
        store.rollback("residual-udp")
    assert store.active("residual-udp") == "1.0.0"


def test_promote_verifies_and_leaves_the_pointer_alone_on_failure(store):
    put(store, "1.0.0")
    put(store, "1.1.0")
    store.promote("residual-udp", "1.0.0")
    (store.version_dir("residual-udp", "1.1.0") / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(OcadArtifactError, match="sha256"):
        store.promote("residual-udp", "1.1.0")
    assert store.active("residual-udp") == "1.0.0"
    with pytest.raises(OcadArtifactError):
        store.promote("residual-udp", "9.9.9")
    assert store.active("residual-udp") == "1.0.0"


def test_rollback_to_a_broken_version_keeps_the_current_one(store):
    put(store, "1.0.0")
    put(store, "1.1.0")
    store.promote("residual-udp", "1.0.0")
    store.promote("residual-udp", "1.1.0")
    (store.version_dir("residual-udp", "1.0.0") / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(OcadArtifactError):
        store.rollback("residual-udp")
    assert store.active("residual-udp") == "1.1.0"
    assert json.loads((store.root / "residual-udp" / "active.json").read_text())["history"] == ["1.0.0"]


@pytest.mark.parametrize("where", ["copyfile", "json.dumps", "fsync", "replace"])
def test_crash_during_write_leaves_no_version_and_the_pointer_unchanged(store, tmp_path, monkeypatch, where):
    put(store, "1.0.0")
    store.promote("residual-udp", "1.0.0")
    before = sorted(p.name for p in (store.root / "residual-udp" / "versions").iterdir())
    src = tmp_path / "big.bin"
    src.write_bytes(MODEL)

    def boom(*a, **k):
        raise OSError(f"simulated crash in {where}")

    target = {"copyfile": (shutil, "copyfile"), "json.dumps": (_artifact.json, "dumps"),
              "fsync": (_artifact.os, "fsync"), "replace": (_artifact.os, "replace")}[where]
    monkeypatch.setattr(*target, boom)
    v = store.next_version("residual-udp")
    with pytest.raises(OSError, match="simulated crash"):
        write_artifact(store.version_dir("residual-udp", v), manifest(version=v),
                       {"model": ("model.onnx", b"new"), "extra": ("extra.bin", src)})
    monkeypatch.undo()
    after = sorted(p.name for p in (store.root / "residual-udp" / "versions").iterdir())
    assert after == before == ["1.0.0"]  # no version dir, no temp dir left behind
    assert store.versions("residual-udp") == ["1.0.0"] and store.next_version("residual-udp") == v
    assert store.active("residual-udp") == "1.0.0"
    assert store.load("residual-udp").version == "1.0.0"


def test_crash_while_promoting_keeps_the_old_pointer(store, monkeypatch):
    put(store, "1.0.0")
    put(store, "1.1.0")
    store.promote("residual-udp", "1.0.0")
    pointer = store.root / "residual-udp" / "active.json"
    before = pointer.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(_store.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        store.promote("residual-udp", "1.1.0")
    monkeypatch.undo()
    assert pointer.read_bytes() == before
    assert [p.name for p in pointer.parent.iterdir() if p.name.startswith(".")] == []


def test_find_artifacts_layouts(tmp_path, art):
    assert find_artifacts(tmp_path / "a") == [tmp_path / "a"]
    write_artifact(tmp_path / "b", manifest(name="other"), {"model": ("m.onnx", b"x")})
    (tmp_path / "not-an-artifact").mkdir()
    assert find_artifacts(tmp_path) == [tmp_path / "a", tmp_path / "b"]
    assert find_artifacts(tmp_path / "missing") == []
