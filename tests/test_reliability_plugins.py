"""Faulty plugins: reported and isolated, the others go on (docs/reliability.md, G3).

``packages/ocad-core/tests/test_ensemble.py`` checks the CompositeDetector's
isolation with stub detectors, ``test_registry.py`` the registry's. Here the
faulty detectors come in as *plugins* through the registry into a Monitor that
runs a fleet with a fault, next to the core detectors and the shipped ONNX
models, and the reference is the same Monitor without them:

* a plugin that fails to import (entry point) and one whose hook raises: listed
  by ``ocad plugins`` under FAILURES and in ``health()["plugin_failures"]``;
  ``strict=True`` refuses to start;
* detectors that raise in ``score``, return the wrong shape, scores outside
  [0, 1] (or ±inf), or not a ``DetectorOutput`` at all: NaN for that tick,
  counted and logged, disabled after ``max_consecutive_failures``; every other
  detector's scores and every alert event are exactly the reference run's;
* a detector that writes into the (shared) view: refused, the others see the
  data unchanged;
* a slow detector: over ``monitor.time_budget_s`` its result is dropped, it is
  skipped for ``budget_cooldown_ticks`` ticks, counted and logged.
"""

from __future__ import annotations

import importlib.metadata as metadata
import logging
import sys
import time
import types

import numpy as np
import pytest

from ocad.core import MetricSpec, Monitor, OcadPluginError
from ocad.core.plugins import DetectorOutput, PluginRegistry, hookimpl
from ocad.core.tooling import generate_fleet
from ocad.core.plugins import _registry
from ocad.core.cli import main

ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

T = 150


class Det:
    """A plugin detector whose ``score`` is ``fn(view)``."""

    kind = "plugin"
    metrics = ("udp_echo_rtt_ms",)
    window = 8

    def __init__(self, name: str, fn) -> None:  # type: ignore[no-untyped-def]
        self.name = name
        self.fn = fn

    def score(self, view):  # type: ignore[no-untyped-def]
        return self.fn(view)


def _ok(view):  # type: ignore[no-untyped-def]
    return DetectorOutput(np.full(view.n, 0.1))


def _raises(view):  # type: ignore[no-untyped-def]
    raise RuntimeError("model server unreachable")


def _wrong_shape(view):  # type: ignore[no-untyped-def]
    return DetectorOutput(np.zeros(view.n + 1))


def _above_one(view):  # type: ignore[no-untyped-def]
    return DetectorOutput(np.full(view.n, 1.5))


def _negative(view):  # type: ignore[no-untyped-def]
    return DetectorOutput(np.full(view.n, -0.25))


def _infinite(view):  # type: ignore[no-untyped-def]
    return DetectorOutput(np.full(view.n, np.inf))


def _not_an_output(view):  # type: ignore[no-untyped-def]
    return np.zeros(view.n)


FAULTY = {"raises": _raises, "wrong_shape": _wrong_shape, "above_one": _above_one, "negative": _negative,
          "infinite": _infinite, "not_an_output": _not_an_output}


class FaultyPlugin:
    @hookimpl
    def ocad_detectors(self, context):  # type: ignore[no-untyped-def]
        return [Det(f"faulty_{n}", fn) for n, fn in FAULTY.items()] + [Det("fine", _ok)]


class HookRaises:
    @hookimpl
    def ocad_detectors(self, context):  # type: ignore[no-untyped-def]
        raise KeyError("no such model")


@pytest.fixture(scope="module")
def fleet():  # type: ignore[no-untyped-def]
    import attrs

    base = generate_fleet(6, T * 5.0, seed=8, faults=False)
    v = base.values.copy()
    v[2, 80:110, 0] *= 8.0
    v[2, 80:110, 2] *= 8.0
    v[2, 80:110, 3] = 0.0
    v[2, 80:110, 4] = 3.0
    return attrs.evolve(base, values=v)


def _events_and_scores(mon: Monitor, fleet):  # type: ignore[no-untyped-def]
    events, parts = [], []
    for t in range(T):
        parts.append(mon.score_frame(fleet.records(t), as_frame=False))
        events += [e.to_dict() for e in mon.last_events]
    return events, {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _rounded(x):  # type: ignore[no-untyped-def]
    if isinstance(x, float):
        return float(f"{x:.12g}")
    if isinstance(x, dict):
        return {k: _rounded(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_rounded(v) for v in x]
    return x


@pytest.fixture(scope="module")
def reference(fleet):  # type: ignore[no-untyped-def]
    mon = Monitor({"monitor": {"warmup_samples": 16}}, registry=PluginRegistry(autoload=False, plugins=[ml_plugin]))
    return mon, *_events_and_scores(mon, fleet)


def test_faulty_detectors_are_isolated_counted_logged_and_disabled(fleet, reference, caplog):
    ref_mon, ref_events, ref_scores = reference
    assert any(e["event"] == "open" for e in ref_events)  # the reference run alerts on the fault
    reg = PluginRegistry(autoload=False, plugins=[FaultyPlugin(), ml_plugin, HookRaises()])
    with caplog.at_level(logging.WARNING):
        # "fine" works, with weight 0 so that the composite is the reference's to the last bit.
        mon = Monitor({"monitor": {"warmup_samples": 16}, "detectors": {"fine": {"weight": 0.0}}}, registry=reg)
        events, scores = _events_and_scores(mon, fleet)

    names = [d.name for d in mon.detectors]
    assert [n for n in names if n.startswith("faulty_")] == [f"faulty_{n}" for n in FAULTY]
    # The others go on: same scores, same composite (a failure is NaN, which the composite leaves out;
    # summing over more columns may round the last bit differently).
    for name in ref_mon.composite.names:
        np.testing.assert_array_equal(scores[name], ref_scores[name], err_msg=name)
    np.testing.assert_allclose(scores["composite"], ref_scores["composite"], rtol=1e-12, atol=0)
    assert np.isnan(np.stack([scores[f"faulty_{n}"] for n in FAULTY])).all()
    assert (scores["fine"] == 0.0).all()  # a constant 0.1 (1 - p = 0.1): no surprise at all

    health = mon.health()["detectors"]
    for n in FAULTY:
        h = health[f"faulty_{n}"]
        assert h["calls"] == h["failures"] == 3 and h["disabled"], (n, h)
        assert h["skipped"] == T - 3 and "consecutive failures" in h["disabled_reason"]
    assert "model server unreachable" in health["faulty_raises"]["last_error"]
    assert "shape (7,), expected (6,)" in health["faulty_wrong_shape"]["last_error"]
    assert "outside [0, 1]" in health["faulty_above_one"]["last_error"]
    assert "outside [0, 1]" in health["faulty_infinite"]["last_error"]
    assert all(health[n]["failures"] == 0 and health[n]["calls"] == T for n in ref_mon.composite.names)

    logged = "\n".join(r.getMessage() for r in caplog.records)
    for n in FAULTY:
        assert f"detector 'faulty_{n}' failed" in logged and f"detector 'faulty_{n}' disabled" in logged
    # The hook that raised is a plugin failure, reported, not fatal.
    (f,) = mon.health()["plugin_failures"]
    assert f["stage"] == "ocad_detectors" and "no such model" in f["error"] and "HookRaises" in f["plugin"]
    # And exactly the reference's alert events: ids, times, severities, scores, evidence.
    assert _rounded(events) == _rounded(ref_events) and events


def test_a_detector_failing_now_and_then_is_not_disabled(fleet):
    class Flaky:
        @hookimpl
        def ocad_detectors(self, context):  # type: ignore[no-untyped-def]
            n = [0]

            def every_other(view):  # type: ignore[no-untyped-def]
                n[0] += 1
                if n[0] % 2:
                    raise ValueError("transient")
                return DetectorOutput(np.full(view.n, 0.3))
            return [Det("flaky", every_other)]

    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(autoload=False,
                                                                                    plugins=[Flaky()]))
    for t in range(20):
        mon.observe(fleet.records(t))
    h = mon.health()["detectors"]["flaky"]
    assert (h["calls"], h["failures"], h["disabled"]) == (20, 10, False)


def test_a_detector_writing_into_the_view_cannot_corrupt_the_others(fleet, reference):
    ref_mon, ref_events, ref_scores = reference

    def vandal(view):  # type: ignore[no-untyped-def]
        view.values[...] = 0.0  # e.g. an in-place normalisation
        view.features.data[...] = 0.0
        view.counts[...] = 0
        view.endpoints[0] = "someone-else"
        return DetectorOutput(np.full(view.n, 0.5))

    class Vandal:
        @hookimpl
        def ocad_detectors(self, context):  # type: ignore[no-untyped-def]
            return [Det("vandal", vandal)]

    # Registered before the ml plugin: the residual and multivariate detectors run after it.
    # Weight 0: the vandal cannot change the composite (and so what the others learn), only the arrays.
    mon = Monitor({"monitor": {"warmup_samples": 16}, "detectors": {"vandal": {"weight": 0.0}}},
                  registry=PluginRegistry(autoload=False, plugins=[Vandal(), ml_plugin]))
    events, scores = _events_and_scores(mon, fleet)
    for name in ref_mon.composite.names:
        np.testing.assert_array_equal(scores[name], ref_scores[name], err_msg=name)
    assert [(e["event"], e["endpoint_id"], e["ts"]) for e in events] == \
        [(e["event"], e["endpoint_id"], e["ts"]) for e in ref_events]
    assert scores["endpoint_id"].tolist() == ref_scores["endpoint_id"].tolist()
    h = mon.health()["detectors"]["vandal"]
    assert h["disabled"] and "read-only" in h["last_error"]


def test_a_slow_detector_is_dropped_for_its_tick_and_skipped_for_the_cooldown(fleet, caplog):
    budget, sleep = 0.4, 0.5

    def slow(view):  # type: ignore[no-untyped-def]
        time.sleep(sleep)
        return DetectorOutput(np.full(view.n, 0.9))

    class Slow:
        @hookimpl
        def ocad_detectors(self, context):  # type: ignore[no-untyped-def]
            return [Det("slow", slow)]

    mon = Monitor({"monitor": {"use_shipped_models": False, "time_budget_s": budget}},
                  registry=PluginRegistry(autoload=False, plugins=[Slow()]))
    cooldown = mon.composite.budget_cooldown_ticks
    ticks = cooldown + 2  # called at tick 0 and at tick cooldown + 1
    with caplog.at_level(logging.WARNING, logger="ocad.detectors"):
        frames = [mon.score_frame(fleet.records(t), as_frame=False) for t in range(ticks)]
    assert all(np.isnan(f["slow"]).all() for f in frames)  # the late result is never used
    h = mon.health()["detectors"]["slow"]
    assert (h["calls"], h["over_budget"], h["skipped"], h["failures"], h["disabled"]) == \
        (2, 2, ticks - 2, 0, False)
    assert "budget 400.0 ms" in h["last_error"] and f"skipped for {cooldown} ticks" in h["last_error"]
    assert sum("'slow'" in r.getMessage() and "budget" in r.getMessage() for r in caplog.records) == 2
    others = {n: d for n, d in mon.health()["detectors"].items() if n != "slow"}
    assert all(d["calls"] == ticks and d["over_budget"] == 0 for d in others.values())
    assert all(np.isfinite(f["rule"]).all() for f in frames)


# -- entry points and `ocad plugins` --------------------------------------------------------------------

class BrokenEP:
    name, value, group, dist = "broken_import", "ocad_no_such_plugin_module", "ocad", None

    def load(self):  # type: ignore[no-untyped-def]
        import importlib

        return importlib.import_module(self.value)


@pytest.fixture
def entry_points(monkeypatch):  # type: ignore[no-untyped-def]
    """Entry points: one that fails to import, one whose hook raises, and a good one."""
    good = types.ModuleType("ocad_rel_good_plugin")
    good.ocad_metrics = hookimpl(lambda: [MetricSpec("bfd_flaps", kind="count", low=0)])
    good.ocad_detectors = hookimpl(lambda context: [Det("good_det", _ok)])
    bad_hook = types.ModuleType("ocad_rel_bad_hook")

    def ocad_detectors(context):  # type: ignore[no-untyped-def]
        raise RuntimeError("cannot reach the licence server")
    bad_hook.ocad_detectors = hookimpl(ocad_detectors)
    monkeypatch.setitem(sys.modules, good.__name__, good)
    monkeypatch.setitem(sys.modules, bad_hook.__name__, bad_hook)
    eps = [BrokenEP(), metadata.EntryPoint(name="good", value=good.__name__, group="ocad"),
           metadata.EntryPoint(name="bad_hook", value=bad_hook.__name__, group="ocad")]
    monkeypatch.setattr(_registry.metadata, "entry_points", lambda **kw: eps)
    monkeypatch.setattr(_registry, "_default", None)  # `ocad plugins` builds the process registry afresh
    monkeypatch.delenv("OCAD_PLUGINS_AUTOLOAD", raising=False)
    monkeypatch.delenv("OCAD_DISABLE_PLUGINS", raising=False)


def test_ocad_plugins_lists_the_failures_and_the_good_plugin(entry_points, capsys):
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    listing, _, failures = out.partition("FAILURES:")
    assert any(line.split()[:1] == ["good"] for line in listing.splitlines())
    assert any(line.startswith("good_det ") for line in listing.splitlines())
    assert "bfd_flaps" in listing
    assert "broken_import (load): ModuleNotFoundError: No module named 'ocad_no_such_plugin_module'" in failures
    assert "bad_hook (ocad_detectors): RuntimeError: cannot reach the licence server" in failures


def test_failed_entry_points_in_health_and_strict_refuses(entry_points, fleet):
    reg = PluginRegistry()
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=reg)
    assert "good_det" in [d.name for d in mon.detectors]
    fails = {(f["plugin"], f["stage"]) for f in mon.health()["plugin_failures"]}
    assert fails == {("broken_import", "load"), ("bad_hook", "ocad_detectors")}
    mon.observe(fleet.records(0))  # and it runs
    with pytest.raises(OcadPluginError, match="broken_import"):
        Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(), strict=True)


def test_disabling_the_broken_entry_point_by_env_clears_the_failure(entry_points, monkeypatch):
    monkeypatch.setenv("OCAD_DISABLE_PLUGINS", "broken_import,bad_hook")
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(), strict=True)
    assert mon.health()["plugin_failures"] == [] and "good_det" in [d.name for d in mon.detectors]


def test_ocad_plugins_lists_a_broken_shipped_model(tmp_path, monkeypatch, capsys):
    import shutil

    d = shutil.copytree(ml_plugin.models_dir(), tmp_path / "models")
    (d / "tcn-ecpri_delay_us" / "model.onnx").write_bytes(b"not the model")
    monkeypatch.setattr(ml_plugin, "models_dir", lambda: d)
    monkeypatch.setattr(_registry, "_default", PluginRegistry(autoload=False, plugins=[ml_plugin]))
    assert main(["plugins"]) == 0
    out = capsys.readouterr().out
    listing, _, errors = out.partition("ARTIFACT ERRORS:")
    residual = next(line for line in listing.splitlines() if line.startswith("residual "))
    assert "ecpri_delay_us" not in residual and "udp_echo_rtt_ms" in residual
    assert "tcn-ecpri_delay_us" in errors and "sha256 mismatch" in errors
