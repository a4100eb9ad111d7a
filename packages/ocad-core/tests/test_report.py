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
    assert len(picks) == 4
    faulty = {e.endpoint_id for e in evaluation.results[0].run.events}
    assert len(faulty) == 8
    assert all(e in faulty for _, e in picks[:-1]) and picks[-1][1] not in faulty  # + a normal one
    out = write_report(evaluation, tmp_path / "r.html", max_endpoints=4)
    text = out.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert text.count('<img src="data:image/png;base64,') == 4
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


@pytest.mark.parametrize("n", [1, 5, 10, 12, 30])
def test_exactly_the_number_of_endpoint_figures_asked_for(evaluation: Any, n: int) -> None:
    from ocad.core.tooling._report import pick_endpoints

    picks = pick_endpoints(evaluation, max_endpoints=n)
    assert len(picks) == min(n, 12) and len(set(picks)) == len(picks)  # 12 endpoints in the run


def test_score_panel_clock_axis_threshold_and_top_detectors(evaluation: Any, monkeypatch) -> None:
    """The figure itself: HH:MM UTC ticks, the open threshold line, <= 4 detectors, legend outside."""
    pytest.importorskip("matplotlib")
    from matplotlib.figure import Figure

    from ocad.core.tooling import _report

    figs: list[Any] = []
    monkeypatch.setattr(_report, "_png", lambda fig: figs.append(fig) or "")
    _, eid = _report.pick_endpoints(evaluation, 1)[0]
    _report._endpoint_figure(evaluation, 0, eid, 0.42)
    (fig,) = figs
    assert isinstance(fig, Figure)
    ax = fig.axes[-1]
    fig.canvas.draw() if hasattr(fig.canvas, "draw") else None
    labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
    assert labels and all(re.fullmatch(r"\d\d:\d\d", t) for t in labels), labels
    assert "UTC" in ax.get_xlabel()
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert "open threshold 0.42" in lines and set(lines["open threshold 0.42"].get_ydata()) == {0.42}
    dets = [k for k in lines if k not in ("composite", "open threshold 0.42") and not k.startswith("_")]
    assert 1 <= len(dets) <= min(_report.MAX_DETECTORS_PLOTTED, len(evaluation.results[0].cache.names))
    leg = ax.get_legend()
    assert leg is not None and leg.get_bbox_to_anchor().x0 > ax.get_window_extent().x1 - 1  # right of the axes
    assert min(t.get_fontsize() for t in ax.get_xticklabels()) >= 9


def test_top_detectors_rank_alert_evidence_first() -> None:
    import numpy as np

    from ocad.core import Evidence
    from ocad.core.tooling._report import top_detectors

    names = ["a", "b", "c", "d", "e", "f"]
    scores = np.tile(np.array([0.9, 0.1, 0.8, 0.2, 0.7, 0.0]), (5, 1))
    ev = Evidence(detector="f", kind="k", metric="m", observed=None, expected=None, score=1.0, contribution=0.5)

    class A:
        evidence = (ev,)

    assert top_detectors(names, scores, [A()]) == [5, 0, 2, 4]
    assert top_detectors(names, scores, []) == [0, 2, 4, 3]
