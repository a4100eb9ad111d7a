"""Shadow mode: a candidate detector set beside the active one, never touching the active alerts."""

from __future__ import annotations

import shutil
from pathlib import Path

import ml_synth as S
import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError
from ocad.core.plugins import DetectorOutput, DetectorView, PluginRegistry
from ocad.core.tooling import ShadowRunner, generate_fleet
from ocad.detectors_ml import ResidualDetector
from ocad.detectors_ml import _plugin as ml_plugin


class Constant:
    """A detector that is sure of everything: with two kinds it opens an alert on every endpoint."""

    def __init__(self, name: str, value: float = 1.0, window: int = 1) -> None:
        self.name = self.kind = name
        self.metrics: tuple[str, ...] = ()
        self.window = window
        self.value = value

    def score(self, view: DetectorView) -> DetectorOutput:
        return DetectorOutput(scores=np.full(view.n, self.value))


class Boom(Constant):
    def score(self, view: DetectorView) -> DetectorOutput:
        raise RuntimeError("candidate bug")


@pytest.fixture(scope="module")
def records() -> list[dict]:
    # Short and fault-dense: the shadow doubles the detector work of every tick.
    fleet = generate_fleet(n_endpoints=8, duration_s=2400, seed=21, fault_rate_per_endpoint_day=48.0)
    return [r for t in range(fleet.ts.size) for r in fleet.records(t)]


def _registry() -> PluginRegistry:
    return PluginRegistry(autoload=False, plugins=[ml_plugin])


def _monitor(model_dir: Path) -> Monitor:
    # Without the changepoint detector, the costliest core detector, to keep the tests fast.
    return Monitor.from_model_dir(model_dir, {"alerts": {"hold_down_s": 30.0},
                                              "detectors": {"changepoint": {"enabled": False}}},
                                  registry=_registry())


def _dicts(events: list) -> list[dict]:
    return [e.to_dict() for e in events]


@pytest.fixture(scope="module")
def run(model_dir: Path, records: list[dict], fleet, tmp_path_factory):  # type: ignore[no-untyped-def]
    """One active Monitor with three shadows, and the same Monitor without any, fed tick by tick."""
    cand_dir = tmp_path_factory.mktemp("candidate")
    S.write_forecaster(cand_dir / "tcn-udp_echo_rtt_ms",
                       S.fitted_forecaster_manifest(fleet, "udp_echo_rtt_ms", 16, range(16, 700), version="1.1.0"))
    plain = _monitor(model_dir)
    mon = _monitor(model_dir)
    shadows = {
        # Two always-sure detectors of two kinds: the candidate alerts on every endpoint.
        "sure": ShadowRunner.from_monitor(mon, [Constant("sure-a"), Constant("sure-b")], keep_others=False),
        "same": ShadowRunner.from_model_dir(mon, model_dir),
        "new": ShadowRunner.from_model_dir(mon, cand_dir),
    }
    for sh in shadows.values():
        sh.attach(mon)
    expected, got = [], []
    for k in range(0, len(records), 8):  # tick by tick, as a collector would send them
        expected += plain.observe(records[k:k + 8])
        got += mon.observe(records[k:k + 8])
    return {"plain": plain, "mon": mon, "expected": expected, "got": got, **shadows}


def test_candidate_alerts_never_reach_the_active_stream(run: dict, records: list[dict]) -> None:
    got, shadow = run["got"], run["sure"]
    assert _dicts(got) == _dicts(run["expected"])  # identical active events, shadows or not
    assert any(e.event == "open" for e in got)  # (the fleet has faults: there is something to compare)
    assert run["mon"].policy.counts == run["plain"].policy.counts
    cand_ids = {e.alert.alert_id for e in shadow.events}
    assert len(shadow.events) >= 8  # the candidate alerted on every endpoint...
    assert not cand_ids & {e.alert.alert_id for e in got}  # ...and none of that leaked
    rep = shadow.report()
    assert rep.candidate_alerts >= 8
    assert rep.active_alerts == sum(e.event == "open" for e in got)
    assert rep.both + len(rep.only_active) == rep.active_alerts
    assert len(rep.only_candidate) >= 8 - rep.both
    assert rep.ticks == len(records) // 8
    assert rep.scores["n"] > 0 and rep.scores["mean_candidate"] > rep.scores["mean_active"]


def test_identical_candidate_agrees_exactly(run: dict) -> None:
    rep = run["same"].report()
    assert rep.scores["mean_abs_diff"] == 0.0
    assert rep.scores["correlation"] == pytest.approx(1.0)
    assert rep.detectors["residual"]["mean_abs_diff"] == 0.0
    assert rep.only_active == () and rep.only_candidate == ()
    assert rep.active_alerts == rep.candidate_alerts == sum(e.event == "open" for e in run["got"])
    assert rep.errors == 0


def test_new_model_version_differences_are_reported(run: dict) -> None:
    shadow = run["new"]
    assert shadow.name == "tcn-udp_echo_rtt_ms@1.1.0"
    cand = next(d for d in shadow.composite.detectors if d.name == "residual")
    assert isinstance(cand, ResidualDetector) and cand.sources == ("tcn-udp_echo_rtt_ms@1.1.0",)
    rep = shadow.report().to_dict()
    r = rep["detectors"]["residual"]
    assert r["n"] > 0 and r["mean_abs_diff"] > 0.01 and r["correlation"] < 0.999
    assert rep["detectors"]["rule"]["mean_abs_diff"] == 0.0  # the untouched detectors agree
    assert set(rep) >= {"only_active", "only_candidate", "both", "scores", "candidate_health"}


def test_a_failing_candidate_is_contained(model_dir: Path, records: list[dict]) -> None:
    plain = _monitor(model_dir)
    mon = _monitor(model_dir)
    shadow = ShadowRunner.from_monitor(mon, [Boom("boom")]).attach(mon)
    assert _dicts(mon.observe(records[:200])) == _dicts(plain.observe(records[:200]))
    assert shadow.report().candidate_health["boom"]["failures"] >= 1
    # Even the shadow's own machinery failing never reaches the Monitor.
    shadow.policy = None  # type: ignore[assignment]
    assert _dicts(mon.observe(records[200:400])) == _dicts(plain.observe(records[200:400]))
    assert shadow.errors > 0 and "AttributeError" in (shadow.last_error or "")


def test_window_too_long_for_the_monitor(model_dir: Path) -> None:
    mon = _monitor(model_dir)
    shadow = ShadowRunner.from_monitor(mon, [Constant("long", window=mon.window + 10)])
    with pytest.raises(OcadConfigError, match="window"):
        shadow.attach(mon)
    assert mon.shadows == []


def test_broken_candidate_artifact_is_refused(model_dir: Path, tmp_path: Path) -> None:
    d = tmp_path / "cand"
    shutil.copytree(model_dir / "tcn-udp_echo_rtt_ms", d / "tcn-udp_echo_rtt_ms")
    p = d / "tcn-udp_echo_rtt_ms" / "manifest.json"
    p.write_text(p.read_text().replace('"relative_rms"', '"relative_rms_"'))
    mon = _monitor(model_dir)
    with pytest.raises(Exception, match="relative_rms"):
        ShadowRunner.from_model_dir(mon, d)
