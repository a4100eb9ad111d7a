"""Publishing into the model store is atomic: a failure mid-write leaves no trace."""

from __future__ import annotations

from pathlib import Path

import pytest

import ocad.core.artifacts._artifact as artifact_mod
from ocad.core.artifacts import ModelStore, load_artifact
from ocad.train import publish_artifact

MANIFEST = {"name": "tcn-m", "kind": "forecaster", "format": "onnx", "inputs": {"metrics": ["m"]},
            "calibration": {}, "library_versions": {}}


def _publish(root: Path, payload: bytes = b"model-bytes") -> str:
    return publish_artifact(root, MANIFEST, {"model": ("model.onnx", payload)}).version


def _entries(d: Path) -> list[str]:
    return sorted(p.name for p in d.iterdir())


def test_failure_mid_write_leaves_no_version_and_the_active_pointer(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    assert _publish(tmp_path) == "1.0.0"
    st = ModelStore(tmp_path)
    active_before = (tmp_path / "tcn-m" / "active.json").read_bytes()

    def boom(*a: object, **k: object) -> None:
        raise OSError("disk full")

    # Fail after the model file was written, while the manifest is being written.
    monkeypatch.setattr(artifact_mod.os, "fsync", boom)
    with pytest.raises(OSError, match="disk full"):
        _publish(tmp_path, b"new-model")
    monkeypatch.undo()
    assert st.versions("tcn-m") == ["1.0.0"]
    assert _entries(tmp_path / "tcn-m" / "versions") == ["1.0.0"]  # no half-written or temp directory
    assert (tmp_path / "tcn-m" / "active.json").read_bytes() == active_before
    assert st.active("tcn-m") == "1.0.0"
    load_artifact(st.version_dir("tcn-m", "1.0.0"))

    # A missing source file fails before anything is visible, too.
    with pytest.raises(OSError):
        publish_artifact(tmp_path, MANIFEST, {"model": ("model.onnx", tmp_path / "absent.onnx")})
    assert _entries(tmp_path / "tcn-m" / "versions") == ["1.0.0"] and st.active("tcn-m") == "1.0.0"


def test_versions_are_immutable_and_promotion_follows_a_successful_write(tmp_path: Path) -> None:
    assert [_publish(tmp_path) for _ in range(3)] == ["1.0.0", "1.1.0", "1.2.0"]
    st = ModelStore(tmp_path)
    assert st.active("tcn-m") == "1.2.0"
    with pytest.raises(Exception, match="immutable"):
        publish_artifact(tmp_path, MANIFEST, {"model": ("model.onnx", b"x")}, version="1.1.0")
    assert st.rollback("tcn-m") == "1.1.0" and st.rollback("tcn-m") == "1.0.0"
    st.promote("tcn-m", "1.2.0")
    assert st.active("tcn-m") == "1.2.0"


def test_store_files_are_readable_by_other_users(tmp_path: Path) -> None:
    """A store written by a training job is read by the NOC service, often another user."""
    _publish(tmp_path)
    vdir = tmp_path / "tcn-m" / "versions" / "1.0.0"
    for p in (vdir, vdir / "manifest.json", vdir / "model.onnx", tmp_path / "tcn-m" / "active.json"):
        assert p.stat().st_mode & 0o044 == 0o044, p
