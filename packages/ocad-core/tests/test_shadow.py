"""ShadowRunner with core detectors only: candidate alerts stay out of the active stream."""

from __future__ import annotations

import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError
from ocad.core.plugins import DetectorOutput, DetectorView, PluginRegistry
from ocad.core.tooling import ShadowRunner, generate_fleet


class Sure:
    def __init__(self, name: str, window: int = 1) -> None:
        self.name = self.kind = name
        self.metrics: tuple[str, ...] = ()
        self.window = window

    def score(self, view: DetectorView) -> DetectorOutput:
        return DetectorOutput(scores=np.ones(view.n))


def _monitor() -> Monitor:
    # warmup_s = 0: the fleet is 1500 s long, shorter than the default warm-up of 1800 s of sample time
    return Monitor({"monitor": {"warmup_s": 0}, "detectors": {"changepoint": {"enabled": False}}},
                   registry=PluginRegistry(autoload=False))


def test_candidate_alerts_stay_in_the_shadow() -> None:
    fleet = generate_fleet(n_endpoints=5, duration_s=1500, seed=2, fault_rate_per_endpoint_day=40.0)
    plain, mon = _monitor(), _monitor()
    shadow = ShadowRunner.from_monitor(mon, [Sure("a"), Sure("b")], keep_others=False).attach(mon)
    same = ShadowRunner.from_monitor(mon, []).attach(mon)
    got, want = [], []
    for t in range(fleet.ts.size):
        want += plain.observe_columns(*fleet.columns(t))
        got += mon.observe_columns(*fleet.columns(t))
    assert [e.to_dict() for e in got] == [e.to_dict() for e in want]
    assert {e.alert.endpoint_id for e in shadow.events if e.event == "open"} == set(fleet.endpoint_ids())
    assert not {e.alert.alert_id for e in shadow.events} & {e.alert.alert_id for e in got}
    rep = shadow.report()
    assert rep.candidate_alerts == 5 and rep.both + len(rep.only_active) == rep.active_alerts
    srep = same.report()
    assert srep.scores["mean_abs_diff"] == 0.0 and srep.only_active == () and srep.only_candidate == ()
    assert srep.ticks == fleet.ts.size


def test_attach_checks_the_window_and_detach_stops() -> None:
    mon = _monitor()
    with pytest.raises(OcadConfigError, match="window"):
        ShadowRunner([Sure("a", window=mon.window + 1)]).attach(mon)
    sh = ShadowRunner([Sure("a")]).attach(mon)
    sh.detach(mon)
    mon.observe([{"endpoint_id": "x", "ts": 1.0, "udp_echo_rtt_ms": 3.0}])
    assert sh.report().ticks == 0
