"""MonitorConfig (``ocad.core._config``) from dicts and TOML; every bad key or value is named."""

from __future__ import annotations

import math
import textwrap

import numpy as np
import pytest

from ocad.core import Monitor, MonitorConfig, OcadConfigError
from ocad.core.plugins import PluginRegistry

EXAMPLE_TOML = """
[monitor]
window = 24
capacity = 5000
idle_timeout_s = 900
warmup_samples = 6
warmup_s = 0
warmup_max_samples = 100
clock_reset_s = 120
time_budget_s = 0.5
use_shipped_models = false
max_consecutive_failures = 5

[metrics.my_kpi]
unit = "ms"
low = 0
kind = "gauge"

[detectors.rule]
weight = 2.0
thresholds = { udp_echo_rtt_ms = { max = 25.0 }, my_kpi = { max = 80.0 } }

[detectors.changepoint]
enabled = false

[alerts]
open_threshold = 0.6
hold_down_s = 90

[baselines]
level_half_life_s = 600

[selfcal]
half_life_s = 86400
prior_weight = 10

[onnxruntime]
intra_op_num_threads = 1
"""


def test_toml_file(tmp_path, registry):
    p = tmp_path / "ocad.toml"
    p.write_text(EXAMPLE_TOML, encoding="utf-8")
    cfg = MonitorConfig.from_toml(p)
    assert (cfg.window, cfg.capacity, cfg.idle_timeout_s, cfg.warmup_samples, cfg.clock_reset_s) == \
        (24, 5000, 900.0, 6, 120.0)
    assert cfg.time_budget_s == 0.5 and cfg.use_shipped_models is False and cfg.max_consecutive_failures == 5
    assert cfg.warmup_s == 0.0 and cfg.warmup_max_samples == 100
    assert cfg.baselines.level_half_life_s == 600.0 and cfg.baselines.clip == MonitorConfig().baselines.clip
    assert cfg.selfcal.half_life_s == 86400.0 and cfg.selfcal.prior_weight == 10.0 and cfg.selfcal.enabled
    assert cfg.user_metrics == {"my_kpi": {"unit": "ms", "low": 0, "kind": "gauge"}}
    assert cfg.weights() == {"rule": 2.0}
    assert cfg.enabled("rule") and not cfg.enabled("changepoint") and cfg.enabled("never_mentioned")
    assert cfg.alerts.open_threshold == 0.6 and cfg.alerts.hold_down_s == 90.0
    assert cfg.onnxruntime == {"intra_op_num_threads": 1}
    assert MonitorConfig.coerce(str(p)) == cfg == MonitorConfig.coerce(p)

    mon = Monitor(p, registry=registry)
    assert mon.window == 24 and mon.store.window == 24
    assert {d.name: d.window for d in mon.detectors} == {"rule": 8, "spike": 24, "level": 24, "recurrence": 24,
                                                         "continuity": 24, "concurrency": 24}
    assert mon.warmup_samples == 6
    assert "changepoint" not in [d.name for d in mon.detectors]
    assert mon.metrics.names()[-1] == "my_kpi"
    assert mon.store.capacity == 5000 and mon.store.idle_timeout_s == 900.0
    assert mon.composite.time_budget_s == 0.5 and mon.composite.max_consecutive_failures == 5
    rule = next(d for d in mon.detectors if d.name == "rule")
    assert rule.thresholds["udp_echo_rtt_ms"] == {"max": 25.0} and rule.thresholds["my_kpi"] == {"max": 80.0}
    assert mon.composite.weights[mon.composite.names.index("rule")] == 2.0


def test_dict_config_and_defaults(registry):
    cfg = MonitorConfig.from_mapping({"monitor": {"window": 16, "metrics": ["udp_echo_rtt_ms", "lbm_success"]}})
    assert cfg.window == 16 and cfg.metrics == ("udp_echo_rtt_ms", "lbm_success")
    assert cfg.capacity == MonitorConfig().capacity and cfg.alerts == MonitorConfig().alerts
    mon = Monitor({"monitor": {"use_shipped_models": False, "metrics": ["udp_echo_rtt_ms", "lbm_success"]}},
                  registry=registry)
    assert mon.metrics.names() == ("udp_echo_rtt_ms", "lbm_success")
    assert MonitorConfig.coerce(None) == MonitorConfig() and MonitorConfig.coerce(cfg) is cfg


BAD = [
    ({"monitr": {}}, ["monitr"]),
    ({"monitor": {"windw": 3}}, ["windw"]),
    ({"monitor": {"window": 0}}, ["monitor.window", "0"]),
    ({"monitor": {"window": "32"}}, ["monitor.window", "'32'"]),
    ({"monitor": {"window": True}}, ["monitor.window", "True"]),
    ({"monitor": {"window": 3.5}}, ["monitor.window", "3.5"]),
    ({"monitor": {"capacity": -1}}, ["monitor.capacity", "-1"]),
    ({"monitor": {"max_consecutive_failures": 0}}, ["monitor.max_consecutive_failures", "0"]),
    ({"monitor": {"warmup_samples": 0}}, ["monitor.warmup_samples", "0"]),
    ({"monitor": {"warmup_s": -1}}, ["monitor.warmup_s", "-1"]),
    ({"monitor": {"warmup_s": True}}, ["monitor.warmup_s", "True"]),
    ({"monitor": {"warmup_max_samples": 0}}, ["monitor.warmup_max_samples", "0"]),
    ({"monitor": {"idle_timeout_s": 0}}, ["monitor.idle_timeout_s", "0"]),
    ({"monitor": {"idle_timeout_s": "1h"}}, ["monitor.idle_timeout_s", "'1h'"]),
    ({"monitor": {"clock_reset_s": -5}}, ["monitor.clock_reset_s", "-5"]),
    ({"monitor": {"clock_reset_s": math.nan}}, ["monitor.clock_reset_s", "nan"]),
    ({"monitor": {"time_budget_s": True}}, ["monitor.time_budget_s", "True"]),
    ({"monitor": {"use_shipped_models": "yes"}}, ["monitor.use_shipped_models", "'yes'"]),
    ({"monitor": {"metrics": []}}, ["monitor.metrics", "[]"]),
    ({"monitor": {"metrics": "udp_echo_rtt_ms"}}, ["monitor.metrics", "'udp_echo_rtt_ms'"]),
    ({"monitor": {"metrics": [1]}}, ["monitor.metrics", "[1]"]),
    ({"metrics": {"my_kpi": 5}}, ["metrics", "my_kpi"]),
    ({"detectors": {"rule": 3}}, ["detectors"]),
    ({"detectors": {"rule": {"enabled": "no"}}}, ["detectors.rule.enabled", "'no'"]),
    ({"detectors": {"rule": {"weight": -1}}}, ["detectors.rule.weight", "-1"]),
    ({"detectors": {"spike": {"weight": "1"}}}, ["detectors.spike.weight", "'1'"]),
    ({"alerts": {"open_treshold": 0.5}}, ["alerts", "open_treshold"]),
    ({"alerts": {"open_threshold": 2}}, ["alerts.open_threshold", "2"]),
    ({"alerts": {"hold_down_s": -60}}, ["alerts.hold_down_s", "-60"]),
    ({"alerts": {"critical_clear": 0.95}}, ["alerts.critical_clear", "0.95"]),
    ({"onnxruntime": 4}, ["onnxruntime"]),
    ({"baselines": {"level_half_lif_s": 60}}, ["baselines", "level_half_lif_s"]),
    ({"baselines": {"level_half_life_s": 0}}, ["baselines", "level_half_life_s"]),
    ({"selfcal": {"half_life_s": -1}}, ["selfcal.half_life_s", "-1"]),
    ({"selfcal": {"enabled": "yes"}}, ["selfcal.enabled", "'yes'"]),
    ({"selfcal": {"prior_wieght": 3}}, ["selfcal", "prior_wieght"]),
]


@pytest.mark.parametrize("data, words", BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_keys_and_values_are_named(data, words):
    with pytest.raises(OcadConfigError) as ei:
        MonitorConfig.from_mapping(data)
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))


def test_every_monitor_key_is_validated():
    """A key added to the [monitor] table without a check would slip through: catch that here."""
    from ocad.core import _config

    checked = {next(iter(d["monitor"])) for d, _ in BAD if d.get("monitor")}
    assert _config._MONITOR_KEYS - checked <= {"calibration"}


BAD_AT_BUILD = [
    ({"metrics": {"my_kpi": {"unitt": "ms"}}}, ["metrics.my_kpi", "unitt"]),
    ({"metrics": {"my_kpi": {"low": 5, "high": 1}}}, ["my_kpi", "low=5.0", "high=1.0"]),
    ({"metrics": {"my_kpi": {"kind": "gaug"}}}, ["metrics.my_kpi", "'gaug'"]),
    ({"metrics": {"my kpi": {}}}, ["'my kpi'"]),
    ({"metrics": {"ts": {}}}, ["'ts'"]),
    ({"metrics": {"udp_echo_rtt_ms": {"unit": "s"}}}, ["udp_echo_rtt_ms", "already registered"]),
    ({"monitor": {"metrics": ["udp_echo_rtt_ms", "nope"]}}, ["unknown metric 'nope'"]),
    ({"monitor": {"calibration": "/nonexistent/cal.json"}}, ["monitor.calibration", "/nonexistent/cal.json"]),
]


@pytest.mark.parametrize("data, words", BAD_AT_BUILD, ids=[str(i) for i in range(len(BAD_AT_BUILD))])
def test_bad_metric_tables_refused_when_the_monitor_is_built(registry, data, words):
    with pytest.raises(OcadConfigError) as ei:
        Monitor(data, registry=registry)
    for w in words:
        assert w in str(ei.value), (w, str(ei.value))


@pytest.mark.parametrize("detectors, words", [
    ({"rule": {"thresholds": {"nope": {"max": 1.0}}}}, ["detectors.rule.thresholds.nope", "'nope'"]),
    ({"rule": {"thresholds": {"udp_echo_rtt_ms": {"maxx": 3.0}}}}, ["udp_echo_rtt_ms", "maxx"]),
    ({"rule": {"thresholds": {"udp_echo_rtt_ms": {"max": -3.0}}}}, ["thresholds.udp_echo_rtt_ms.max", "-3.0"]),
    ({"rule": {"windw": 8}}, ["detectors.rule", "windw"]),
    ({"spike": {"foo": 1}}, ["detectors.spike", "'foo': 1"]),
    ({"continuity": {"windw": 3}}, ["detectors.continuity", "'windw': 3"]),
])
def test_bad_detector_tables(detectors, words):
    cfg = {"monitor": {"use_shipped_models": False}, "detectors": detectors}
    # A wrong [detectors.<name>] table is the user's error, not a plugin failure: strict or not,
    # the Monitor refuses to start, naming the key and the value (a silently missing detector
    # would be worse).
    for strict in (True, False):
        with pytest.raises(OcadConfigError) as ei:
            Monitor(cfg, registry=PluginRegistry(autoload=False), strict=strict)
        for w in words:
            assert w in str(ei.value), (w, str(ei.value))


def test_detector_table_may_set_its_window(registry):
    mon = Monitor({"monitor": {"use_shipped_models": False},
                   "detectors": {"spike": {"window": 48}, "changepoint": {"enabled": False}}}, registry=registry)
    assert {d.name: d.window for d in mon.detectors}["spike"] == 48
    assert mon.window == 48


def test_toml_file_errors(tmp_path):
    with pytest.raises(OcadConfigError, match="does not exist"):
        MonitorConfig.from_toml(tmp_path / "missing.toml")
    p = tmp_path / "bad.toml"
    p.write_text("[monitor\nwindow = 3\n", encoding="utf-8")
    with pytest.raises(OcadConfigError, match="not valid TOML"):
        MonitorConfig.from_toml(p)
    p.write_text("[monitor]\nwindow = 0\n", encoding="utf-8")
    with pytest.raises(OcadConfigError, match=r"monitor\.window = 0"):
        Monitor.from_config(p)
    with pytest.raises(OcadConfigError, match="int"):
        MonitorConfig.coerce(42)


def test_user_metric_end_to_end(tmp_path, registry):
    p = tmp_path / "kpi.toml"
    p.write_text(textwrap.dedent("""
        [monitor]
        use_shipped_models = false
        [metrics.my_kpi]
        unit = "ms"
        low = 0
        [detectors.rule]
        thresholds = { my_kpi = { max = 80.0 } }
        [detectors.changepoint]
        enabled = false
    """), encoding="utf-8")
    mon = Monitor.from_config(p, registry=registry)
    assert "my_kpi" in mon.metrics and "my_kpi" in next(d for d in mon.detectors if d.name == "spike").metrics
    rng = np.random.default_rng(0)
    recs = [{"endpoint_id": "kpi-1", "ts": 1_000.0 + 5 * i, "my_kpi": float(40 + rng.normal())} for i in range(40)]
    recs.append({"endpoint_id": "kpi-1", "ts": 1_000.0 + 5 * 40, "my_kpi": 400.0})
    recs.append({"endpoint_id": "kpi-1", "ts": 1_000.0 + 5 * 41, "my_kpi": -3.0})  # below low: rejected
    frame = mon.score_frame(recs, as_frame=False)
    assert len(frame["ts"]) == 42
    spike, rule, comp = frame["spike"], frame["rule"], frame["composite"]
    assert not np.isnan(spike[1:41]).any()  # the spike detector sees my_kpi
    # per-detector columns are surprise scores: near 0 on normal samples, high on the spike
    assert spike[40] >= 0.5 and np.nanmax(spike[5:40]) < 0.3 and np.nanmedian(spike[5:40]) == 0.0
    assert rule[40] == 1.0 and np.nanmax(rule[:40]) < 0.1  # 400 > max 80: decisive
    assert comp[40] >= 0.8 and np.median(comp[:40]) < 0.05 and np.max(comp[:40]) < 0.3
    assert np.isnan(frame["continuity"]).all()  # this endpoint reports no continuity metric
    assert mon.stats.rejected[("my_kpi", "out_of_range")] == 1
    assert mon.stats.values_accepted == 41
