"""The example third-party plugin (examples/ocad-plugin-example), installed by `make test`."""

from __future__ import annotations

from importlib import metadata

import pytest

from ocad.core import Monitor
from ocad.core.cli import main

pytestmark = pytest.mark.skipif(
    not [e for e in metadata.entry_points(group="ocad") if e.name == "example"],
    reason="examples/ocad-plugin-example is not installed (make test installs it: "
           "pip install --no-deps -e examples/ocad-plugin-example)")


def test_listed_by_ocad_plugins(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    plugins = out.split("\n\n")[0]
    assert "example" in plugins and "ocad-plugin-example" in plugins
    assert "ptp" in out and "ptp_offset_ns" in out
    assert "FAILURES" not in out


def test_in_the_default_monitor() -> None:
    mon = Monitor.from_defaults()
    dets = {d.name: d for d in mon.detectors}
    assert dets["ptp"].kind == "ptp" and dets["ptp"].metrics == ("ptp_offset_ns",)
    assert "ptp_offset_ns" in mon.metrics.names()
    events = mon.observe([{"endpoint_id": "oru-7", "ts": 10.0 * t, "ptp_offset_ns": 20.0} for t in range(20)])
    assert events == []
