"""End to end: forecaster artifacts in a model store, manifest contents, accuracy, reproducibility."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ocad.core.artifacts import ModelStore, load_artifact
from ocad.core.plugins import Calibration
from ocad.train import (
    check_parity,
    from_fleet,
    onnx_initializer_digest,
    ort_session,
    read_sequence_dataset,
    residual_raw_scores,
    train_forecasters,
)

MANIFEST_FIELDS = ("name", "kind", "version", "created", "format", "files", "inputs", "scaler", "calibration",
                   "parity", "metrics", "training_data", "hyperparameters", "library_versions", "seed",
                   "residual_score")


def test_manifest_has_every_field(trained: Any) -> None:
    m = trained.manifest
    assert not [f for f in MANIFEST_FIELDS if f not in m]
    assert (m["name"], m["kind"], m["format"], m["version"]) == ("tcn-udp_echo_rtt_ms", "forecaster", "onnx",
                                                                 "1.0.0")
    assert m["files"]["model"]["path"] == "model.onnx"
    inp = m["inputs"]
    assert inp["metrics"] == ["udp_echo_rtt_ms"] and inp["units"] == {"udp_echo_rtt_ms": "ms"}
    assert (inp["window"], inp["dtype"], inp["input_name"], inp["output_name"]) == (16, "float32", "x", "y")
    assert inp["fill_policy"]["method"] == "ffill" and inp["fill_policy"]["remaining_nan"] == "skip"
    assert inp["higher_is_worse"] is True
    sc = m["scaler"]
    assert sc["type"] == "residual" and sc["one_sided"] == "upper" and sc["relative_rms"] > 0 and sc["level_floor"] > 0
    Calibration.from_dict(m["calibration"])
    assert m["parity"]["n"] >= 10_000 and m["parity"]["max_abs_diff"] <= 1e-4
    for part in ("test", "validation"):
        assert set(m["metrics"][part]) >= {"mse", "mae", "rmse", "r2", "naive_mse", "naive_mae", "naive_rmse",
                                           "naive_r2"}
    td = m["training_data"]
    assert td["fingerprint"].startswith("sha256:") and td["n_endpoints"] > 0 and td["n_samples"] > 0
    assert td["source"].startswith("fleet:")
    assert set(m["library_versions"]) >= {"ocad_core", "ocad_train", "torch", "onnx", "onnxruntime", "numpy"}
    assert m["seed"] == 3 and m["hyperparameters"]["window"] == 16
    assert "relative_rms" in m["residual_score"] and "higher_is_worse" in m["residual_score"]
    assert load_artifact(trained.path).manifest == m  # hashes verify
    assert (trained.path / "manifest.json").stat().st_size + trained.file("model").stat().st_size < 300_000


def test_forecaster_beats_naive_on_generated_data(trained: Any) -> None:
    t = trained.manifest["metrics"]["test"]
    assert t["mae"] < t["naive_mae"] and t["mse"] < t["naive_mse"] and t["r2"] > t["naive_r2"]
    assert trained.manifest["metrics"]["beats_naive"] is True


def test_residual_calibration_matches_the_documented_formula(trained: Any) -> None:
    """Recompute the raw scores from the manifest alone, as the runtime does, on saved validation windows."""
    m = trained.manifest
    val = read_sequence_dataset(trained.path.parents[2] / ".work" / "tcn-udp_echo_rtt_ms" / "validation.parquet")
    yhat = ort_session(trained.file("model")).run(["y"], {"x": val.x})[0][:, 0]
    level = np.abs(val.x.astype(np.float64).mean(axis=1))
    rel = (val.y - yhat) / np.maximum(level, m["scaler"]["level_floor"])
    assert np.sqrt(np.mean(rel ** 2)) == pytest.approx(m["scaler"]["relative_rms"], rel=1e-5)
    raw = np.maximum(0, val.y - yhat) / (m["scaler"]["relative_rms"] * np.maximum(level, m["scaler"]["level_floor"]))
    np.testing.assert_allclose(raw, residual_raw_scores(val.x, val.y, yhat, m["scaler"]), rtol=1e-6)
    cal = Calibration.from_dict(m["calibration"])
    assert cal.n == len(val)
    assert float(np.mean(cal.transform(raw) > 0.99)) < 0.02  # calibrated on these normal windows
    # a spike of a few relative errors above the forecast is an outlier, a dip is not (one-sided)
    spike = float(cal.transform(np.array([6.0]))[0])
    assert spike > 0.999 and float(cal.transform(np.array([0.0]))[0]) < 0.6


def test_same_data_config_and_seed_give_the_same_onnx_weights(fleet: Any, tiny_config: dict, tmp_path: Path,
                                                              trained: Any) -> None:
    (again,) = train_forecasters(from_fleet(fleet), ["udp_echo_rtt_ms"], tiny_config, tmp_path, progress=False)
    assert onnx_initializer_digest(again.file("model")) == onnx_initializer_digest(trained.file("model"))
    assert again.manifest["model"]["onnx_initializer_sha256"] == trained.manifest["model"]["onnx_initializer_sha256"]
    assert again.manifest["training_data"]["fingerprint"] == trained.manifest["training_data"]["fingerprint"]


def test_runs_add_candidates_and_an_identical_rerun_adds_no_version(fleet: Any, tiny_config: dict,
                                                                    tmp_path: Path) -> None:
    cfg = copy.deepcopy(tiny_config)
    cfg["forecaster"].update(epochs=1, max_train_windows=500, parity_n=1000, save_datasets=False)
    train_forecasters(fleet, "ecpri_delay_us", cfg, tmp_path, progress=False)
    st = ModelStore(tmp_path)
    assert st.names() == ["tcn-ecpri_delay_us"]
    # a candidate, not active: only the gate (or promote=True) moves the pointer
    assert st.active("tcn-ecpri_delay_us") is None and st.candidates("tcn-ecpri_delay_us") == ["1.0.0"]
    assert st.report("tcn-ecpri_delay_us", "1.0.0")["prediction"]["per_metric"]["ecpri_delay_us"]["n"] > 0
    (same,) = train_forecasters(fleet, "ecpri_delay_us", cfg, tmp_path, progress=False)
    assert same.version == "1.0.0" and st.versions("tcn-ecpri_delay_us") == ["1.0.0"]
    assert st.log("tcn-ecpri_delay_us")[-1]["note"] == "same data fingerprint and metrics as 1.0.0; no new version"
    cfg["train"]["seed"] = 4
    train_forecasters(fleet, "ecpri_delay_us", cfg, tmp_path, progress=False, promote=True)
    assert st.versions("tcn-ecpri_delay_us") == ["1.0.0", "1.1.0"] and st.active("tcn-ecpri_delay_us") == "1.1.0"
    st.promote("tcn-ecpri_delay_us", "1.0.0")
    assert st.rollback("tcn-ecpri_delay_us") == "1.1.0"
    art = st.load("tcn-ecpri_delay_us")
    assert art.manifest["inputs"]["units"] == {"ecpri_delay_us": "us"}
    json.dumps(art.manifest, allow_nan=False)  # strict JSON: no NaN / Infinity in the manifest
    x = np.random.default_rng(0).uniform(20, 120, (1000, 16)).astype(np.float32)
    sess = ort_session(art.file("model"))
    assert check_parity(lambda b: sess.run(["y"], {"x": b})[0], art.file("model"), x)["max_abs_diff"] == 0.0
