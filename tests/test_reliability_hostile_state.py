"""Hostile snapshots, exported state, plugins and threads (issue #11; docs/reliability.md G3.5-G3.6, G5.3-G5.4, G6.2).

* a mutation fuzzer over snapshots: arrays of ``windows.npz`` (ring head out of
  range, negative counts, wrong dtypes, more endpoints than the capacity, ids
  with control characters, ±inf) and fields of ``state.json`` (any value
  anywhere, deep nesting), with the integrity hash made to match: ``restore``
  either refuses with ``OcadConfigError`` and changes nothing, or the restored
  Monitor runs (``observe``, ``health()``, ``snapshot``) without error;
* ``import_state`` refuses a bad document as a whole (nothing imported);
* plugins: ``SystemExit`` at import, hooks that are lazily failing generators,
  a metrics hook raising ``OcadConfigError``, detectors whose ``window`` is NaN
  or None, a ``BaseException`` from ``score``: isolated and reported;
* a Monitor shared by threads raises a clear ``OcadError`` for the concurrent
  call and loses nothing of the calls it accepts.
"""

from __future__ import annotations

import copy
import hashlib
import importlib.metadata as metadata
import io
import json
import shutil
import sys
import threading
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ocad.core import Monitor, OcadConfigError, OcadError, OcadPluginError, export_state, import_state
from ocad.core.plugins import DetectorOutput, MetricSpec, PluginRegistry, _registry, hookimpl

T0 = 1_767_225_600.0
CFG = {"monitor": {"use_shipped_models": False, "capacity": 16, "warmup_samples": 3, "window": 12}}


def new_monitor(cfg: dict | None = None) -> Monitor:
    return Monitor(cfg or CFG, registry=PluginRegistry(autoload=False))


def _traffic(mon: Monitor, ticks: range) -> None:
    for t in ticks:
        recs = []
        for i in range(5):
            bad = i == 2 and t >= 20
            recs.append({"endpoint_id": f"e{i}", "ts": T0 + 5.0 * t,
                         "udp_echo_rtt_ms": 40.0 if bad else 4.0 + 0.1 * ((t + i) % 3),
                         "lbm_rtt_ms": 40.0 if bad else 4.0, "lbm_success": 0 if bad else 1,
                         "ccm_miss_count": 3 if bad else 0})
        mon.observe(recs)


@pytest.fixture(scope="module")
def snap(tmp_path_factory: pytest.TempPathFactory) -> Path:
    mon = new_monitor()
    _traffic(mon, range(30))
    assert mon.health()["open_alerts"] >= 1  # an alert is open at the cut
    return mon.snapshot(tmp_path_factory.mktemp("snap") / "s")


def _fingerprint(mon: Monitor) -> Any:
    return json.dumps(mon.health(), sort_keys=True, default=str), mon.store.values.tobytes(), \
        mon.store.ts.tobytes(), json.dumps(mon.policy.state(), sort_keys=True)


def _write(d: Path, arrays: dict[str, np.ndarray], doc: dict | str) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    npz = buf.getvalue()
    (d / "windows.npz").write_bytes(npz)
    if isinstance(doc, dict):
        doc = dict(doc, windows_sha256=hashlib.sha256(npz).hexdigest())
        doc = json.dumps(doc)
    else:  # raw text: patch the hash in
        doc = doc.replace("__SHA__", hashlib.sha256(npz).hexdigest())
    (d / "state.json").write_text(doc)


def _load(snap: Path) -> tuple[dict[str, np.ndarray], dict]:
    with np.load(snap / "windows.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return arrays, json.loads((snap / "state.json").read_text())


ARRAY_MUTATIONS = {
    "head-out-of-range": lambda a: a.__setitem__("head", a["head"] + 100),
    "head-negative": lambda a: a.__setitem__("head", a["head"] - 100),
    "count-negative": lambda a: a.__setitem__("count", -a["count"] - 1),
    "count-as-float": lambda a: a.__setitem__("count", a["count"].astype(np.float64)),
    "values-as-strings": lambda a: a.__setitem__("values", a["values"].astype(str)),
    "values-inf": lambda a: a["values"].__setitem__((0, 0, 0), np.inf),
    "ts-inf": lambda a: a["ts"].__setitem__((0, 0), np.inf),
    "last-ts-nan": lambda a: a["last_ts"].__setitem__(0, np.nan),
    "ids-nul": lambda a: a.__setitem__("ids", np.array(["e0\x01"] + a["ids"].tolist()[1:])),
    "ids-duplicate": lambda a: a.__setitem__("ids", np.array([a["ids"][0]] * len(a["ids"]))),
    "ids-2d": lambda a: a.__setitem__("ids", a["ids"].reshape(1, -1)),
    "caps-as-int": lambda a: a.__setitem__("caps", a["caps"].astype(np.int64)),
    "counters-negative": lambda a: a.__setitem__("counters", np.array([-1, 0])),
    "max-ts-nan": lambda a: a.__setitem__("max_ts", np.array(np.nan)),
    "missing-head": lambda a: a.pop("head"),
    "beyond-capacity": lambda a: a.update({
        k: np.concatenate([a[k]] * 4) for k in ("values", "ts", "head", "count", "last_ts", "caps")} |
        {"ids": np.array([f"x{i}" for i in range(4 * len(a["ids"]))])}),
}


@pytest.mark.parametrize("case", list(ARRAY_MUTATIONS))
def test_a_snapshot_with_bad_values_is_refused_and_changes_nothing(tmp_path, snap, case):
    """G5.3: values, not only shapes: refused with OcadConfigError naming the field; the Monitor unchanged."""
    arrays, doc = _load(snap)
    ARRAY_MUTATIONS[case](arrays)
    d = tmp_path / "bad"
    d.mkdir()
    _write(d, arrays, doc)
    mon = new_monitor()
    _traffic(mon, range(3))
    before = _fingerprint(mon)
    with pytest.raises(OcadConfigError, match="damaged"):
        mon.restore(d)
    assert _fingerprint(mon) == before
    _traffic(mon, range(3, 6))  # and still usable


def _json_paths(doc: Any, prefix: tuple = ()) -> Any:
    yield prefix
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from _json_paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc[:3]):
            yield from _json_paths(v, (*prefix, i))


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() |
    st.sampled_from(["", "x", "e0", "open", "e0\x00", "critical"]),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(["a", "e0", "pending", "alert"]), c,
                                                        max_size=3), max_leaves=5)


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data(), array_case=st.sampled_from([None, None, *ARRAY_MUTATIONS]), deep=st.booleans())
def test_fuzzed_snapshots_are_refused_whole_or_run(tmp_path_factory, snap, data, array_case, deep):
    """G5.3 fuzzer: whatever the snapshot holds, restore refuses (Monitor unchanged) or the result runs."""
    arrays, doc = _load(snap)
    if array_case is not None:
        ARRAY_MUTATIONS[array_case](arrays)
    if deep:
        raw: dict | str = json.dumps(doc).replace('"policy": ', '"policy": ' + "[" * 100_000 + "]" * 100_000
                                                  + ', "x": ', 1).replace(doc["windows_sha256"], "__SHA__")
    else:
        paths = [p for p in _json_paths(doc) if p and p[0] not in ("snapshot_version", "metrics", "window",
                                                                    "windows_sha256")]
        path = data.draw(st.sampled_from(paths))
        value = data.draw(JSON_VALUES)
        cur = doc
        for k in path[:-1]:
            cur = cur[k]
        cur[path[-1]] = value
        raw = doc
    d = tmp_path_factory.mktemp("fz")
    _write(d, arrays, raw)
    mon = new_monitor()
    _traffic(mon, range(2))
    before = _fingerprint(mon)
    try:
        mon.restore(d)
    except OcadConfigError:
        assert _fingerprint(mon) == before
        return
    # Accepted: then it must work, not fail later.
    _traffic(mon, range(30, 36))
    json.dumps(mon.health())
    mon.snapshot(d / "again")


def test_import_state_refuses_a_bad_document_whole():
    """G5.4: a bad alert document (or count, id) in the middle: nothing imported, OcadConfigError."""
    src = new_monitor()
    _traffic(src, range(30))
    doc = export_state(src)
    assert any(a is not None for a in doc["alert"])
    for breaker in (
        lambda d: d["alert"].__setitem__(-1, {"pending": "x"}),
        lambda d: d["alert"].__setitem__(-1, {"pending": 0, "last_active_ts": 0.0, "last_event_ts": 0.0,
                                              "last_event_score": 0.0, "alert": {"alert_id": "a"}}),
        lambda d: d["count"].__setitem__(-1, -5),
        lambda d: d["endpoint_id"].__setitem__(-1, "e\x00"),
        lambda d: d["last_ts"].__setitem__(-1, float("nan")),
        lambda d: d.update(endpoint_id=[f"x{i}" for i in range(40)], **{k: d[k] * 8 for k in
                                                                        ("values", "ts", "count", "last_ts",
                                                                         "caps", "alert")}),
    ):
        bad = copy.deepcopy(doc)
        breaker(bad)
        dst = new_monitor()
        _traffic(dst, range(3))
        before = _fingerprint(dst)
        with pytest.raises(OcadConfigError, match="nothing imported|capacity"):
            import_state(dst, bad, replace=True)
        assert _fingerprint(dst) == before
    dst = new_monitor()
    import_state(dst, doc)  # the intact document imports
    _traffic(dst, range(30, 33))


# -- plugins -----------------------------------------------------------------------------------------

class Det:
    kind = "plugin"
    metrics = ("udp_echo_rtt_ms",)

    def __init__(self, name: str, window: Any = 8, fn: Any = None) -> None:
        self.name, self.window, self.fn = name, window, fn

    def score(self, view):  # type: ignore[no-untyped-def]
        return self.fn(view) if self.fn else DetectorOutput(np.full(view.n, 0.1))


class ExitEP:
    name, value, group, dist = "exits_at_import", "ocad_rel_exits", "ocad", None

    def load(self):  # type: ignore[no-untyped-def]
        raise SystemExit(3)


class Custom(BaseException):
    pass


def _plugin(name: str, **hooks: Any) -> types.ModuleType:
    mod = types.ModuleType(name)
    for k, fn in hooks.items():
        setattr(mod, k, hookimpl(fn))
    return mod


def test_plugin_failures_of_every_shape_are_isolated(monkeypatch):
    """G3.5: SystemExit at import, lazy generators failing, OcadConfigError in a metrics hook, a NaN / None window."""
    good = _plugin("ocad_rel_good", ocad_detectors=lambda context: [Det("good_det")])

    def lazy_metrics():  # type: ignore[no-untyped-def]
        yield MetricSpec("bfd_flaps", kind="count", low=0)
        raise RuntimeError("metrics generator broke half way")

    def lazy_detectors(context):  # type: ignore[no-untyped-def]
        yield Det("lazy_ok")
        raise ValueError("detector generator broke half way")

    def config_error_metrics():  # type: ignore[no-untyped-def]
        raise OcadConfigError("no such thing")

    lazy = _plugin("ocad_rel_lazy", ocad_metrics=lazy_metrics, ocad_detectors=lazy_detectors)
    cfgerr = _plugin("ocad_rel_cfgerr", ocad_metrics=config_error_metrics)
    badwin = _plugin("ocad_rel_badwin", ocad_detectors=lambda context: [
        Det("nan_window", window=float("nan")), Det("none_window", window=None), Det("zero_window", window=0),
        Det("bool_window", window=True), Det("ok_window", window=4)])
    for m in (good, lazy, cfgerr, badwin):
        monkeypatch.setitem(sys.modules, m.__name__, m)
    eps = [ExitEP(), *(metadata.EntryPoint(name=m.__name__, value=m.__name__, group="ocad")
                       for m in (good, lazy, cfgerr, badwin))]
    monkeypatch.setattr(_registry.metadata, "entry_points", lambda **kw: eps)
    monkeypatch.delenv("OCAD_PLUGINS_AUTOLOAD", raising=False)
    monkeypatch.delenv("OCAD_DISABLE_PLUGINS", raising=False)

    reg = PluginRegistry()
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=reg)
    names = {d.name for d in mon.detectors}
    assert {"good_det", "ok_window", "rule", "spike"} <= names
    assert not names & {"nan_window", "none_window", "zero_window", "bool_window", "lazy_ok"}
    failures = {(f.plugin, f.stage): f.error for f in reg.failures}
    assert failures[("exits_at_import", "load")] == "SystemExit: 3"
    assert "metrics generator broke" in failures[("ocad_rel_lazy", "ocad_metrics")]
    assert "detector generator broke" in failures[("ocad_rel_lazy", "ocad_detectors")]
    assert "no such thing" in failures[("ocad_rel_cfgerr", "ocad_metrics")]
    assert "window = nan" in str(reg.failures) and "window = None" in str(reg.failures)
    _traffic(mon, range(12))  # runs
    with pytest.raises(OcadPluginError, match="exits_at_import"):
        Monitor({"monitor": {"use_shipped_models": False}}, registry=reg, strict=True)


def test_a_base_exception_from_score_is_a_detector_failure_but_interrupts_propagate():
    """G3.6: a BaseException subclass from score is isolated; KeyboardInterrupt and SystemExit are not."""
    def custom(view):  # type: ignore[no-untyped-def]
        raise Custom("plugin raised a BaseException")

    mon = Monitor(CFG, registry=PluginRegistry(autoload=False),
                  extra_detectors=[Det("custom_base", fn=custom)])
    _traffic(mon, range(5))
    h = mon.health()["detectors"]["custom_base"]
    assert h["failures"] == 3 and h["disabled"] and "Custom" in h["last_error"]
    for exc in (KeyboardInterrupt, SystemExit):
        def stop(view, exc=exc):  # type: ignore[no-untyped-def]
            raise exc()
        mon = Monitor(CFG, registry=PluginRegistry(autoload=False), extra_detectors=[Det("stop", fn=stop)])
        with pytest.raises(exc):
            _traffic(mon, range(1))


# -- threads -------------------------------------------------------------------------------------------

def test_a_monitor_shared_by_threads_refuses_the_concurrent_call_and_loses_nothing():
    """G6.2: concurrent use is detected (OcadError at once); the accepted calls are all accounted for."""
    mon = new_monitor({"monitor": {"use_shipped_models": False, "capacity": 4096}})
    accepted = [0] * 4
    refused = [0] * 4
    start = threading.Barrier(4)

    def worker(k: int) -> None:
        start.wait()
        for t in range(150):
            ep = np.array([f"t{k}-{i}" for i in range(50)], dtype=object)
            try:
                mon.observe_columns(ep, np.full(50, T0 + 5.0 * t), {"udp_echo_rtt_ms": np.full(50, 4.0)})
            except OcadError as exc:
                assert "already in use" in str(exc)
                refused[k] += 1
            else:
                accepted[k] += 1

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sum(accepted) + sum(refused) == 600
    v = mon.health()["validation"]
    assert v["records"] == 50 * sum(accepted)  # a refused call counted nothing
    assert v["values_accepted"] == 50 * sum(accepted)
    assert int(mon.store.count[mon.store.lookup([f"t{k}-0" for k in range(4)])].sum()) == sum(accepted)
    assert sum(refused) > 0, "the threads never overlapped: the test proved nothing"


@pytest.mark.parametrize("window", [float("nan"), None, 0, True, "8"])
def test_a_detector_passed_directly_with_an_unusable_window_is_refused_clearly(window):
    """G3.5: not a ValueError from deep inside the composite, an OcadConfigError naming the detector."""
    with pytest.raises(OcadConfigError, match="odd_window"):
        Monitor(CFG, registry=PluginRegistry(autoload=False), extra_detectors=[Det("odd_window", window=window)])
