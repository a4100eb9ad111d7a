"""Quality harness: metrics on hand-made cases, suites and seed hygiene, evaluate / tune-weights end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from ocad.core import Alert, Monitor, OcadConfigError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet
from ocad.core.tooling._evaluation import (
    LabelledEvent,
    alert_open_mask,
    event_f1,
    events_from_labels,
    forecast_errors,
    match_events,
    point_metrics,
    pr_auc,
    roc_auc,
    summarize_matches,
)
from ocad.core.tooling._quality import (
    LabelledRun,
    MonitorFactory,
    Suite,
    evaluate,
    format_evaluation,
    load_labelled_file,
    load_suite,
    replay_alerts,
    score_run,
    tune_weights,
)
from ocad.core.cli import main

STABLE_KEYS = {"precision", "recall", "f1", "false_alarm_rate", "roc_auc", "pr_auc", "event_precision",
               "event_recall", "event_f1", "lead_time_p50_s", "mttd_s", "false_alerts_per_endpoint_day",
               "per_fault_type", "ablation", "forecaster", "runs", "targets", "source", "detectors"}

TINY_SUITE = """
[suite]
name = "tiny"
interval_s = 5.0
[seeds]
tune = [7]
test = [8]
[[scenarios]]
name = "small"
endpoints = 8
sites = 2
hours = 1.5
fault_rate_per_endpoint_day = 16.0
"""


def _alert(ep: str, opened: float, resolved: float | None, aid: str) -> Alert:
    return Alert(alert_id=aid, endpoint_id=ep, opened_ts=opened, updated_ts=opened, resolved_ts=resolved,
                 severity="warning", score=0.9, peak_score=0.9, kinds=("rule", "spike"), evidence=())


# -- event metrics on a hand-made case ----------------------------------------------------
def test_event_metrics_hand_made() -> None:
    events = [
        LabelledEvent("e1", "drift", 1000.0, 2000.0, failure_ts=1800.0),  # TP: ttd 300, lead 500
        LabelledEvent("e3", "spike", 500.0, 520.0),                       # TP: ttd 10
        LabelledEvent("e2", "ccm_loss", 3000.0, 3100.0),                  # FN: nothing overlaps
        LabelledEvent("e4", "drift", 100.0, 400.0, failure_ts=300.0),     # TP, alert after failure: lead -50
    ]
    alerts = [
        _alert("e1", 1300.0, 2100.0, "a1"),
        _alert("e1", 1500.0, 1600.0, "a2"),   # second alert on the same event: event counts once
        _alert("e1", 5000.0, 5100.0, "a3"),   # false
        _alert("e3", 510.0, None, "a4"),      # still open at the end
        _alert("e2", 3300.0, 3400.0, "a5"),   # after end + grace (120 s): false
        _alert("e4", 350.0, 450.0, "a6"),
        _alert("e4", 90.0, 99.0, "a7"),       # resolved before the start: false
    ]
    matches, false = match_events(alerts, events, end_ts=6000.0, grace_s=120.0)
    assert [m.detected for m in matches] == [True, True, False, True]
    assert [m.ttd_s for m in matches] == [300.0, 10.0, None, 250.0]
    assert [m.lead_time_s for m in matches] == [500.0, None, None, -50.0]
    assert sorted(a.alert_id for a in false) == ["a3", "a5", "a7"]
    s = summarize_matches(matches, false, len(alerts), endpoint_days=2.0)
    assert s["events"] == 4 and s["events_detected"] == 3
    assert s["event_recall"] == pytest.approx(0.75)
    assert s["event_precision"] == pytest.approx(4 / 7)
    assert s["mttd_s"] == pytest.approx((300 + 10 + 250) / 3)
    assert s["lead_time_p50_s"] == pytest.approx(225.0)  # median of 500 and -50
    assert s["false_alerts_per_endpoint_day"] == pytest.approx(1.5)
    assert s["per_fault_type"]["drift"]["recall"] == 1.0
    assert s["per_fault_type"]["ccm_loss"]["detected"] == 0
    assert event_f1(s) == pytest.approx(2 * 0.75 * (4 / 7) / (0.75 + 4 / 7))


def test_events_from_labels_runs_and_failure() -> None:
    ep = ["b"] * 4 + ["a"] * 6
    ts = [0, 5, 10, 15] + [25, 0, 5, 10, 15, 20]  # "a" out of order on purpose
    ft = ["spike", "spike", "", "spike"] + ["", "", "drift", "drift", "jitter", "jitter"]
    fail = [None] * 7 + [10.0, None, None]
    evs = events_from_labels(ep, ts, ft, fail)
    got = [(e.endpoint_id, e.fault_type, e.start_ts, e.end_ts, e.failure_ts) for e in evs]
    assert got == [("b", "spike", 0.0, 5.0, None), ("a", "drift", 5.0, 10.0, 10.0),
                   ("a", "jitter", 15.0, 20.0, None), ("b", "spike", 15.0, 15.0, None)]


# -- point metrics ------------------------------------------------------------------------
def test_point_metrics_on_a_timeline() -> None:
    ts = np.arange(0, 100, 5, dtype=float)           # 20 samples of one endpoint
    ep = np.array(["x"] * 20 + ["y"] * 20, dtype=object)
    t = np.r_[ts, ts]
    actual = np.zeros(40, bool)
    actual[(ep == "x") & (t >= 20) & (t <= 40)] = True   # 20, 25, 30, 35, 40
    alerts = [_alert("x", 25.0, 50.0, "a"), _alert("y", 90.0, None, "b")]
    pred = alert_open_mask(alerts, ep, t)
    # Open from the opening sample up to (not including) the resolving one.
    assert t[pred & (ep == "x")].tolist() == [25.0, 30.0, 35.0, 40.0, 45.0]
    assert t[pred & (ep == "y")].tolist() == [90.0, 95.0]
    m = point_metrics(actual, pred)
    assert (m["tp"], m["fp"], m["fn"], m["tn"]) == (4, 3, 1, 32)
    assert m["precision"] == pytest.approx(4 / 7)
    assert m["recall"] == pytest.approx(4 / 5)
    assert m["f1"] == pytest.approx(2 * 4 / (2 * 4 + 3 + 1))
    assert m["false_alarm_rate"] == pytest.approx(3 / 35)
    assert math.isnan(point_metrics([0, 0], [0, 0])["precision"])


def test_auc_small_known_values() -> None:
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)  # a tie counts one half
    assert roc_auc([1, 1, 0], [0.9, 0.8, 0.1]) == 1.0
    assert math.isnan(roc_auc([1, 1], [0.2, 0.3]))
    assert pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx((1.0 + 2 / 3) / 2)
    assert pr_auc([1, 0, 0], [0.9, 0.1, 0.2]) == 1.0
    assert math.isnan(pr_auc([0, 0], [0.1, 0.2]))


def test_auc_matches_sklearn_on_random_data() -> None:
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for n, rate, ties in ((50, 0.3, False), (2000, 0.05, True), (777, 0.5, True)):
        y = rng.random(n) < rate
        s = rng.random(n) + 0.4 * y
        if ties:
            s = np.round(s, 1)
        assert roc_auc(y, s) == pytest.approx(sk.roc_auc_score(y, s), abs=1e-12)
        assert pr_auc(y, s) == pytest.approx(sk.average_precision_score(y, s), abs=1e-12)


def test_forecast_errors_known_values() -> None:
    r = forecast_errors([1.0, 2.0, 3.0, np.nan], [1.0, 2.0, 4.0, 5.0])
    assert r["n"] == 3
    assert r["mse"] == pytest.approx(1 / 3)
    assert r["mae"] == pytest.approx(1 / 3)
    assert r["rmse"] == pytest.approx(math.sqrt(1 / 3))
    assert r["r2"] == pytest.approx(1 - 1 / 2)  # SST around mean 2 = 2
    assert forecast_errors([], [])["mse"] is None


# -- suites and seed hygiene --------------------------------------------------------------
def test_default_suite_seeds_disjoint_and_covers_every_fault_type() -> None:
    from ocad.core.tooling import FAULT_TYPES

    s = load_suite("default")
    assert s.tune_seeds and s.test_seeds
    assert not set(s.tune_seeds) & set(s.test_seeds)
    assert len(s.scenarios) >= 2 and {sc.faults for sc in s.scenarios} == {True}
    assert set(FAULT_TYPES) >= {"drift", "site_wide"}


def test_suite_refuses_overlapping_seeds(tmp_path: Path) -> None:
    p = tmp_path / "bad.toml"
    p.write_text(TINY_SUITE.replace("test = [8]", "test = [8, 7]"), encoding="utf-8")
    with pytest.raises(OcadConfigError, match=r"both tuning and test"):
        load_suite(p)
    with pytest.raises(OcadConfigError, match="no suite named"):
        load_suite("no-such-suite")


def test_tune_weights_refuses_test_seeds(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    suite = load_suite("default")
    with pytest.raises(OcadConfigError, match="test seeds"):
        tune_weights(suite, seeds=[suite.tune_seeds[0], suite.test_seeds[0]])
    rc = main(["tune-weights", "--suite", "default", "--seeds", str(suite.test_seeds[-1]),
               "--out", str(tmp_path / "t.toml"), "-q"])
    assert rc == 2  # a config error: usage (docs/cli.md)
    assert "test seeds" in capsys.readouterr().err
    assert not (tmp_path / "t.toml").exists()


# -- end to end on a tiny suite -------------------------------------------------------------
@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    p = tmp_path_factory.mktemp("suite") / "tiny.toml"
    p.write_text(TINY_SUITE, encoding="utf-8")
    reg = PluginRegistry(autoload=False)
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}}, registry=reg)
    return {"path": p, "suite": load_suite(p), "factory": fac, "evaluation": evaluate(p, factory=fac)}


def test_evaluate_tiny_suite_has_every_stable_key(tiny: dict[str, Any]) -> None:
    m = json.loads(tiny["evaluation"].to_json())
    assert STABLE_KEYS <= set(m)
    assert m["source"]["split"] == "test" and m["source"]["seeds"] == [8]
    assert m["events"] == sum(r["events"] for r in m["per_fault_type"].values()) > 0
    for k in ("precision", "recall", "f1", "false_alarm_rate", "event_precision", "event_recall"):
        assert 0.0 <= m[k] <= 1.0, k
    assert m["lead_time_fault_types"] == ["drift"]
    rows = {r["row"]: r for r in m["ablation"]}
    assert list(rows) == ["rule only", "+ changepoint", "+ residual", "+ multivariate", "full composite"]
    assert rows["+ residual"]["status"] == rows["+ multivariate"]["status"] == "not installed"
    # the default policy needs one kind of evidence (min_kinds 1): no row has it lowered, so no note
    assert all(rows[k]["min_kinds"] == 1 and "note" not in rows[k] for k in ("rule only", "+ changepoint",
                                                                               "full composite"))
    assert rows["+ changepoint"]["detectors"] == ["rule", "changepoint"]
    assert rows["full composite"]["event_f1"] == m["event_f1"]
    assert m["forecaster"]["status"] == "not installed"
    assert {t["key"] for t in m["targets"]} >= {"event_precision", "lead_time_p50_s", "full_vs_rule_event_f1"}
    text = format_evaluation(m)
    assert "ablation (replay)" in text and "+ residual       not installed" in text


def test_ablation_notes_a_lowered_min_kinds(tiny: dict[str, Any]) -> None:
    # With a policy that needs two kinds (min_kinds = 2), a one-detector row could never alert:
    # its min_kinds is lowered to 1, and the row says so; rows with two kinds keep 2.
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "alerts": {"min_kinds": 2}},
                         registry=PluginRegistry(autoload=False))
    m = json.loads(evaluate(tiny["path"], factory=fac).to_json())
    rows = {r["row"]: r for r in m["ablation"]}
    assert rows["rule only"]["min_kinds"] == 1
    assert "min_kinds" in rows["rule only"]["note"] and "from 2 to 1" in rows["rule only"]["note"]
    assert rows["+ changepoint"]["min_kinds"] == 2 and "note" not in rows["+ changepoint"]
    assert rows["full composite"]["min_kinds"] == 2 and "note" not in rows["full composite"]


def test_point_metrics_are_consistent_with_the_run(tiny: dict[str, Any]) -> None:
    ev = tiny["evaluation"]
    (r,) = ev.results
    pred = alert_open_mask(r.alerts, r.cache.endpoint_id, r.cache.ts)
    assert point_metrics(r.actual, pred)["f1"] == pytest.approx(ev.metrics["f1"])
    ((prefix, fleet),) = r.run.data["fleets"]
    assert prefix == "small/" and all(e.endpoint_id.startswith(prefix) for e in r.run.events)
    assert r.cache.ts.size == fleet.labels.size and r.actual.sum() == (fleet.labels > 0).sum()


def test_replay_equals_the_monitor(tiny: dict[str, Any]) -> None:
    (r,) = tiny["evaluation"].results
    key = lambda a: (a.endpoint_id, a.opened_ts, a.resolved_ts, a.severity, a.kinds, a.peak_score)  # noqa: E731
    assert [key(a) for a in replay_alerts(r.cache)] == [key(a) for a in r.alerts]
    # An ablation row replayed == a Monitor built with the other detectors disabled.
    others = [n for n in r.cache.names if n != "rule"]
    mon = tiny["factory"](disable=others, alerts={"min_kinds": 1})
    assert [d.name for d in mon.detectors] == ["rule"] and mon.window == 32
    real = score_run(r.run, mon)
    cfg = attrs.evolve(mon.config.alerts, min_kinds=1)
    # The per-endpoint self-calibration learns only from samples the *whole* composite found
    # unsuspicious (contamination guard), so a rule-only Monitor calibrates the rule detector on
    # slightly different samples than the full one whose p-values the cache holds: the same alerts,
    # peak scores within 0.01.
    got = replay_alerts(r.cache, detectors=["rule"], alerts=cfg)
    assert [key(a)[:5] for a in got] == [key(a)[:5] for a in real.alerts] and len(got) >= 5
    for a, b in zip(got, real.alerts):
        assert a.peak_score == pytest.approx(b.peak_score, abs=0.01)
    # Without self-calibration, detectors are pure functions of the window: the replay is exact.
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "selfcal": {"enabled": False}},
                         registry=PluginRegistry(autoload=False))
    (r2,) = evaluate(tiny["path"], factory=fac).results
    assert [key(a) for a in replay_alerts(r2.cache)] == [key(a) for a in r2.alerts]
    mon2 = fac(disable=others, alerts={"min_kinds": 1})
    assert [key(a) for a in replay_alerts(r2.cache, detectors=["rule"], alerts=cfg)] == \
        [key(a) for a in score_run(r2.run, mon2).alerts]


def test_labelled_file_gives_the_same_events(tmp_path: Path) -> None:
    fleet = generate_fleet(6, 3600, 5.0, seed=21, fault_rate_per_endpoint_day=24)
    p = tmp_path / "lab.csv"
    fleet.write_csv(p)
    run = load_labelled_file(p)
    want = sorted((e.endpoint_id, e.fault_type, e.start_ts, e.end_ts) for e in fleet.events)
    assert sorted((e.endpoint_id, e.fault_type, e.start_ts, e.end_ts) for e in run.events) == want
    # Labels line up sample by sample with the fleet's.
    ep = np.repeat(fleet.endpoint_ids(), len(fleet.ts))
    ts = np.tile(fleet.ts, len(fleet.endpoints))
    codes = run.labels.lookup(ep, ts)
    assert ((codes > 0) == (fleet.labels.ravel() > 0)).all()
    evj = tmp_path / "events.json"
    evj.write_text(json.dumps(fleet.events_table()), encoding="utf-8")
    assert [e.failure_ts for e in load_labelled_file(p, evj).events if e.fault_type == "drift"] == \
        [e.failure_ts for e in fleet.events if e.fault_type == "drift"]


def test_labelled_file_needs_fault_type(tmp_path: Path) -> None:
    p = tmp_path / "x.csv"
    p.write_text("endpoint_id,ts,udp_echo_rtt_ms\na,0,1.0\n", encoding="utf-8")
    with pytest.raises(Exception, match="fault_type"):
        load_labelled_file(p)


def test_tune_weights_writes_a_loadable_config(tiny: dict[str, Any], tmp_path: Path) -> None:
    # Without the changepoint detector (the slow one): this tests the mechanics, not the numbers.
    fast = MonitorFactory({"monitor": {"use_shipped_models": False}, "detectors": {"changepoint": {"enabled": False}}},
                          registry=PluginRegistry(autoload=False))
    res = tune_weights(tiny["suite"], factory=fast, rounds=1, weight_grid=(0.5, 1.0),
                       alert_grid={"open_threshold": (0.45, 0.55), "confirm_samples": (1, 2)})
    assert res.seeds == (7,)
    def feasible(m: dict[str, Any]) -> bool:
        return m["false_alerts_per_endpoint_day"] <= 1.0 and m["false_alarm_rate"] <= 0.05

    assert feasible(res.before) and feasible(res.after)
    assert res.after["event_f1"] >= res.before["event_f1"]
    assert (res.max_false_alerts_per_endpoint_day, res.max_false_alarm_rate) == (1.0, 0.05)
    out = res.write(tmp_path / "tuned.toml")
    mon = Monitor(out, registry=PluginRegistry(autoload=False))
    assert "changepoint" not in res.weights
    assert dict(zip(mon.composite.names, mon.composite.weights.tolist())) == {**res.weights, "changepoint": 1.0}
    assert mon.config.alerts.open_threshold == res.alerts["open_threshold"]
    assert mon.config.alerts.confirm_samples == res.alerts["confirm_samples"]
    text = out.read_text(encoding="utf-8")
    assert "tuning seeds [7]" in text and "false-alarm rate <= 0.05" in text


def test_cli_evaluate_writes_json(tiny: dict[str, Any], tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out.json"
    cfg = tmp_path / "fast.toml"
    cfg.write_text("[detectors.changepoint]\nenabled = false\n", encoding="utf-8")
    rc = main(["evaluate", "--suite", str(tiny["path"]), "--core-only", "-q", "--ablation", "none",
               "--config", str(cfg), "--json", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "fault type" in text and "targets" in text
    m = json.loads(out.read_text(encoding="utf-8"))
    assert {"precision", "recall", "f1", "false_alarm_rate", "lead_time_p50_s", "mttd_s",
            "false_alerts_per_endpoint_day"} <= set(m)


def test_suite_runs_are_deterministic_and_share_ticks() -> None:
    base = load_suite("default").scenarios
    s = Suite("x", (base[0], attrs.evolve(base[0], name="other", endpoints=3)), (1,), (2,))
    (a,), (b,) = s.runs("test"), s.runs("test")
    assert a.meta == {"seed": 2, "scenarios": ["busy", "other"], "fleet_seeds": [2000, 2001]}
    assert a.name == "seed2" and isinstance(a, LabelledRun)
    assert s.size("test") == (base[0].endpoints + 3) * int(base[0].hours * 720)
    (_, fa), (_, fo) = a.data["fleets"]
    (_, fb), _ = b.data["fleets"]
    assert np.array_equal(fa.values, fb.values, equal_nan=True) and fa.events == fb.events
    assert fa.ts[0] == 1_767_225_600.0 + base[0].start_hour * 3600
    assert len(a.data["endpoints"]) == base[0].endpoints + 3 and a.data["endpoints"][-1].startswith("other/")
    assert a.data["endpoint_days"] == pytest.approx((base[0].endpoints + 3) * base[0].hours / 24)
    # A different start hour is a different time grid: a run of its own.
    s2 = Suite("y", (base[0], attrs.evolve(base[0], name="night", start_hour=1.0)), (1,), (2,))
    assert [r.name for r in s2.runs("test")] == ["seed2/busy", "seed2/night"]


def test_clean_mask_excludes_windows_that_hold_a_fault() -> None:
    from ocad.core.tooling._quality import ScoreCache

    ep = np.array(["a", "b"] * 6, dtype=object)
    ts = np.repeat(np.arange(6) * 5.0, 2)
    actual = np.zeros(12, bool)
    actual[(ep == "a") & (ts == 10.0)] = True
    z = np.zeros(12)
    c = ScoreCache(names=(), kinds=(), weights=np.zeros(0), endpoint_id=ep, ts=ts, composite=z,
                   detector_scores=np.zeros((12, 0)), ready=np.ones(12, bool), bounds=np.arange(0, 13, 2), window=2)
    clean = c.clean(actual)
    assert ts[(ep == "a") & ~clean].tolist() == [10.0, 15.0]  # the fault and the next sample (window 2)
    assert clean[ep == "b"].all()


@attrs.define
class _OffByOneForecaster:
    """A fake residual detector: forecasts the newest value + 1 (known errors), scores nothing."""

    name: str = "residual"
    kind: str = "residual"
    metrics: tuple[str, ...] = ("udp_echo_rtt_ms",)
    window: int = 8

    def score(self, view: Any) -> Any:
        from ocad.core.plugins import DetectorOutput

        y = view.values[:, -1, view.metric_index("udp_echo_rtt_ms")].astype(float)[:, None]
        return DetectorOutput(scores=np.full(view.n, np.nan), metrics=self.metrics,
                              metric_scores=np.zeros_like(y), observed=y, expected=y + 1.0)


def test_forecaster_metrics_against_naive() -> None:
    fleet = generate_fleet(6, 3600, 5.0, seed=4)
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "detectors": {"changepoint": {"enabled": False}}},
                         registry=PluginRegistry(autoload=False), extra_detectors=(_OffByOneForecaster(),))
    fc = evaluate(LabelledRun.from_fleet(fleet), factory=fac, ablation="none").metrics["forecaster"]
    assert fc["status"] == "ok"
    r = fc["metrics"]["udp_echo_rtt_ms"]
    assert r["model"]["mse"] == pytest.approx(1.0) and r["model"]["mae"] == pytest.approx(1.0)
    # Naive = the previous value: recompute it from the fleet on the same kind of samples.
    v = fleet.values[:, :, fleet.metrics.index("udp_echo_rtt_ms")].astype(float)
    d = v[:, 1:] - v[:, :-1]
    clean = fleet.labels == 0
    ok = np.isfinite(d) & clean[:, 1:] & np.isfinite(v[:, 1:])
    for k in range(1, 33):  # the Monitor's window: no fault among the last 32 samples
        ok[:, k - 1:] &= clean[:, : clean.shape[1] - k]
    assert r["naive"]["n"] == r["model"]["n"] >= ok.sum()
    assert r["naive"]["mse"] == pytest.approx(float(np.mean(d[ok] ** 2)), rel=0.05)
    assert r["skill_vs_naive"] == pytest.approx(1 - 1 / r["naive"]["mse"])


def test_labelled_file_evaluates_like_the_fleet(tmp_path: Path) -> None:
    fleet = generate_fleet(6, 3600, 5.0, seed=21, fault_rate_per_endpoint_day=24)
    p, evj = tmp_path / "lab.csv", tmp_path / "events.json"
    fleet.write_csv(p)
    evj.write_text(json.dumps(fleet.events_table()), encoding="utf-8")
    fac = MonitorFactory({"monitor": {"use_shipped_models": False}, "detectors": {"changepoint": {"enabled": False}}},
                         registry=PluginRegistry(autoload=False))
    from_file = evaluate(load_labelled_file(p, evj), factory=fac, ablation="none").metrics
    from_fleet = evaluate(LabelledRun.from_fleet(fleet), factory=fac, ablation="none").metrics
    for k in ("event_precision", "event_recall", "f1", "false_alarm_rate", "roc_auc", "lead_time_p50_s",
              "mttd_s", "false_alerts_per_endpoint_day", "samples", "alerts"):
        assert from_file[k] == pytest.approx(from_fleet[k]), k
    run = load_labelled_file(p)
    eid = fleet.endpoints[0].endpoint_id
    ts, series = run.series(eid)
    assert np.array_equal(ts, fleet.ts)
    assert np.allclose(series["udp_echo_rtt_ms"], fleet.values[0, :, 0], equal_nan=True)


def test_docstring_examples_run() -> None:
    import doctest

    import ocad.core.tooling._evaluation as ev

    assert doctest.testmod(ev).failed == 0
