"""The ``ml`` plugin: detectors from artifacts and shipped models, broken artifacts, strict, session options."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path

import ml_synth as S
import numpy as np
import pytest

from ocad.core import Monitor, OcadArtifactError, OcadConfigError, OcadPluginError
from ocad.core.plugins import PluginRegistry
from ocad.detectors_ml import MultivariateDetector, ResidualDetector
from ocad.detectors_ml import _plugin as ml_plugin


def registry() -> PluginRegistry:
    return PluginRegistry(autoload=False, plugins=[ml_plugin])


def _names(mon: Monitor) -> list[str]:
    return [d.name for d in mon.detectors]


def test_from_model_dir_builds_both_detectors(model_dir: Path) -> None:
    mon = Monitor.from_model_dir(model_dir, registry=registry())
    dets = {d.name: d for d in mon.detectors}
    assert isinstance(dets["residual"], ResidualDetector)
    assert isinstance(dets["multivariate"], MultivariateDetector)
    assert dets["residual"].metrics == ("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms")
    assert mon.health()["artifact_errors"] == []
    assert "rule" in dets  # the core detectors stay


def _copy(model_dir: Path, dest: Path) -> Path:
    shutil.copytree(model_dir, dest)
    return dest


def _edit_manifest(art_dir: Path, change) -> None:  # type: ignore[no-untyped-def]
    p = art_dir / "manifest.json"
    m = json.loads(p.read_text())
    change(m)
    p.write_text(json.dumps(m))


def test_a_broken_artifact_is_skipped_and_reported(model_dir: Path, tmp_path: Path) -> None:
    d = _copy(model_dir, tmp_path / "models")
    # Tampered file: load_artifact refuses it (hash) before any plugin sees it.
    (d / "tcn-lbm_rtt_ms" / "model.onnx").write_bytes(b"not onnx")
    # Hash fine, manifest unusable: the plugin refuses it, builds the others.
    _edit_manifest(d / "tcn-ecpri_delay_us", lambda m: m["scaler"].pop("relative_rms"))
    mon = Monitor.from_model_dir(d, registry=registry())
    dets = {x.name: x for x in mon.detectors}
    assert dets["residual"].metrics == ("udp_echo_rtt_ms",)
    assert "multivariate" in dets
    errors = mon.health()["artifact_errors"]
    assert len(errors) == 2
    assert any("sha256 mismatch" in e for e in errors)
    assert any("scaler.relative_rms" in e for e in errors)
    assert ml_plugin.last_errors and "scaler.relative_rms" in ml_plugin.last_errors[0]


def test_strict_refuses_to_start(model_dir: Path, tmp_path: Path) -> None:
    d = _copy(model_dir, tmp_path / "models")
    _edit_manifest(d / "tcn-ecpri_delay_us", lambda m: m["scaler"].pop("relative_rms"))
    with pytest.raises(OcadPluginError, match="relative_rms"):
        Monitor.from_model_dir(d, registry=registry(), strict=True)
    (d / "tcn-lbm_rtt_ms" / "model.onnx").write_bytes(b"not onnx")
    with pytest.raises(OcadArtifactError, match="sha256"):
        Monitor.from_model_dir(d, registry=registry(), strict=True)


def test_graph_onnxruntime_cannot_load_is_an_artifact_error(model_dir: Path, tmp_path: Path) -> None:
    art = S.load_artifact(model_dir / "tcn-udp_echo_rtt_ms")
    m = dict(art.manifest)
    for k in ("files", "schema_version"):
        m.pop(k)
    bad = S.write_artifact(tmp_path / "bad", m, {"model": ("model.onnx", b"\x08\x07garbage")})
    reg = registry()
    mon = Monitor.from_model_dir(bad.path, registry=reg)
    assert "residual" not in _names(mon)
    assert any("onnxruntime cannot load" in e or "refused to load" in e for e in mon.health()["artifact_errors"])


def test_session_options_from_config(model_dir: Path) -> None:
    mon = Monitor.from_model_dir(model_dir, {"onnxruntime": {"intra_op_num_threads": 2,
                                                             "graph_optimization_level": "basic"}},
                                 registry=registry())
    det = next(d for d in mon.detectors if d.name == "residual")
    so = det.forecasters[0].session.get_session_options()
    assert so.intra_op_num_threads == 2
    assert so.graph_optimization_level.name == "ORT_ENABLE_BASIC"
    default = Monitor.from_model_dir(model_dir, registry=registry())
    mv = next(d for d in default.detectors if d.name == "multivariate")
    so = mv.session.get_session_options()
    assert (so.intra_op_num_threads, so.inter_op_num_threads) == (1, 1)
    assert mv.session.get_providers() == ["CPUExecutionProvider"]


@pytest.mark.parametrize("table, message", [
    ({"intra_op_num_threads": 0}, "intra_op_num_threads"),
    ({"providers": ["NoSuchExecutionProvider"]}, "not available"),
    ({"graph_optimization_level": "max"}, "graph_optimization_level"),
    ({"threads": 2}, "unknown key"),
])
def test_bad_session_options_refuse_to_start(model_dir: Path, table: dict, message: str) -> None:
    # A wrong [onnxruntime] table is the user's configuration error: strict or not, the
    # Monitor refuses to start with an OcadConfigError naming the key (never a silently
    # missing ML detector).
    for strict in (False, True):
        with pytest.raises(OcadConfigError, match=message):
            Monitor.from_model_dir(model_dir, {"onnxruntime": table}, registry=registry(), strict=strict)


def test_unknown_detector_options_are_refused(model_dir: Path) -> None:
    with pytest.raises(OcadConfigError, match="detectors.residual"):
        Monitor.from_model_dir(model_dir, {"detectors": {"residual": {"window": 3}}}, registry=registry())


# -- shipped models ---------------------------------------------------------------

def _ship(monkeypatch: pytest.MonkeyPatch, root: Path) -> None:
    monkeypatch.setattr(ml_plugin, "models_dir", lambda: root)


def test_shipped_models_are_used_by_from_defaults(model_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _ship(monkeypatch, model_dir)
    assert {"residual", "multivariate"} <= set(_names(Monitor({}, registry=registry())))
    off = Monitor({"monitor": {"use_shipped_models": False}}, registry=registry())
    assert not {"residual", "multivariate"} & set(_names(off))
    # Only the models whose metrics are configured.
    few = Monitor({"monitor": {"metrics": ["udp_echo_rtt_ms", "lbm_rtt_ms"]}}, registry=registry())
    res = next(d for d in few.detectors if d.name == "residual")
    assert res.metrics == ("udp_echo_rtt_ms", "lbm_rtt_ms")
    assert "multivariate" not in _names(few)


def test_no_shipped_models_logs_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                     caplog: pytest.LogCaptureFixture) -> None:
    _ship(monkeypatch, tmp_path / "empty")
    monkeypatch.setattr(ml_plugin, "_logged_no_models", False)
    with caplog.at_level(logging.INFO, logger="ocad.detectors_ml"):
        for _ in range(3):
            mon = Monitor({}, registry=registry())
            assert not {"residual", "multivariate"} & set(_names(mon))
    assert sum("no shipped models" in r.message for r in caplog.records) == 1


def test_broken_shipped_model_is_reported(model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    d = _copy(model_dir, tmp_path / "models")
    (d / "iforest-multivariate" / "model.onnx").write_bytes(b"corrupt")
    _ship(monkeypatch, d)
    mon = Monitor({}, registry=registry())
    assert "residual" in _names(mon) and "multivariate" not in _names(mon)
    assert any("shipped model" in e and "sha256" in e for e in mon.health()["artifact_errors"])
    with pytest.raises(OcadPluginError, match="sha256"):
        Monitor({}, registry=registry(), strict=True)


def test_monitor_end_to_end_on_a_fleet_with_faults(model_dir: Path) -> None:
    from ocad.core.tooling import generate_fleet

    fleet = generate_fleet(n_endpoints=12, duration_s=1800, seed=9)
    mon = Monitor.from_model_dir(model_dir, registry=registry())
    records = [r for t in range(fleet.ts.size) for r in fleet.records(t)]
    df = mon.score_frame(records, as_frame=False)
    for name in ("residual", "multivariate"):
        s = df[name]
        assert np.isfinite(s).mean() > 0.5
        fin = s[np.isfinite(s)]
        assert fin.min() >= 0.0 and fin.max() <= 1.0
