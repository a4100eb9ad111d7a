"""The public facade, the plugin entry point and the lightness of `import ocad.train`."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import ocad.train

ROOT = Path(__file__).resolve().parents[1]


def test_all_is_sorted_complete_and_importable() -> None:
    import importlib

    assert ocad.train.__all__ == sorted(ocad.train.__all__)
    for name in ocad.train.__all__:
        assert getattr(ocad.train, name) is not None, name
    # complete: every name a private module declares public is exported by the facade
    modules = {"_config", "_data", "_datasets", "_errors", "_export", "_forecaster", "_last_step", "_manifest", "_pipeline",
               "_residual", "_tcn", "_tracking", "_tune"}
    declared = {n for m in modules for n in importlib.import_module(f"ocad.train.{m}").__all__}
    assert declared == set(ocad.train.__all__)


def test_namespace_package_layout() -> None:
    assert not (ROOT / "src" / "ocad" / "__init__.py").exists()
    assert (ROOT / "src" / "ocad" / "train" / "py.typed").exists()


def test_pyproject_declares_entry_point_ranges_and_extras() -> None:
    pp = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert pp["entry-points"]["ocad"] == {"train": "ocad.train._plugin"}
    assert "torch>=2.2,<2.14" in pp["dependencies"]
    assert pp["optional-dependencies"]["tune"] == ["optuna>=3.5"]
    assert pp["optional-dependencies"]["mlflow"] == ["mlflow>=2.10"]


def test_plugin_import_is_light() -> None:
    """Every Monitor loads the `ocad` entry points: this one must not drag torch / pandas in."""
    code = ("import sys, ocad.train._plugin, ocad.train; "
            "print(sorted(m for m in ('torch', 'pandas', 'onnx', 'onnxruntime', 'sklearn') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_default_config_loads() -> None:
    from ocad.train import load_config

    cfg = load_config(ROOT / "configs" / "default.toml")
    assert cfg.metrics == ("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms")
    assert cfg.data.simulate and cfg.data.endpoints == 80 and cfg.data.hours == 24 and cfg.data.seed == 7
    assert cfg.forecaster.window == 32 and cfg.multivariate["enabled"] is True
