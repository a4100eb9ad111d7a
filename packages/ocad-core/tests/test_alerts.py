"""AlertPolicy (``ocad.core.pipeline._alerts``) on hand-built CompositeOutput sequences."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import AlertPolicyConfig, OcadConfigError
from ocad.core.pipeline import AlertPolicy

KINDS = ("rule", "spike", "drift")
QUIET = (0.1, [0.0, 0.0, 0.0])


class Feed:
    """Feeds one endpoint (or several) sample by sample and keeps every event."""

    def __init__(self, composite, policy: AlertPolicy | None = None, **cfg) -> None:
        self.composite = composite
        self.policy = policy or AlertPolicy(AlertPolicyConfig(**cfg))
        self.events: list = []

    def __call__(self, ts: float, score: float, dets, ep: str = "a", ready: bool = True) -> list:
        comp = self.composite([score], [dets], KINDS)
        ev = self.policy.update(np.array([ep], dtype=object), np.array([ts]), comp, ready=np.array([ready]))
        self.events += ev
        return ev


@pytest.fixture
def feed(composite):
    return lambda **cfg: Feed(composite, **cfg)


def test_one_sample_above_open_does_not_open_two_consecutive_do(feed):
    f = feed()  # defaults: open 0.5, evidence 0.4, min_kinds 1, confirm_samples 2
    one = [1.0, 0.0, np.nan]  # one kind of decisive evidence, alone
    for i in range(20):  # isolated blips, each followed by a quiet sample: never confirmed
        assert f(10.0 * i, 0.9, one) == []
        assert f(10.0 * i + 5.0, *QUIET) == []
    assert f.policy.counts["open"] == 0 and f.policy.pending_of("a") == 0
    assert f(200.0, 0.9, one) == []  # pending 1 of 2
    assert f.policy.pending_of("a") == 1
    (ev,) = f(205.0, 0.9, one)  # the second consecutive sample: one detector opens alone
    assert ev.event == "open" and ev.ts == 205.0
    assert ev.alert.kinds == ("rule",) and ev.alert.score == pytest.approx(0.9)
    assert [e.detector for e in ev.alert.evidence] == ["det_rule"]


def test_lone_weak_detector_below_open_never_opens(feed):
    f = feed()
    for i in range(50):  # evidence of one kind (>= 0.4) but the composite stays below open (0.5)
        assert f(5.0 * i, 0.45, [0.45, 0.0, np.nan]) == []
    assert f.policy.counts["open"] == 0 and f.policy.open_alerts() == []


def test_min_kinds_two_one_kind_alone_never_opens(feed):
    f = feed(min_kinds=2)  # the corroboration mechanism, configured explicitly
    for i in range(50):
        assert f(5.0 * i, 1.0, [1.0, 0.3, np.nan]) == []
    assert f.policy.counts["open"] == 0
    assert f(250.0, 1.0, [1.0, 0.4, np.nan]) == []
    (ev,) = f(255.0, 1.0, [1.0, 0.4, np.nan])
    assert ev.event == "open" and ev.alert.kinds == ("rule", "spike")


def test_two_kinds_with_score_on_confirm_samples_opens(feed):
    f = feed()
    assert f(0.0, 0.7, [1.0, 0.999, 0.0]) == []  # pending 1 of 2
    (ev,) = f(5.0, 0.7, [1.0, 0.999, 0.0])
    assert ev.event == "open" and ev.ts == 5.0
    a = ev.alert
    assert a.endpoint_id == "a" and a.opened_ts == a.updated_ts == 5.0 and a.resolved_ts is None
    assert a.kinds == ("rule", "spike") and a.severity == "warning" and a.score == pytest.approx(0.7)
    assert [e.detector for e in a.evidence] == ["det_rule", "det_spike"]
    assert a.evidence[0].metric == "m" and a.evidence[0].observed == 2.0 and a.evidence[0].expected == 1.0


def test_confirmation_must_be_consecutive(feed):
    f = feed(confirm_samples=3)
    two = [1.0, 1.0, 0.0]
    seq = [(0.7, two), (0.7, two), QUIET, (0.7, two), (0.7, two), (0.4, two), (0.7, two), (0.7, two)]
    for i, (s, d) in enumerate(seq):
        f(5.0 * i, s, d)
    assert f.events == []
    (ev,) = f(100.0, 0.7, two)
    assert ev.event == "open" and ev.ts == 100.0


def test_evidence_threshold_and_open_threshold_both_needed(feed):
    f = feed()
    for i in range(10):
        f(5.0 * i, 0.99, [0.39, 0.39, 0.39])  # no detector at the default evidence_threshold 0.4
        f(5.0 * i + 1, 0.49, [1.0, 1.0, 1.0])  # all three kinds, composite below open_threshold 0.5
    assert f.events == []


def test_dedup_no_second_open_while_open(feed):
    f = feed()
    for i in range(40):
        f(5.0 * i, 0.7, [1.0, 1.0, 0.0])
    assert [e.event for e in f.events] == ["open"]
    assert len(f.policy.open_alerts()) == 1


def test_update_on_severity_change_and_new_kind(feed):
    f = feed()
    f(0.0, 0.7, [1.0, 1.0, 0.0])
    f(5.0, 0.7, [1.0, 1.0, 0.0])
    (up,) = f(10.0, 0.85, [1.0, 1.0, 0.0])
    assert up.event == "update" and up.alert.severity == "critical" and up.alert.updated_ts == 10.0
    assert up.alert.alert_id == f.events[0].alert.alert_id and up.alert.opened_ts == 5.0
    (up2,) = f(15.0, 0.85, [1.0, 1.0, 1.0])
    assert up2.event == "update" and up2.alert.kinds == ("drift", "rule", "spike")
    # kinds only grow: a kind that goes quiet stays on the alert, without an update
    assert f(20.0, 0.85, [1.0, 1.0, 0.0]) == []
    assert f.policy.open_alerts()[0].kinds == ("drift", "rule", "spike")


def test_update_on_score_rise_rate_limited_in_sample_time(feed):
    f = feed()
    two = [1.0, 1.0, 0.0]
    f(0.0, 0.6, two)
    f(5.0, 0.6, two)  # open, last event score 0.6
    assert f(10.0, 0.71, two) == []  # rose by 0.11 (>= update_delta 0.1) but only 5 s after the last event
    assert f(34.0, 0.71, two) == []  # 29 s
    (up,) = f(35.0, 0.71, two)  # 30 s
    assert up.event == "update" and up.alert.score == pytest.approx(0.71)
    assert f(70.0, 0.78, two) == []  # only +0.07 since the last event
    assert f.policy.open_alerts()[0].peak_score == pytest.approx(0.78)


def test_hold_down_resolves_after_inactive_samples(feed):
    f = feed()  # defaults: hold_down_s 0, hold_down_samples 3, clear_threshold 0.3
    two = [1.0, 1.0, 0.0]
    f(0.0, 0.7, two)
    (op,) = f(5.0, 0.7, two)
    assert op.event == "open"
    assert f(10.0, *QUIET) == []  # quiet 1
    assert f(15.0, *QUIET) == []  # quiet 2
    assert f(20.0, 0.3, [0.0, 0.0, 0.0]) == []  # composite at clear_threshold, no evidence: active again
    assert f(25.0, *QUIET) == [] and f(30.0, *QUIET) == []
    (res,) = f(35.0, *QUIET)  # third consecutive inactive sample
    assert res.event == "resolve" and res.alert.resolved_ts == 35.0
    assert f.policy.open_alerts() == [] and f.policy.counts == {"open": 1, "update": 0, "resolve": 1}
    # one quiet sample far later in sample time is still only one sample
    g = feed()
    g(0.0, 0.7, two)
    g(5.0, 0.7, two)
    assert g(5.0 + 3600.0, *QUIET) == [] and g(5.0 + 7200.0, *QUIET) == []
    assert [e.event for e in g(5.0 + 10800.0, *QUIET)] == ["resolve"]


def test_hold_down_resolves_after_inactive_sample_time(feed):
    f = feed(hold_down_s=60.0, hold_down_samples=1)
    two = [1.0, 1.0, 0.0]
    f(0.0, 0.7, two)
    f(5.0, 0.7, two)
    f(10.0, 0.7, two)  # last active sample
    for t in (15.0, 30.0, 50.0, 69.0):
        assert f(t, *QUIET) == []
    f(60.0 + 9.0 + 0.5, 0.3, [0.0, 0.0, 0.0])  # composite at clear_threshold: still *active*
    assert f(129.0, *QUIET) == []  # 59.5 s after the last active sample
    (res,) = f(129.5, *QUIET)
    assert res.event == "resolve" and res.alert.resolved_ts == 129.5 and res.ts == 129.5
    assert f.policy.open_alerts() == [] and f.policy.counts == {"open": 1, "update": 0, "resolve": 1}


def test_hold_down_uses_sample_time_not_the_wall_clock(feed, monkeypatch):
    clock = [1_000_000.0]

    def fake_time() -> float:
        clock[0] += 7200.0  # two hours of wall clock pass between any two calls
        return clock[0]

    for name in ("time", "monotonic", "perf_counter"):
        monkeypatch.setattr(time, name, fake_time)
    f = feed(hold_down_s=60.0)
    two = [1.0, 1.0, 0.0]
    f(0.0, 0.7, two)
    f(5.0, 0.7, two)
    for i in range(11):  # 55 s of quiet sample time, hours of wall time
        assert f(10.0 + 5.0 * i, *QUIET) == []
    assert f.policy.open_alerts()
    (res,) = f(65.0, *QUIET)
    assert res.event == "resolve"
    # and the converse: one quiet sample far in sample time resolves at once
    g = feed(hold_down_s=60.0, hold_down_samples=1)
    g(0.0, 0.7, two)
    g(5.0, 0.7, two)
    assert [e.event for e in g(5.0 + 3600.0, *QUIET)] == ["resolve"]


def test_severity_hysteresis(feed):
    f = feed(critical_threshold=0.8, critical_clear=0.7, critical_kinds=3)
    two = [1.0, 1.0, 0.0]
    f(0.0, 0.85, two)
    (op,) = f(5.0, 0.85, two)
    assert op.alert.severity == "critical"
    assert f(10.0, 0.75, two) == []  # below critical_threshold, above critical_clear: stays critical
    assert f(15.0, 0.70, two) == []  # at critical_clear: stays
    (down,) = f(20.0, 0.65, two)
    assert down.event == "update" and down.alert.severity == "warning"
    assert f(25.0, 0.75, two) == []  # back up, but not to critical_threshold: warning stays
    (up,) = f(30.0, 0.6, [1.0, 1.0, 1.0])  # three kinds agree: critical whatever the score
    assert up.alert.severity == "critical"


def test_critical_at_open_from_kinds(feed):
    f = feed()
    three = [1.0, 1.0, 1.0]
    f(0.0, 0.6, three)
    (op,) = f(5.0, 0.6, three)
    assert op.alert.severity == "critical" and op.alert.kinds == ("drift", "rule", "spike")


def test_ready_mask_blocks_opening(feed):
    f = feed()
    two = [1.0, 1.0, 0.0]
    for i in range(10):
        assert f(5.0 * i, 0.9, two, ready=False) == []
    assert f(50.0, 0.9, two, ready=True) == []  # confirmation starts when ready
    assert [e.event for e in f(55.0, 0.9, two)] == ["open"]


def test_several_endpoints_one_tick_events_in_endpoint_order(composite):
    pol = AlertPolicy()
    eps = np.array(["z", "a", "m"], dtype=object)
    d = [[1.0, 1.0, 0.0], [1.0, 1.0, 0.0], [0.45, 0.0, 0.0]]
    for t in (0.0, 5.0):  # "m": evidence of one kind, composite below open_threshold
        ev = pol.update(eps, np.full(3, t), composite([0.7, 0.7, 0.45], d, KINDS))
    assert [(e.event, e.alert.endpoint_id) for e in ev] == [("open", "z"), ("open", "a")]
    assert ev[0].alert.alert_id != ev[1].alert.alert_id


def test_evidence_sorted_by_contribution_and_reported_above_threshold(composite):
    pol = AlertPolicy(AlertPolicyConfig(evidence_report_threshold=0.9))
    for t in (0.0, 5.0):
        ev = pol.update(np.array(["a"], dtype=object), np.array([t]),
                        composite([0.8], [[0.999, 1.0, 0.89]], KINDS))
    (op,) = ev
    assert [e.detector for e in op.alert.evidence] == ["det_spike", "det_rule"]
    assert all(e.score >= 0.9 for e in op.alert.evidence)
    assert op.alert.evidence[0].contribution >= op.alert.evidence[1].contribution
    assert {e.kind for e in op.alert.evidence} == {"rule", "spike"}


def test_drop_resolves_open_alerts(composite):
    pol = AlertPolicy()
    for t in (0.0, 5.0):
        pol.update(np.array(["a", "b"], dtype=object), np.array([t, t]),
                   composite([0.7, 0.45], [[1.0, 1.0, 0.0], [0.45, 0.0, 0.0]], KINDS))
    events = pol.drop(["a", "b", "unknown"], 99.0)
    assert [(e.event, e.alert.endpoint_id, e.alert.resolved_ts) for e in events] == [("resolve", "a", 99.0)]
    assert pol.open_alerts() == []


@pytest.mark.parametrize("mapping, words", [
    ({"open_treshold": 0.5}, ["open_treshold"]),
    ({"open_threshold": 1.5}, ["open_threshold", "1.5"]),
    ({"evidence_threshold": -0.1}, ["evidence_threshold", "-0.1"]),
    ({"hold_down_s": -1}, ["hold_down_s", "-1"]),
    ({"critical_clear": 0.9, "critical_threshold": 0.8}, ["critical_clear", "0.9"]),
    ({"confirm_samples": "two"}, ["alerts", "two"]),
])
def test_config_errors_name_key_and_value(mapping, words):
    with pytest.raises(OcadConfigError) as ei:
        AlertPolicyConfig.from_mapping(mapping)
    for w in words:
        assert w in str(ei.value)


# -- properties -----------------------------------------------------------------------------------------

SCORES = [np.nan, 0.0, 0.5, 0.9, 0.95, 0.996, 0.999, 1.0]
EPS = ["e0", "e1", "e2"]


@st.composite
def streams(draw):
    n = draw(st.integers(1, 40))
    ticks = []
    t = 1_000.0
    for _ in range(n):
        t += draw(st.sampled_from([1.0, 5.0, 5.0, 30.0, 61.0]))
        eps = draw(st.lists(st.sampled_from(EPS), unique=True, min_size=1))
        comp = [draw(st.sampled_from([np.nan, 0.1, 0.5, 0.56, 0.75, 0.9])) for _ in eps]
        dets = [[draw(st.sampled_from(SCORES)) for _ in KINDS] for _ in eps]
        ready = [draw(st.booleans()) or draw(st.booleans()) for _ in eps]
        ticks.append((eps, t, comp, dets, ready))
    cfg = AlertPolicyConfig(confirm_samples=draw(st.integers(0, 3)),
                            min_kinds=draw(st.integers(1, 2)),
                            hold_down_s=draw(st.sampled_from([0.0, 30.0, 60.0])),
                            hold_down_samples=draw(st.integers(0, 3)),
                            update_min_interval_s=draw(st.sampled_from([0.0, 30.0])))
    return cfg, ticks, draw(st.integers(0, n))


def run(policy: AlertPolicy, composite, ticks) -> list:
    out = []
    for eps, t, comp, dets, ready in ticks:
        ev = policy.update(np.array(eps, dtype=object), np.full(len(eps), t), composite(comp, dets, KINDS),
                           ready=np.array(ready))
        out.append([e.to_dict() for e in ev])
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=streams())
def test_event_grammar_unique_ids_and_state_round_trip(composite, data):
    cfg, ticks, split = data
    pol = AlertPolicy(cfg)
    per_tick = run(pol, composite, ticks)
    names = {f"det_{k}" for k in KINDS}
    state: dict[str, str | None] = {}  # endpoint → open alert id
    opened: set[str] = set()
    last_active: dict[str, float] = {}
    quiet: dict[str, int] = {}  # consecutive inactive samples of each endpoint
    for (eps, t, comp, dets, _), events in zip(ticks, per_tick):
        for i, e in enumerate(eps):
            if np.nan_to_num(comp[i]) >= cfg.clear_threshold:  # active: composite >= clear_threshold
                last_active[e] = t
                quiet[e] = 0
            else:
                quiet[e] = quiet.get(e, 0) + 1
        assert [ev["endpoint_id"] for ev in events] == [e for e in eps if e in {ev["endpoint_id"] for ev in events}]
        for ev in events:
            e, aid = ev["endpoint_id"], ev["alert_id"]
            assert ev["ts"] == t
            assert {x["detector"] for x in ev["evidence"]} <= names
            assert all(x["kind"] == x["detector"][4:] for x in ev["evidence"])
            if ev["event"] == "open":
                assert state.get(e) is None, "open while an alert is open"
                assert aid not in opened, "alert ids must be unique"
                assert len(ev["kinds"]) >= cfg.min_kinds and ev["score"] >= cfg.open_threshold
                assert ev["resolved_ts"] is None and ev["opened_ts"] == t
                state[e] = aid
                opened.add(aid)
            elif ev["event"] == "update":
                assert state.get(e) == aid and ev["resolved_ts"] is None
            else:
                assert ev["event"] == "resolve" and state.get(e) == aid
                assert ev["resolved_ts"] == t and t - last_active[e] >= cfg.hold_down_s
                assert quiet[e] >= max(cfg.hold_down_samples, 1)
                state[e] = None
    assert {a.alert_id for a in pol.open_alerts()} == {a for a in state.values() if a}
    assert pol.counts["open"] == len(opened)

    # snapshot mid-stream (through JSON), restore into a fresh policy: identical subsequent events
    first = AlertPolicy(cfg)
    run(first, composite, ticks[:split])
    restored = AlertPolicy(cfg)
    restored.load_state(json.loads(json.dumps(first.state())))
    assert run(restored, composite, ticks[split:]) == per_tick[split:]
    assert restored.counts == pol.counts
