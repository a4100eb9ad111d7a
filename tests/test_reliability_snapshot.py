"""Restartable state: snapshot → new process → restore continues a run exactly (docs/reliability.md, G5).

Run A goes through the whole stream without interruption and takes a snapshot
in passing at the cut (``snapshot`` reads the state, it changes nothing: run A
also checks that). A *new Python process* builds the same Monitor, restores the
snapshot and runs the rest of the stream, writing its events as JSON. Its events
must be exactly run A's after the cut: ids, timestamps, severities, scores,
evidence, and the health counters at the end.

The stream is made to stress every piece of state that crosses the cut: the
full detector stack (core + shipped ONNX models), faults with an alert open at
the cut, a capacity smaller than the fleet (LRU evictions among endpoints that
last reported at the same time: ties), an endpoint that vanishes long enough
to be idle-evicted with its alert open and comes back, a clock jump back,
duplicate and out-of-order records, bad values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import attrs
import numpy as np
import pytest

from ocad.core import Monitor, OcadConfigError
from ocad.core.plugins import PluginRegistry
from ocad.core.tooling import generate_fleet

ml_plugin = pytest.importorskip("ocad.detectors_ml._plugin")

CORE, CHURN = 14, 8  # endpoints that always report / of which 4 report at each tick
T, CUT = 320, 170
CONFIG = {"monitor": {"warmup_samples": 16, "capacity": CORE + 5, "idle_timeout_s": 300.0, "clock_reset_s": 300.0}}


def build() -> Monitor:
    return Monitor(CONFIG, registry=PluginRegistry(autoload=False, plugins=[ml_plugin]), strict=True)


def fleet():  # type: ignore[no-untyped-def]
    base = generate_fleet(CORE + CHURN, T * 5.0, seed=21, faults=False, missing_rate=0.01)
    v = base.values.copy()
    for e, sl in ((1, slice(60, 95)), (2, slice(150, 200)), (3, slice(250, 290)), (4, slice(140, 160))):
        v[e, sl, 0] *= 8.0  # udp echo RTT
        v[e, sl, 2] *= 8.0  # lbm RTT
        v[e, sl, 3] = 0.0  # lbm failing
        v[e, sl, 4] = 3.0  # CCM misses
    return attrs.evolve(base, values=v)


def tick_records(f: Any, t: int) -> list[dict[str, Any]]:
    """Tick ``t`` of the stream: a deterministic function of ``t`` (the child rebuilds it)."""
    rng = np.random.default_rng([21, t])
    recs = f.records(t)
    ids = f.endpoint_ids()
    churn = set(rng.choice(np.arange(CORE, CORE + CHURN), 4, replace=False).tolist())
    out = [r for i, r in enumerate(recs) if i < CORE or i in churn]
    # Endpoint 4 (faulty from tick 140) vanishes from 155 to 240: idle-evicted with its alert open.
    out = [r for r in out if not (r["endpoint_id"] == ids[4] and 155 <= t < 240)]
    if 200 <= t < 215:  # endpoint 5's clock jumps back 20 min, then runs from there
        for r in out:
            if r["endpoint_id"] == ids[5]:
                r["ts"] -= 1200.0
    if t % 17 == 0 and t > 0:  # a duplicate of the previous tick's record, and an out-of-order one
        out.append(dict(f.records(t - 1)[0]))
        out.append({**f.records(t)[6], "ts": float(f.ts[t]) - 7.5})
    if t % 23 == 0:  # bad values: counted, not fatal
        out[7] = {**out[7], "udp_echo_rtt_ms": "12", "lbm_success": 7, "ecpri_delay_us": float("inf"), "foo": 1}
    rng.shuffle(out)
    return out


def run(mon: Monitor, f: Any, start: int, stop: int, snapshot_at: int | None = None,
        path: Path | None = None) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for t in range(start, stop):
        if t == snapshot_at:
            assert path is not None
            mon.snapshot(path)
        events += [e.to_dict() for e in mon.observe(tick_records(f, t))]
    return events


def summary(mon: Monitor) -> dict[str, Any]:
    h = mon.health()
    return {"validation": h["validation"], "store": h["store"], "alerts": h["alerts"],
            "open": sorted(a.alert_id for a in mon.policy.open_alerts()),
            "endpoints": sorted(mon.store.endpoints())}


CHILD = r"""
import json, sys
sys.path.insert(0, sys.argv[1])
import test_reliability_snapshot as S
mon = S.build().restore(sys.argv[2])
events = S.run(mon, S.fleet(), S.CUT, S.T)
with open(sys.argv[3], "w") as f:
    json.dump({"events": events, "summary": S.summary(mon)}, f)
"""


def _canon(x: Any) -> Any:
    return json.loads(json.dumps(x))  # what crosses the process boundary


def test_snapshot_restore_in_a_new_process_gives_the_uninterrupted_alerts(tmp_path):
    f = fleet()
    snap = tmp_path / "snap"
    mon = build()
    before = run(mon, f, 0, CUT)
    assert mon.policy.open_alerts(), "an alert must be open at the cut"
    assert mon.health()["store"]["evicted_capacity"] > 0
    after = run(mon, f, CUT, T, snapshot_at=CUT, path=snap)
    assert sorted(p.name for p in snap.iterdir()) == ["state.json", "windows.npz"]

    out = tmp_path / "child.json"
    env = {**os.environ, "OCAD_PLUGINS_AUTOLOAD": "0"}
    proc = subprocess.run([sys.executable, "-c", CHILD, str(Path(__file__).parent), str(snap), str(out)],
                          env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    child = json.loads(out.read_text())

    # The stream did what it is meant to: every kind of state crossed the cut.
    h = mon.health()
    assert h["store"]["evicted_idle"] >= 1 and h["store"]["evicted_capacity"] > 0
    assert h["validation"]["clock_resets"] >= 1
    assert {"duplicate_ts", "out_of_order"} <= set(h["validation"]["dropped_records"])
    assert h["validation"]["values_rejected"] > 0
    kinds = {(e["event"], e["endpoint_id"]) for e in after}
    assert {"open", "resolve"} <= {k for k, _ in kinds}
    assert any(e["event"] == "resolve" and e["ts"] >= f.ts[CUT] for e in after)
    assert before and after

    assert child["events"] == _canon(after)
    assert child["summary"] == _canon(summary(mon))


def _core_monitor() -> Monitor:
    return Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(autoload=False))


def test_a_snapshot_interrupted_between_its_two_files_is_refused_not_mixed(tmp_path, monkeypatch):
    f = fleet()
    snap = tmp_path / "snap"
    mon = _core_monitor()
    run(mon, f, 0, 40)
    mon.snapshot(snap)  # a complete snapshot at tick 40
    run(mon, f, 40, 80)
    real, calls = os.replace, []

    def dies_at_the_second_rename(src, dst):  # type: ignore[no-untyped-def]
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("killed")  # the process dies between the two renames
        real(src, dst)

    monkeypatch.setattr(os, "replace", dies_at_the_second_rename)
    with pytest.raises(OSError, match="killed"):
        mon.snapshot(snap)
    monkeypatch.undo()
    fresh = _core_monitor()
    with pytest.raises(OcadConfigError, match="interrupted"):
        fresh.restore(snap)  # one file of tick 80, one of tick 40: refused
    assert len(fresh.store) == 0 and fresh.stats.records == 0
    mon.snapshot(snap)  # the next snapshot repairs it
    assert summary(_core_monitor().restore(snap)) == summary(mon)


@pytest.mark.parametrize("damage", ["no_policy", "bad_counts", "npz_garbage", "wrong_arrays"])
def test_a_damaged_snapshot_is_refused_and_changes_nothing(tmp_path, damage):
    f = fleet()
    snap = tmp_path / "snap"
    mon = _core_monitor()
    run(mon, f, 0, 40)
    mon.snapshot(snap)
    doc = json.loads((snap / "state.json").read_text())
    if damage == "no_policy":
        del doc["policy"]
    elif damage == "bad_counts":
        doc["policy"]["states"] = {"x": {"pending": 1}}
    elif damage == "npz_garbage":
        (snap / "windows.npz").write_bytes(b"PK\x03\x04 not a zip")
        doc.pop("windows_sha256", None)
    else:
        with np.load(snap / "windows.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays["values"] = arrays["values"][:, :3]
        np.savez(snap / "windows.npz", **arrays)
        doc.pop("windows_sha256", None)
    (snap / "state.json").write_text(json.dumps(doc))
    target = _core_monitor()
    run(target, f, 0, 5)
    before = summary(target)
    with pytest.raises(OcadConfigError, match="snapshot"):
        target.restore(snap)
    assert summary(target) == before  # not half restored
    run(target, f, 5, 10)  # and still usable
