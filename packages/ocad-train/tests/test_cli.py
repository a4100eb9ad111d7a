"""The CLI: a user's own KPI end to end, the model store commands, optional extras."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ocad.core.artifacts import ModelStore


def _ocad_main() -> object:
    """``ocad.core.cli:main`` (which adds our commands through the plugin hook) when this package is
    installed with its entry point, else our own parser's main (same commands)."""
    from importlib import metadata

    if any(ep.value == "ocad.train._plugin" for ep in metadata.entry_points(group="ocad")):
        from ocad.core.cli import main

        return main
    from ocad.train._cli import main

    return main


TINY_ARGS = ["--window", "16", "--epochs", "2", "--threads", "1", "--quiet"]


def test_user_metric_end_to_end(kpi_csv: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "tiny.toml"
    cfg.write_text('[forecaster]\nhidden = 8\nlevels = 2\nmax_train_windows = 2000\nmax_eval_windows = 1000\n'
                   'batch_size = 128\nlr = 0.005\n[metrics.my_kpi]\nunit = "widgets"\n')
    store = tmp_path / "store"
    main = _ocad_main()
    rc = main(["train", "--data", str(kpi_csv), "--metrics", "my_kpi", "--out", str(store),  # type: ignore[operator]
               "--config", str(cfg), "--promote", *TINY_ARGS])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "tcn-my_kpi" in out and "gate tcn-my_kpi@1.0.0 vs active -: PASS" in out
    art = ModelStore(store).load("tcn-my_kpi")
    assert art.manifest["inputs"]["metrics"] == ["my_kpi"]
    assert art.manifest["inputs"]["units"] == {"my_kpi": "widgets"}
    assert art.manifest["training_data"]["source"] == str(kpi_csv)
    assert art.manifest["parity"]["max_abs_diff"] <= 1e-4

    assert main(["models", "list", "--store", str(store)]) == 0  # type: ignore[operator]
    listing = capsys.readouterr().out
    assert "tcn-my_kpi" in listing and "1.0.0" in listing

    assert main(["models", "show", "tcn-my_kpi", "--store", str(store)]) == 0  # type: ignore[operator]
    shown = json.loads(capsys.readouterr().out)
    assert shown["name"] == "tcn-my_kpi" and shown["active"] is True and "calibration" not in shown

    # re-export the checkpoint the run left in the work directory; parity is checked again
    ck = store / ".work" / "tcn-my_kpi" / "best.pt"
    assert main(["export", "--checkpoint", str(ck), "--out", str(tmp_path / "re.onnx")]) == 0  # type: ignore[operator]
    assert "parity max |diff|" in capsys.readouterr().out and (tmp_path / "re.onnx").is_file()


def test_models_promote_and_rollback(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ocad.train import publish_artifact

    mf = {"name": "tcn-m", "kind": "forecaster", "format": "onnx", "inputs": {"metrics": ["m"]},
          "calibration": {}, "library_versions": {}}
    for _ in range(2):
        publish_artifact(tmp_path, mf, {"model": ("model.onnx", b"x")})
    main = _ocad_main()
    st = ModelStore(tmp_path)
    assert main(["models", "rollback", "tcn-m", "--store", str(tmp_path)]) == 0  # type: ignore[operator]
    assert st.active("tcn-m") == "1.0.0"
    # Without test metrics the gate cannot show that 1.1.0 beats the naive forecast: refused (exit 3).
    assert main(["models", "promote", "tcn-m", "1.1.0", "--store", str(tmp_path)]) == 3  # type: ignore[operator]
    assert "REFUSED" in capsys.readouterr().out and st.active("tcn-m") == "1.0.0"
    assert main(["models", "promote", "tcn-m", "1.1.0", "--store", str(tmp_path), "--force"]) == 2  # type: ignore[operator]
    assert "--reason" in capsys.readouterr().err
    assert main(["models", "promote", "tcn-m", "1.1.0", "--store", str(tmp_path), "--force",  # type: ignore[operator]
                 "--reason", "vendor hotfix"]) == 0
    assert st.active("tcn-m") == "1.1.0"
    last = st.log("tcn-m")[-1]
    assert (last["action"], last["version"], last["forced"], last["reason"]) == ("promote", "1.1.0", True,
                                                                                  "vendor hotfix")
    assert last["gate"]["passed"] is False
    # VERSION alone: every model with that candidate version
    publish_artifact(tmp_path, {**mf, "name": "tcn-n"}, {"model": ("model.onnx", b"x")}, promote=False)
    assert main(["models", "promote", "1.0.0", "--store", str(tmp_path), "--force",  # type: ignore[operator]
                 "--reason", "bootstrap"]) == 0
    assert st.active("tcn-n") == "1.0.0" and st.active("tcn-m") == "1.1.0"
    assert main(["models", "promote", "7.0.0", "--store", str(tmp_path)]) == 2  # type: ignore[operator]
    assert "no model" in capsys.readouterr().err
    assert main(["models", "promote", "tcn-m", "9.9.9", "--store", str(tmp_path)]) == 2  # type: ignore[operator]
    assert "no version '9.9.9'" in capsys.readouterr().err
    assert main(["models", "list", "--store", str(tmp_path / "nope")]) == 2  # type: ignore[operator]


def test_train_without_data_or_with_a_bad_config_is_a_clear_error(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    main = _ocad_main()
    # Exit codes of docs/cli.md: 2 usage / config, 3 data, 4 a missing extra.
    assert main(["train", "--metrics", "x", "--out", str(tmp_path)]) == 2  # type: ignore[operator]
    assert "--data FILE or --simulate" in capsys.readouterr().err
    bad = tmp_path / "bad.toml"
    bad.write_text("[forecaster]\nwindoww = 3\n")
    assert main(["train", "--simulate", "--out", str(tmp_path), "--config", str(bad)]) == 2  # type: ignore[operator]
    assert "windoww" in capsys.readouterr().err


def test_mlflow_missing_names_the_extra(kpi_csv: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setitem(sys.modules, "mlflow", None)  # not importable, whether installed or not
    main = _ocad_main()
    rc = main(["train", "--data", str(kpi_csv), "--metrics", "my_kpi", "--out", str(tmp_path),  # type: ignore[operator]
               "--mlflow", *TINY_ARGS])
    err = capsys.readouterr().err
    assert rc == 4 and 'ocad-train[mlflow]' in err and "mlflow" in err
    assert not ModelStore(tmp_path).names()  # nothing trained


def test_tune_missing_optuna_names_the_extra(monkeypatch: pytest.MonkeyPatch, fleet: object) -> None:
    from ocad.core import OcadDependencyError
    from ocad.train import ForecasterConfig, from_fleet, tune_forecaster

    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(OcadDependencyError, match=r"ocad-train\[tune\]") as ei:
        tune_forecaster(from_fleet(fleet), "udp_echo_rtt_ms", ForecasterConfig(), 2)
    assert ei.value.extra == "tune"


def test_tune_runs_a_seeded_study(fleet: object) -> None:
    pytest.importorskip("optuna")
    from ocad.train import ForecasterConfig, from_fleet, tune_forecaster

    cfg = ForecasterConfig(window=16, hidden=8, levels=2, max_train_windows=800, max_eval_windows=400, threads=1)
    res = tune_forecaster(from_fleet(fleet), "udp_echo_rtt_ms", cfg, 2, seed=1, epochs=1, progress=False)
    assert res["n_trials"] == 2 and set(res["best_params"]) == {"lr", "hidden", "levels", "window"}
    assert 0 < res["best_value"] < 2
