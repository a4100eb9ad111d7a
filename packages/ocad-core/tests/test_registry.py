"""PluginRegistry (``ocad.core.plugins._registry``): hooks, entry points, isolation, env switches."""

from __future__ import annotations

import argparse
import sys
import types
from importlib import metadata

import numpy as np
import pytest

from ocad.core import MetricKind, MetricSpec, Monitor, OcadPluginError
from ocad.core.plugins import (
    ORAN_METRICS,
    DetectorContext,
    DetectorOutput,
    PluginFailure,
    PluginRegistry,
    hookimpl,
)
from ocad.core.plugins import _registry

ORAN = tuple(s.name for s in ORAN_METRICS)


class Det:
    def __init__(self, name: str, kind: str = "plugin", metrics: tuple[str, ...] = ("bfd_flaps",)) -> None:
        self.name, self.kind, self.metrics, self.window = name, kind, metrics, 4

    def score(self, view):
        # calibrated score 0.999: the chance of a value this extreme on normal data is 1e-3
        return DetectorOutput(scores=np.full(view.n, 0.999))


class BfdPlugin:
    @hookimpl
    def ocad_metrics(self):
        return [MetricSpec("bfd_flaps", unit="1", kind="count", low=0)]

    @hookimpl
    def ocad_detectors(self, context):
        if "bfd_flaps" in context.metrics:
            return [Det("bfd")]
        return []


class Raising:
    @hookimpl
    def ocad_detectors(self, context):
        raise RuntimeError("cannot build my detector")


def ctx(reg: PluginRegistry) -> DetectorContext:
    return DetectorContext(metrics=reg.metrics(), window=32, use_shipped_models=False)


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("OCAD_DISABLE_PLUGINS", raising=False)
    monkeypatch.delenv("OCAD_PLUGINS_AUTOLOAD", raising=False)


def test_plugin_object_adds_metric_and_detector():
    reg = PluginRegistry(autoload=False, plugins=[BfdPlugin()])
    metrics = reg.metrics()
    assert metrics.names() == (*ORAN, "bfd_flaps")  # built-ins first: registration order
    assert metrics.get("bfd_flaps").kind is MetricKind.COUNT
    names = [d.name for d in reg.detectors(ctx(reg))]
    assert names[0] == "rule" and "bfd" in names and names[-1] == "bfd"
    assert [(p.name, p.source) for p in reg.plugins()] == [("builtin", "builtin"), ("BfdPlugin-0", "direct")]
    assert reg.failures == []


def test_plugin_detector_runs_in_a_monitor():
    reg = PluginRegistry(autoload=False, plugins=[BfdPlugin()])
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=reg)
    assert "bfd" in [d.name for d in mon.detectors] and "bfd_flaps" in mon.metrics
    frame = mon.score_frame([{"endpoint_id": "a", "ts": 0.0, "bfd_flaps": 1}], as_frame=False)
    # reported as surprise, -log10(p) / 10 with p = 1 - 0.999 (a new endpoint: the prior table)
    assert frame["bfd"].tolist() == [pytest.approx(0.3, rel=1e-6)]
    # the composite is the Cauchy combination of the detectors that judge (equal weights)
    ps = [10.0 ** (-10.0 * float(frame[d][0])) for d in mon.composite.names if np.isfinite(frame[d][0])]
    stat = sum(1.0 / np.tan(np.pi * p) for p in ps if p < 0.5) / len(ps)
    want = -np.log10(np.arctan(1.0 / stat) / np.pi) / 10.0
    assert frame["composite"].tolist() == [pytest.approx(want, rel=1e-6)]
    assert frame["composite"][0] >= 0.3 - np.log10(len(ps)) / 10.0 - 1e-6  # bfd's evidence not averaged away


def test_module_plugin_named_by_module():
    mod = types.ModuleType("my_ocad_plugin")
    mod.ocad_metrics = hookimpl(lambda: [MetricSpec("ptp_offset_ns", low=-1e9, high=1e9)])
    reg = PluginRegistry(autoload=False, plugins=[mod])
    assert "ptp_offset_ns" in reg.metrics()
    assert reg.plugins()[-1].name == "my_ocad_plugin"


def test_raising_hook_is_recorded_and_others_still_load():
    reg = PluginRegistry(autoload=False, plugins=[Raising(), BfdPlugin()])
    names = [d.name for d in reg.detectors(ctx(reg))]
    assert "rule" in names and "bfd" in names
    (f,) = reg.failures
    assert f == PluginFailure("Raising-0", "ocad_detectors", "RuntimeError: cannot build my detector")
    with pytest.raises(OcadPluginError, match="cannot build my detector"):
        reg.detectors(ctx(reg), strict=True)


def test_monitor_strict_refuses_a_failing_plugin_and_lenient_reports_it():
    reg = PluginRegistry(autoload=False, plugins=[Raising()])
    with pytest.raises(OcadPluginError, match="Raising-0"):
        Monitor({"monitor": {"use_shipped_models": False}}, registry=reg, strict=True)
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(autoload=False,
                                                                                       plugins=[Raising()]))
    assert [f["stage"] for f in mon.health()["plugin_failures"]] == ["ocad_detectors"]


def test_non_detector_and_duplicate_names_reported_first_registered_wins():
    class A:
        @hookimpl
        def ocad_detectors(self, context):
            return [Det("dup", kind="a"), object()]

    class B:
        @hookimpl
        def ocad_detectors(self, context):
            return [Det("dup", kind="b"), Det("rule", kind="b")]

    reg = PluginRegistry(autoload=False, plugins=[A(), B()])
    dets = reg.detectors(ctx(reg))
    by_name = {d.name: d for d in dets}
    assert by_name["dup"].kind == "a"
    assert by_name["rule"].kind == "rule"  # the built-in keeps its name
    assert len(dets) == len(by_name)
    errs = [(f.plugin, f.stage, f.error) for f in reg.failures]
    assert errs[0][:2] == ("A-0", "ocad_detectors") and errs[0][2].startswith("TypeError")
    assert "does not satisfy the Detector protocol" in errs[0][2]
    assert ("B-1", "ocad_detectors", "ValueError: detector name 'dup' is already taken") in errs
    assert ("B-1", "ocad_detectors", "ValueError: detector name 'rule' is already taken") in errs
    assert len(errs) == 3


def test_conflicting_metric_spec_blames_the_later_plugin():
    class Redefine:
        @hookimpl
        def ocad_metrics(self):
            return [MetricSpec("udp_echo_rtt_ms", unit="s"), MetricSpec("lbm_success", unit="1", kind="boolean",
                                                                        low=0, high=1, higher_is_worse=False,
                                                                        description=ORAN_METRICS[3].description)]

    reg = PluginRegistry(autoload=False, plugins=[Redefine()])
    m = reg.metrics()
    assert m.get("udp_echo_rtt_ms").unit == "ms"
    (f,) = reg.failures  # the identical lbm_success spec is harmless
    assert f.plugin == "Redefine-0"
    assert f.stage == "ocad_metrics" and "udp_echo_rtt_ms" in f.error


def test_same_plugin_twice_fails_at_register():
    mod = types.ModuleType("twice_plugin")
    reg = PluginRegistry(autoload=False, plugins=[mod, mod])
    assert [(f.plugin, f.stage) for f in reg.failures] == [("twice_plugin", "register")]
    assert [p.name for p in reg.plugins()] == ["builtin", "twice_plugin"]


# -- entry points ---------------------------------------------------------------------------------

class BrokenEP:
    name, value, group, dist = "broken", "ocad_missing_plugin_xyz", "ocad", None

    def load(self):
        raise ImportError("No module named 'ocad_missing_plugin_xyz'")


@pytest.fixture
def fake_entry_points(monkeypatch):
    mod = types.ModuleType("ocad_fake_good_plugin")
    mod.ocad_metrics = hookimpl(lambda: [MetricSpec("good_kpi")])
    mod.ocad_detectors = hookimpl(lambda context: [Det("good_det", metrics=("good_kpi",))])
    monkeypatch.setitem(sys.modules, "ocad_fake_good_plugin", mod)
    good = metadata.EntryPoint(name="good", value="ocad_fake_good_plugin", group="ocad")
    calls = []

    def entry_points(**kw):
        calls.append(kw)
        assert kw == {"group": "ocad"}
        return [BrokenEP(), good]

    monkeypatch.setattr(_registry.metadata, "entry_points", entry_points)
    return calls


def test_entry_point_load_failure_is_isolated(fake_entry_points):
    reg = PluginRegistry()
    assert fake_entry_points == [{"group": "ocad"}]
    (f,) = reg.failures
    assert (f.plugin, f.stage) == ("broken", "load") and f.error.startswith("ImportError")
    assert [p.name for p in reg.plugins()] == ["builtin", "good"]
    assert reg.plugins()[1].source == "ocad_fake_good_plugin"
    assert "good_kpi" in reg.metrics()
    assert "good_det" in [d.name for d in reg.detectors(ctx(reg))]


@pytest.mark.parametrize("how", ["env", "arg"])
def test_disabled_plugins_are_skipped(fake_entry_points, monkeypatch, how):
    if how == "env":
        monkeypatch.setenv("OCAD_DISABLE_PLUGINS", " good , broken")
        reg = PluginRegistry()
    else:
        reg = PluginRegistry(disabled=["good", "broken"])
    assert reg.failures == [] and [p.name for p in reg.plugins()] == ["builtin"]
    assert "good_kpi" not in reg.metrics()


@pytest.mark.parametrize("value", ["0", "false", "No"])
def test_autoload_off_by_env(fake_entry_points, monkeypatch, value):
    monkeypatch.setenv("OCAD_PLUGINS_AUTOLOAD", value)
    reg = PluginRegistry()
    assert fake_entry_points == []  # not even listed
    assert [p.name for p in reg.plugins()] == ["builtin"] and reg.failures == []
    assert reg.metrics().names() == ORAN  # built-ins still load


def test_autoload_argument_overrides_env(fake_entry_points, monkeypatch):
    monkeypatch.setenv("OCAD_PLUGINS_AUTOLOAD", "0")
    assert [p.name for p in PluginRegistry(autoload=True).plugins()] == ["builtin", "good"]


def test_cli_commands_hook():
    class Cli:
        @hookimpl
        def ocad_cli_commands(self, subparsers):
            p = subparsers.add_parser("hello")
            p.set_defaults(func=lambda args: 7)

    reg = PluginRegistry(autoload=False, plugins=[Cli()])
    parser = argparse.ArgumentParser()
    reg.add_cli_commands(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["hello"])
    assert args.func(args) == 7


def test_context_options_drop_enabled_and_weight():
    c = DetectorContext(metrics=PluginRegistry(autoload=False).metrics(), window=8,
                        detector_options={"rule": {"enabled": True, "weight": 2.0, "window": 4}})
    assert c.options("rule") == {"window": 4} and c.options("other") == {}
