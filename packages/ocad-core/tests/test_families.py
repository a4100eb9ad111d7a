"""Generalization families (issue #16 item 8): deterministic, labelled, test-only, scored per family."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ocad.core import Alert, OcadConfigError
from ocad.core._metrics import ORAN_METRICS
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling._evaluation import match_events, roc_auc, summarize_matches
from ocad.core.tooling._quality import MonitorFactory, Suite, evaluate, format_evaluation, load_suite, tune_weights
from ocad.core.cli import main
from ocad.core.tooling._families import (
    FAMILIES,
    FAMILY_FAULT_TYPES,
    USER_METRIC,
    FamilyEvent,
    FamilyScenario,
    generate_family,
)

# Small sizes: long enough for the warm-up and a few faults of every family.
SMALL: dict[str, tuple[int, float]] = {n: (6, 4.0) for n in FAMILIES}
SMALL.update({"interval_1s": (4, 1.5), "interval_60s": (6, 30.0), "daily": (6, 48.0), "slow_drift": (8, 5.0),
              "planned_shift": (8, 6.0)})
ORAN = tuple(s.name for s in ORAN_METRICS)


def small(name: str, seed: int = 5, **kw: Any) -> Any:
    e, h = SMALL[name]
    return generate_family(name, seed, endpoints=e, hours=h, **kw)


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a == b) | (np.isnan(a) & np.isnan(b))


@pytest.mark.parametrize("name", list(FAMILIES))
def test_a_family_is_a_function_of_its_seed(name: str) -> None:
    a, b, c = small(name), small(name), small(name, seed=6)
    assert a.values.shape == (SMALL[name][0], len(a.ts), len(a.metrics))
    assert same(a.values, b.values).all() and (a.labels == b.labels).all() and (a.present == b.present).all()
    assert a.events == b.events
    assert not same(a.values, c.values).all()
    assert a.interval_s == FAMILIES[name].interval_s and np.allclose(np.diff(a.ts), a.interval_s)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_labels_mark_exactly_the_injected_faults(name: str) -> None:
    f, clean = small(name), small(name, faults=False)
    assert not clean.events and not clean.labels.any() and all(ep.healthy for ep in clean.endpoints)
    changed = (~same(f.values, clean.values)).any(axis=2)
    rows = {ep.endpoint_id: i for i, ep in enumerate(f.endpoints)}
    allowed = f.labels > 0
    covered = np.zeros_like(allowed)
    for ev in f.events:
        e = rows[ev.endpoint_id]
        lo, hi = np.searchsorted(f.ts, [ev.start_ts, ev.end_ts])
        assert (f.labels[e, lo:hi + 1] == 1 + FAMILY_FAULT_TYPES.index(ev.fault_type)).all()
        assert changed[e, lo:hi + 1].any(), ev  # every labelled fault changes the data
        assert not f.endpoints[e].healthy
        covered[e, lo:hi + 1] = True
        if ev.fault_type == "planned_shift":  # persistent: the new normal, unlabelled after its window
            allowed[e, lo:] = True
            assert ev.optional and ev.quiet_by_ts == ev.end_ts and ev.end_ts - ev.start_ts == pytest.approx(
                1800 - f.interval_s)
        if ev.fault_type == "slow_drift":
            assert ev.start_ts < ev.failure_ts <= ev.end_ts
            assert 3600 - f.interval_s <= ev.failure_ts - ev.start_ts <= 3 * 3600
    assert (covered == (f.labels > 0)).all()  # no labelled sample outside an event
    assert not (changed & ~allowed).any()  # nothing changed outside the labels
    healthy = [i for i, ep in enumerate(f.endpoints) if ep.healthy]
    assert not changed[healthy].any()


def test_every_family_has_faults_of_its_types_and_healthy_endpoints() -> None:
    want = {"student_t": {"spike", "step", "loss"}, "scale_100ms": {"spike", "step", "loss"},
            "interval_1s": {"spike", "step", "loss"}, "interval_60s": {"spike", "step", "loss"},
            "benign": set(), "daily": {"spike", "step", "loss"}, "drop": {"drop"},
            "planned_shift": {"planned_shift", "step"}, "slow_drift": {"slow_drift"},
            "microburst": {"microburst"}, "every_other": {"every_other"}, "single_metric_step": {"ecpri_step"}}
    assert set(want) == set(FAMILIES)
    suite = load_suite("generalization")
    for sc in suite.scenarios:  # the suite's fleets
        name, types = sc.name, want[sc.name]
        f = sc.fleet(suite.test_seeds[0])
        assert {e.fault_type for e in f.events} == types, name
        assert any(ep.healthy for ep in f.endpoints), name
        for t in types - {"planned_shift"}:
            assert sum(e.fault_type == t for e in f.events) >= 10, (name, t)


def test_benign_family_has_no_fault_but_blips_and_gaps() -> None:
    f = small("benign")
    assert f.events == () and not f.labels.any() and all(ep.healthy for ep in f.endpoints)
    # 20-minute maintenance gaps: no sample at all, the endpoint is left out of the tick.
    gap = int(round(1200 / f.interval_s))
    assert (~f.present).any()
    for e in range(len(f.endpoints)):
        miss = np.flatnonzero(~f.present[e])
        if miss.size:
            runs = np.split(miss, np.flatnonzero(np.diff(miss) > 1) + 1)
            assert all(len(r) % gap == 0 for r in runs)  # one gap, or two that touch
    t = int(np.flatnonzero(~f.present.all(axis=0))[0])
    ids, ts, cols = f.columns(t)
    assert len(ids) == f.present[:, t].sum() < len(f.endpoints) and all(len(v) == len(ids) for v in cols.values())
    assert f.endpoint_days == pytest.approx(f.present.sum() * f.interval_s / 86400)
    # One-sample blips x3-6 on top of the noise.
    clean = (f.values[:, :, 0] / np.array([ep.baselines["udp_echo_rtt_ms"] for ep in f.endpoints])[:, None])
    assert np.nanmax(clean) > 2.5


def test_family_scales_intervals_and_metrics() -> None:
    st = generate_family("student_t", 1, endpoints=40, hours=1.0)
    rtt = [ep.baselines["udp_echo_rtt_ms"] for ep in st.endpoints]
    ecpri = [ep.baselines["ecpri_delay_us"] for ep in st.endpoints]
    assert 0.15 <= min(rtt) and max(rtt) <= 3.0 and 20 <= min(ecpri) and max(ecpri) <= 150
    big = generate_family("scale_100ms", 1, endpoints=40, hours=1.0)
    assert max(ep.baselines["udp_echo_rtt_ms"] for ep in big.endpoints) <= 100.0
    assert max(ep.baselines["udp_echo_rtt_ms"] for ep in big.endpoints) > 40.0
    assert generate_family("interval_1s", 1, endpoints=2, hours=0.1).interval_s == 1.0
    assert generate_family("interval_60s", 1, endpoints=2, hours=2).interval_s == 60.0
    daily = generate_family("daily", 1, endpoints=2)
    assert daily.interval_s == 60.0 and daily.ts[-1] - daily.ts[0] >= 2 * 86400 - 60
    drop = small("drop")
    assert drop.metrics == (USER_METRIC,) and USER_METRIC not in ORAN
    spec = drop.user_metrics[USER_METRIC]
    assert "higher_is_worse" not in spec  # no declared direction
    for ev in drop.events:
        e = [ep.endpoint_id for ep in drop.endpoints].index(ev.endpoint_id)
        lo, hi = np.searchsorted(drop.ts, [ev.start_ts, ev.end_ts])
        ratio = np.nanmedian(drop.values[e, lo:hi + 1, 0]) / drop.endpoints[e].baselines[USER_METRIC]
        assert 0.35 < ratio < 0.65  # halved


def test_fault_shapes() -> None:
    mb, clean = small("microburst"), small("microburst", faults=False)
    ch = (~same(mb.values, clean.values)).any(axis=2)
    for ev in mb.events:
        e = [ep.endpoint_id for ep in mb.endpoints].index(ev.endpoint_id)
        lo, hi = np.searchsorted(mb.ts, [ev.start_ts, ev.end_ts])
        at = np.flatnonzero(ch[e, lo:hi + 1]) * mb.interval_s
        assert ev.end_ts - ev.start_ts == pytest.approx(600 - mb.interval_s)
        assert 14 <= at.size <= 25 and np.diff(at).min() >= 20 and np.diff(at).max() <= 45  # every 25-40 s
    eo, clean = small("every_other"), small("every_other", faults=False)
    ch = (~same(eo.values, clean.values)).any(axis=2)
    for ev in eo.events:
        e = [ep.endpoint_id for ep in eo.endpoints].index(ev.endpoint_id)
        lo, hi = np.searchsorted(eo.ts, [ev.start_ts, ev.end_ts])
        assert (np.diff(np.flatnonzero(ch[e, lo:hi + 1])) == 2).all()
    ss, clean = small("single_metric_step"), small("single_metric_step", faults=False)
    diff = ~same(ss.values, clean.values)
    assert diff[:, :, ss.metrics.index("ecpri_delay_us")].any()
    assert not np.delete(diff, ss.metrics.index("ecpri_delay_us"), axis=2).any()  # eCPRI only


# -- scoring ------------------------------------------------------------------------------
def _alert(aid: str, opened: float, resolved: float | None, ep: str = "a") -> Alert:
    return Alert(alert_id=aid, endpoint_id=ep, opened_ts=opened, updated_ts=opened if resolved is None else resolved,
                 resolved_ts=resolved, severity="warning", score=0.9, peak_score=0.9, kinds=("x",), evidence=())


def test_a_planned_shift_may_alert_once_then_must_be_quiet() -> None:
    shift = FamilyEvent("a", "planned_shift", 1000.0, 2800.0, None, (), "planned_shift", True, 2800.0)
    step = FamilyEvent("a", "step", 6000.0, 6600.0, None, (), "planned_shift")
    kw: dict[str, Any] = {"end_ts": 9000.0, "grace_s": 120.0}
    # No alert at the shift: not a miss (the step is the only event in recall).
    m, f = match_events([_alert("s", 6010, 6700)], [shift, step], **kw)
    s = summarize_matches(m, f, 1, 1.0)
    assert s["events"] == 1 and s["event_recall"] == 1.0 and s["per_fault_type"]["planned_shift"]["recall"] is None
    assert s["per_fault_type"]["planned_shift"]["optional"] and not f
    # One alert that resolves within the window: a true alert, the shift "detected".
    m, f = match_events([_alert("1", 1005, 1300), _alert("s", 6010, 6700)], [shift, step], **kw)
    assert not f and [x.detected for x in m] == [True, True]
    # A second alert in the window is false; so is an alert that stays open past the window.
    m, f = match_events([_alert("1", 1005, 1300), _alert("2", 2000, 2100)], [shift], **kw)
    assert [a.alert_id for a in f] == ["2"]
    m, f = match_events([_alert("1", 1005, None)], [shift], **kw)
    assert [a.alert_id for a in f] == ["1"] and not m[0].detected
    m, f = match_events([_alert("1", 1005, 2800 + 121)], [shift], **kw)
    assert [a.alert_id for a in f] == ["1"]
    # An alert that covers a real fault too stays true.
    m, f = match_events([_alert("1", 1005, None)], [shift, step], **kw)
    assert not f and m[1].detected


def test_tuner_refuses_the_generalization_families(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = load_suite("generalization")
    assert suite.test_only and suite.tune_seeds == () and set(suite.families) == set(FAMILIES)
    with pytest.raises(OcadConfigError, match="test-only"):
        tune_weights(suite)
    with pytest.raises(OcadConfigError, match="test-only"):
        tune_weights("generalization", seeds=[1])
    with pytest.raises(OcadConfigError, match="test-only"):
        suite.runs("tune")
    # A hand-made suite object that claims tuning seeds for a family is refused as well.
    sneaky = Suite.__new__(Suite)
    for k, v in {"name": "x", "scenarios": (FamilyScenario("benign"),), "tune_seeds": (1,), "test_seeds": (2,),
                 "description": "", "source": "", "test_only": False}.items():
        object.__setattr__(sneaky, k, v)
    with pytest.raises(OcadConfigError, match="test-only"):
        tune_weights(sneaky)
    # And a TOML suite cannot hold families with tuning seeds.
    p = tmp_path / "s.toml"
    p.write_text('[suite]\nname="s"\n[seeds]\ntune=[1]\ntest=[2]\n[[families]]\nname="drop"\n', encoding="utf-8")
    with pytest.raises(OcadConfigError, match="test-only"):
        load_suite(p)
    rc = main(["tune-weights", "--suite", "generalization", "--out", str(tmp_path / "t.toml"), "-q"])
    assert rc == 2 and "test-only" in capsys.readouterr().err and not (tmp_path / "t.toml").exists()


SMALL_SUITE = """
[suite]
name = "gen-small"
test_only = true
[seeds]
test = [3]
[[families]]
name = "planned_shift"
endpoints = 5
hours = 3.5
[[families]]
name = "drop"
endpoints = 3
hours = 1.5
[[families]]
name = "benign"
endpoints = 3
hours = 1.0
"""


@pytest.fixture(scope="module")
def gen_small(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    p = tmp_path_factory.mktemp("gen") / "gen.toml"
    p.write_text(SMALL_SUITE, encoding="utf-8")
    # Core detectors without the changepoint detector (the slow one): this tests the plumbing, not the numbers.
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "detectors": {"changepoint": {"enabled": False}}},
                         registry=PluginRegistry(autoload=False))
    return {"path": p, "factory": fac, "evaluation": evaluate(p, factory=fac, ablation="none")}


def test_evaluate_reports_every_family_and_fault_type(gen_small: dict[str, Any]) -> None:
    m = json.loads(gen_small["evaluation"].to_json())
    fams = m["families"]
    assert list(fams) == ["planned_shift", "drop", "benign"] and m["source"]["families"] == list(fams)
    for name, row in fams.items():
        for k in ("event_precision", "event_recall", "event_f1", "false_alerts_per_endpoint_day",
                  "lead_time_p50_s", "roc_auc", "events", "detected", "misses", "per_fault_type"):
            assert k in row, (name, k)
    assert fams["benign"]["events"] == 0 and fams["benign"]["per_fault_type"] == {}
    assert fams["benign"]["roc_auc"] is None  # no positive sample
    assert set(fams["planned_shift"]["per_fault_type"]) == {"planned_shift", "step"}
    assert fams["planned_shift"]["per_fault_type"]["planned_shift"]["optional"]
    assert fams["drop"]["per_fault_type"]["drop"]["event_precision"] == fams["drop"]["event_precision"]
    # Chance recall: what alerts at random at the family's false-alert rate would detect.
    ps = fams["planned_shift"]
    days, fa = ps["endpoint_days"], ps["false_alerts"]
    steps = [e for r in gen_small["evaluation"].results for e in r.run.events if e.fault_type == "step"]
    want = np.mean([1 - np.exp(-fa / (days * 86400) * (e.end_ts - e.start_ts + 120)) for e in steps])
    assert ps["per_fault_type"]["step"]["chance_recall"] == pytest.approx(want)
    assert ps["per_fault_type"]["planned_shift"]["chance_recall"] is None
    text = format_evaluation(m)
    for name in fams:
        assert f"\n{name:<19}all" in text
    assert "planned_shift*" in text


def test_family_runs_feed_what_the_fleet_holds(gen_small: dict[str, Any]) -> None:
    res = {r.run.meta["family"]: r for r in gen_small["evaluation"].results}
    for name, r in res.items():
        ((_, fleet),) = r.run.data["fleets"]
        assert r.cache.ts.size == int(fleet.present.sum())  # maintenance gaps: no sample scored
    # The drop family's Monitor declared the user metric and scored it.
    drop = res["drop"]
    assert drop.run.meta["user_metrics"] == {USER_METRIC: dict(FAMILIES["drop"].user_metrics[USER_METRIC])}
    assert np.isfinite(drop.cache.composite).any()


def test_family_roc_auc_matches_sklearn(gen_small: dict[str, Any]) -> None:
    sk = pytest.importorskip("sklearn.metrics")
    ev = gen_small["evaluation"]
    r = next(x for x in ev.results if x.run.meta["family"] == "planned_shift")
    part = r.part()
    names = r.run.labels.names
    assert (part.codes != names.index("planned_shift")).all()  # optional samples left out
    s = np.nan_to_num(part.composite, nan=0.0)
    fam = ev.metrics["families"]["planned_shift"]
    assert fam["roc_auc"] == pytest.approx(sk.roc_auc_score(part.codes > 0, s))
    k = names.index("step")
    sel = (part.codes == 0) | (part.codes == k)
    assert fam["per_fault_type"]["step"]["roc_auc"] == pytest.approx(sk.roc_auc_score(part.codes[sel] == k, s[sel]))
    # Ties: a constant score is 0.5 however many samples tie.
    assert roc_auc([0, 1, 0, 1, 1], [0.3] * 5) == 0.5


def test_family_selection(gen_small: dict[str, Any], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    one = evaluate(gen_small["path"], factory=gen_small["factory"], ablation="none", families=["benign"])
    assert list(one.metrics["families"]) == ["benign"]
    with pytest.raises(OcadConfigError, match="not in suite"):
        evaluate(gen_small["path"], factory=gen_small["factory"], families=["nope"])
    with pytest.raises(OcadConfigError, match="not in suite"):
        load_suite("default").runs("test", families=["benign"])
    out = tmp_path / "o.json"
    rc = main(["evaluate", "--suite", str(gen_small["path"]), "--family", "benign", "--core-only", "-q",
               "--ablation", "none", "--json", str(out)])
    assert rc == 0 and list(json.loads(out.read_text())["families"]) == ["benign"]
    assert "benign             all" in capsys.readouterr().out
    from ocad.core.cli import _families, build_parser

    args = build_parser().parse_args(["evaluate", "--suite", "generalization", "--family", "drop", "benign",
                                      "--family", "microburst,daily"])
    assert _families(args) == ["drop", "benign", "microburst", "daily"]


def test_unknown_family_names_are_refused(tmp_path: Path) -> None:
    with pytest.raises(OcadConfigError, match="not a scenario family"):
        FamilyScenario.from_mapping({"name": "nope"}, "here")
    with pytest.raises(OcadConfigError, match="unknown key"):
        FamilyScenario.from_mapping({"name": "drop", "interval_s": 3}, "here")
    with pytest.raises(OcadConfigError, match="no scenario family"):
        generate_family("nope")
