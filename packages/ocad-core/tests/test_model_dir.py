"""Monitor.from_model_dir: the core-calibration artifact, no silent loss of artifacts whose
detector package is missing, and the labelled-file format's normal labels and duplicates."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError, OcadDependencyError
from ocad.core.artifacts import ModelStore, write_artifact
from ocad.core.artifacts._artifact import CORE_CALIBRATION_KIND
from ocad.core.tooling import load_labelled_file


SPEC = {"unit": "ms", "higher_is_worse": False}


def _series(n: int = 400, seed: int = 0) -> list[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    return [{"endpoint_id": "s", "ts": 60.0 * i, "my_kpi": float(5.0 + rng.standard_normal())} for i in range(n)]


def _calibration_artifact(root: Path) -> dict[str, Any]:
    mon = Monitor({"monitor": {"use_shipped_models": False}, "metrics": {"my_kpi": SPEC}})
    doc = mon.calibrate(_series(), every=1)
    st = ModelStore(root).init()
    write_artifact(st.version_dir(CORE_CALIBRATION_KIND, "1.0.0"), {
        "name": CORE_CALIBRATION_KIND, "kind": CORE_CALIBRATION_KIND, "version": "1.0.0", "format": "json",
        "inputs": {"metrics": ["my_kpi"], "metric_specs": {"my_kpi": SPEC}},
        "calibration": {"file": "calibration"}, "library_versions": {},
    }, {"calibration": ("calibration.json", json.dumps(doc).encode())})
    st.promote(CORE_CALIBRATION_KIND, "1.0.0")
    return doc


def test_core_calibration_artifact_is_applied_to_the_core_detectors(tmp_path: Path) -> None:
    doc = _calibration_artifact(tmp_path)
    mon = Monitor.from_model_dir(tmp_path, strict=True)
    spec = mon.metrics.get("my_kpi")  # the artifact's metric spec, not a default gauge
    assert spec.unit == "ms" and spec.higher_is_worse is False
    spike = {d.name: d for d in mon.detectors}["spike"]
    assert spike.calibrations_["my_kpi"].to_dict() == doc["detectors"]["spike"]["calibration"]["metrics"]["my_kpi"]
    assert mon.health()["artifact_errors"] == []

    # The same document applied by hand; a table that does not fit its detector names it.
    other = Monitor({"monitor": {"use_shipped_models": False}, "metrics": {"my_kpi": SPEC}})
    assert "spike" in other.load_calibration(doc)
    bad = {"detectors": {"changepoint": {"format": "nope"}}}
    with pytest.raises(OcadConfigError, match="changepoint"):
        other.load_calibration(bad)


def test_a_corrupt_core_calibration_is_an_artifact_error_unless_strict(tmp_path: Path) -> None:
    _calibration_artifact(tmp_path)
    f = tmp_path / CORE_CALIBRATION_KIND / "versions" / "1.0.0" / "calibration.json"
    f.chmod(0o644)
    f.write_text("{}")  # the hash check catches it before the content is read
    mon = Monitor.from_model_dir(tmp_path)
    assert any("sha256 mismatch" in e for e in mon.health()["artifact_errors"])


def test_artifacts_whose_detector_package_is_missing_are_never_silently_dropped(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    _calibration_artifact(tmp_path)
    st = ModelStore(tmp_path)
    write_artifact(st.version_dir("tcn-my_kpi", "1.0.0"), {
        "name": "tcn-my_kpi", "kind": "forecaster", "version": "1.0.0", "format": "onnx",
        "inputs": {"metrics": ["my_kpi"]}, "calibration": {}, "library_versions": {}},
        {"model": ("model.onnx", b"not used")})
    st.promote("tcn-my_kpi", "1.0.0")
    real = importlib.util.find_spec

    def find_spec(name: str, *a: Any) -> Any:
        return None if name.startswith("ocad.detectors_ml") else real(name, *a)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(OcadDependencyError, match=r'ocad-core\[ml\]') as ei:
        Monitor.from_model_dir(tmp_path, strict=True)
    assert "tcn-my_kpi@1.0.0" in str(ei.value) and ei.value.extra == "ml"
    with caplog.at_level(logging.WARNING, logger="ocad.monitor"):
        mon = Monitor.from_model_dir(tmp_path)
    errors = mon.health()["artifact_errors"]
    assert any("tcn-my_kpi@1.0.0" in e and "ocad-core[ml]" in e for e in errors)
    assert any("ocad-core[ml]" in r.getMessage() for r in caplog.records)
    assert "spike" in {d.name for d in mon.detectors}  # the core detectors (calibrated) still run


def test_labelled_file_normal_labels_and_duplicates(tmp_path: Path) -> None:
    p = tmp_path / "l.csv"
    p.write_text("endpoint_id,ts,m,fault_type\n"
                 "a,0,1.0,\n"
                 "a,5,2.0,none\n"
                 "a,5,9.0,spike\n"      # duplicate (a, 5): the first row is kept, as the Monitor does
                 "a,10,3.0,spike\n"
                 "a,15,4.0,Normal\n")
    run = load_labelled_file(p)
    assert run.meta["dropped_duplicates"] == 1
    ts, codes = run.labels.per_endpoint["a"]
    np.testing.assert_array_equal(ts, [0.0, 5.0, 10.0, 15.0])
    np.testing.assert_array_equal(codes == 0, [True, True, False, True])
    assert [e.fault_type for e in run.events] == ["spike"]
    _, series = run.series("a")
    np.testing.assert_array_equal(series["m"], [1.0, 2.0, 3.0, 4.0])
