"""``ocad report``: a self-contained HTML file; matplotlib stays an optional, lazy import."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ocad.core import OcadDependencyError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet
from ocad.core.tooling._quality import LabelledRun, MonitorFactory, evaluate


@pytest.fixture(scope="module")
def evaluation() -> Any:
    # 12 endpoints, 8 of them with faults (every type): the report has a normal one to show.
    fleet = generate_fleet(12, 1.5 * 3600, 5.0, seed=5, n_sites=3, fault_rate_per_endpoint_day=4)
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "detectors": {"changepoint": {"enabled": False}}},
                         registry=PluginRegistry(autoload=False))
    return evaluate(LabelledRun.from_fleet(fleet, "tiny"), factory=fac)


def test_report_is_self_contained_html(evaluation: Any, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from ocad.core.tooling._report import pick_endpoints, write_report

    picks = pick_endpoints(evaluation, max_endpoints=4)
    assert 1 <= len(picks) <= 4
    faulty = {e.endpoint_id for e in evaluation.results[0].run.events}
    assert len(faulty) == 8
    assert all(e in faulty for _, e in picks[:-1]) and picks[-1][1] not in faulty  # + a normal one
    out = write_report(evaluation, tmp_path / "r.html", max_endpoints=4)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('<img src="data:image/png;base64,') == len(picks)
    for heading in ("Overall, after the alert policy", "Targets", "Per fault type", "Ablation (replay)",
                    "Forecasters"):
        assert f"<h2>{heading}</h2>" in text, heading
    assert "rule only" in text and "not installed" in text and "event_precision" in text
    # Nothing fetched from elsewhere: no external scripts, styles or images.
    assert not re.search(r'(src|href)="(https?:)?//', text)


def test_report_without_matplotlib_names_the_extra(evaluation: Any, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from ocad.core.tooling import write_report

    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(OcadDependencyError, match=r"ocad-core\[report\]"):
        write_report(evaluation, tmp_path / "r.html")
    assert not (tmp_path / "r.html").exists()


def test_quality_modules_import_no_heavy_dependencies() -> None:
    code = ("import sys, ocad.core, ocad.core.tooling._quality, ocad.core.tooling._report, ocad.core.cli\n"
            "ocad.core.cli.build_parser()\n"
            "bad = [m for m in ('matplotlib', 'pandas', 'sklearn', 'torch') if m in sys.modules]\n"
            "assert not bad, bad\n")
    subprocess.run([sys.executable, "-c", code], check=True)
