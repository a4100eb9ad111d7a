"""Model store lifecycle: candidates, the change log, forced promotions, duplicates, reports (issue #15)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocad.core import OcadArtifactError
from ocad.core.artifacts import ModelStore, write_artifact


def _version(st: ModelStore, version: str, fingerprint: str = "fp-1", mae: float = 1.0) -> None:
    manifest = {"name": "m", "kind": "forecaster", "format": "onnx", "version": version, "inputs": {"metrics": ["x"]},
                "calibration": {}, "library_versions": {}, "training_data": {"fingerprint": fingerprint},
                "metrics": {"test": {"mae": mae}}}
    write_artifact(st.version_dir("m", version), manifest, {"model": ("model.onnx", b"x")})


def test_candidates_log_and_forced_promotion(tmp_path: Path) -> None:
    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0")
    _version(st, "1.1.0", mae=0.9)
    assert st.active("m") is None and st.candidates("m") == ["1.0.0", "1.1.0"]
    st.promote("m", "1.0.0", gate={"passed": True})
    assert st.candidates("m") == ["1.1.0"]
    with pytest.raises(OcadArtifactError, match="reason"):
        st.promote("m", "1.1.0", forced=True)
    with pytest.raises(OcadArtifactError, match="reason"):
        st.promote("m", "1.1.0", forced=True, reason="  ")
    assert st.active("m") == "1.0.0"
    st.promote("m", "1.1.0", forced=True, reason="vendor says so", gate={"passed": False})
    assert st.active("m") == "1.1.0" and st.candidates("m") == []
    assert st.rollback("m") == "1.0.0"
    log = st.log("m")
    assert [(e["action"], e["version"]) for e in log] == [("promote", "1.0.0"), ("promote", "1.1.0"),
                                                          ("rollback", "1.0.0")]
    assert log[1]["forced"] is True and log[1]["reason"] == "vendor says so" and log[1]["previous"] == "1.0.0"
    assert log[0]["forced"] is False and "reason" not in log[0]
    # pointer, history and log live in one file written atomically; old readers still find "version"
    state = json.loads((tmp_path / "m" / "active.json").read_text())
    assert state["version"] == "1.0.0" and state["history"] == [] and len(state["log"]) == 3


def test_same_data_and_metrics_is_found_and_a_duplicate_discarded(tmp_path: Path) -> None:
    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0")
    same = {"training_data": {"fingerprint": "fp-1"}, "metrics": {"test": {"mae": 1.0}}}
    assert st.same_as("m", same) == "1.0.0"
    assert st.same_as("m", {**same, "metrics": {"test": {"mae": 1.1}}}) is None
    assert st.same_as("m", {"training_data": {"fingerprint": "fp-2"}, "metrics": same["metrics"]}) is None
    assert st.same_as("m", {"metrics": same["metrics"]}) is None  # no fingerprint: never a duplicate
    _version(st, "1.1.0")
    assert st.same_as("m", same, exclude="1.1.0") == "1.0.0"
    st.discard("m", "1.1.0")
    assert st.versions("m") == ["1.0.0"] and not any(p.name.startswith(".") for p in (tmp_path / "m" / "versions").iterdir())
    st.promote("m", "1.0.0")
    with pytest.raises(OcadArtifactError, match="active once"):
        st.discard("m", "1.0.0")


def test_reports_sit_beside_the_manifest_and_do_not_touch_the_artifact(tmp_path: Path) -> None:
    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0")
    assert st.report("m", "1.0.0") is None and st.report("m") is None  # nothing active
    p = st.write_report("m", "1.0.0", {"prediction": {"mae": 1.0}})
    assert p == st.version_dir("m", "1.0.0") / "performance_report.json"
    st.promote("m", "1.0.0")  # the artifact still verifies: the report is not one of its files
    assert st.report("m") == {"prediction": {"mae": 1.0}}
    with pytest.raises(OcadArtifactError, match="no version"):
        st.write_report("m", "9.9.9", {})


def test_a_monitor_on_a_store_with_only_candidates_says_what_to_do(tmp_path: Path) -> None:
    from ocad.core import Monitor

    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0")
    with pytest.raises(OcadArtifactError, match=r"no active version \(candidates: \{'m': \['1.0.0'\]\}\).*promote"):
        Monitor.from_model_dir(tmp_path)
