"""docs/config.md is generated from the configuration classes and must match them."""

from __future__ import annotations

from pathlib import Path

import attrs
import pytest

from ocad.core import AlertPolicyConfig, MetricSpec, MonitorConfig

DOC = Path(__file__).resolve().parents[3] / "docs" / "config.md"


def test_config_page_matches_the_code():
    pytest.importorskip("ocad.detectors_ml")  # the page documents [onnxruntime] of the ML plugin
    from ocad.core.tooling._config_doc import render

    assert DOC.read_text(encoding="utf-8") == render(), (
        "docs/config.md is stale: run `python -m ocad.core.tooling._config_doc > docs/config.md`")


def test_every_key_and_default_is_on_the_page():
    from ocad.core._config import _MONITOR_KEYS, _TOP_KEYS

    text = DOC.read_text(encoding="utf-8")
    for t in _TOP_KEYS:
        assert f"[{t}" in text, t
    for k in _MONITOR_KEYS:
        assert f"| `{k}` |" in text, k
    for cls in (AlertPolicyConfig, MetricSpec):
        for f in attrs.fields(cls):
            if f.name != "name":
                assert f"| `{f.name}` |" in text, f.name
    assert f"| `open_threshold` | float | `{AlertPolicyConfig().open_threshold}` |" in text
    assert f"| `window` | int | `{MonitorConfig().window}` |" in text
