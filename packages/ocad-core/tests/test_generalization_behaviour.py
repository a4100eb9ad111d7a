"""Detection behaviour that must hold on networks the defaults never saw (issue #16).

Each test builds its own small series (not the simulator the defaults were tuned on):
heavy-tailed Student-t noise, a user metric with no declared direction, a daily
pattern, a drift over hours. ``Monitor`` with its defaults, no calibration on the data.
"""

from __future__ import annotations

import numpy as np
import pytest

pd = pytest.importorskip("pandas")

from ocad.core import Monitor
from ocad.core.plugins import PluginRegistry

T0 = 1_767_225_600.0


def kpi_monitor(**monitor: object) -> Monitor:
    """Defaults, one user metric ``kpi`` whose bad direction is not declared."""
    cfg = {"metrics": {"kpi": {}}, "monitor": {"use_shipped_models": False, "metrics": ["kpi"], **monitor}}
    return Monitor(cfg, registry=PluginRegistry(autoload=False))


def feed(mon: Monitor, x: np.ndarray, dt: float = 5.0) -> list:
    ts = T0 + dt * np.arange(x.size)
    return mon.observe_columns(np.array(["e1"] * x.size, dtype=object), ts, {"kpi": x})


def heavy_tailed(n: int, seed: int = 0) -> np.ndarray:
    return 10.0 + np.random.default_rng(seed).standard_t(3, n) * 0.5


def opened_at(events: list, dt: float = 5.0) -> list[float]:
    return [(e.ts - T0) / dt for e in events if e.event == "open"]


def test_scores_of_normal_data_concentrate_near_zero() -> None:
    mon = kpi_monitor()
    x = heavy_tailed(3000, seed=1)
    df = mon.score_frame(pd.DataFrame({"endpoint_id": ["e1"] * x.size, "ts": T0 + 5.0 * np.arange(x.size),
                                       "kpi": x}), as_frame=False)
    after = df["composite"][400:]  # past the 30-minute warm-up
    assert np.nanmedian(after) < 0.1
    assert np.nanquantile(after, 0.99) < 0.4
    assert mon.last_events == []


def test_a_lone_blip_never_opens_an_alert() -> None:
    x = heavy_tailed(4000)
    x[np.arange(800, x.size, 240)] *= 5.0  # one-sample blips x5, every 20 minutes
    assert opened_at(feed(kpi_monitor(), x)) == []


def test_a_fault_on_every_other_sample_opens_an_alert() -> None:
    x = heavy_tailed(4000, seed=0)
    x[2000:2060:2] *= 3.0
    opens = opened_at(feed(kpi_monitor(), x))
    assert len(opens) == 1 and 2000 <= opens[0] <= 2030


def test_a_halving_of_a_metric_with_no_declared_direction_opens_an_alert() -> None:
    x = heavy_tailed(4000, seed=3)
    x[2000:2200] *= 0.5
    opens = opened_at(feed(kpi_monitor(), x))
    # One alert for the halving, at its start. (On this seed a second one opens ~8 min after the
    # recovery: a known false alert, listed in docs/quality.md, not asserted away here.)
    assert opens and 2000 <= opens[0] <= 2010 and sum(2000 <= o < 2200 for o in opens) == 1


def test_a_clean_daily_pattern_does_not_alert() -> None:
    n = 2 * 1440  # two days at 60 s
    rng = np.random.default_rng(4)
    x = 10.0 * (1.0 + 0.4 * np.sin(2 * np.pi * np.arange(n) / 1440)) + rng.normal(0.0, 0.3, n)
    assert feed(kpi_monitor(), x, dt=60.0) == []


@pytest.mark.xfail(strict=True, reason="known gap (issue #16): on a quiet metric the level detector's shipped "
                   "prior, fitted on a simulator with diurnal swings, rates a +60 % drift over 2 h as weak "
                   "evidence; the alert opens at the loopback failures, not 10 min before")
def test_a_drift_over_two_hours_opens_before_the_failure() -> None:
    """RTT +60 % over 2 h, then loopback failures: the alert comes at least 10 min before them."""
    mon = Monitor({"monitor": {"use_shipped_models": False}}, registry=PluginRegistry(autoload=False))
    rng = np.random.default_rng(5)
    dt, n = 5.0, 4 * 720  # 4 h
    start, fail = 720, 720 + 1440  # drift from 1 h to 3 h, failures from 3 h
    ramp = np.clip((np.arange(n) - start) / (fail - start), 0.0, 1.0)
    rtt = 4.0 * (1.0 + 0.6 * ramp) + rng.normal(0.0, 0.12, n)
    ok = np.where(np.arange(n) >= fail, 0.0, 1.0)
    events = mon.observe_columns(np.array(["e1"] * n, dtype=object), T0 + dt * np.arange(n),
                                 {"udp_echo_rtt_ms": rtt, "lbm_rtt_ms": rtt * 1.02, "lbm_success": ok})
    opens = opened_at(events)
    assert opens and start <= opens[0] <= fail - 600 / dt


@pytest.mark.parametrize("cut", [1000, 2100])
def test_warm_up_and_adaptation_state_survive_snapshot_and_restore_exactly(tmp_path, cut: int) -> None:
    x = heavy_tailed(3000, seed=6)
    x[2000:2200] *= 0.5
    ts = T0 + 5.0 * np.arange(x.size)
    ids = np.array(["e1"] * x.size, dtype=object)
    whole = kpi_monitor()
    ref = whole.score_frame(pd.DataFrame({"endpoint_id": ids, "ts": ts, "kpi": x}), as_frame=False)
    first = kpi_monitor()
    head = first.score_frame(pd.DataFrame({"endpoint_id": ids[:cut], "ts": ts[:cut], "kpi": x[:cut]}), as_frame=False)
    first.snapshot(tmp_path / "s")
    second = kpi_monitor().restore(tmp_path / "s")
    for name, arr in first.store.extra.items():  # every stage's per-row state, bit for bit
        r1, r2 = first.store.lookup(["e1"]), second.store.lookup(["e1"])
        np.testing.assert_array_equal(arr[r1], second.store.extra[name][r2], err_msg=name)
    tail = second.score_frame(pd.DataFrame({"endpoint_id": ids[cut:], "ts": ts[cut:], "kpi": x[cut:]}),
                              as_frame=False)
    got = np.concatenate([head["composite"], tail["composite"]])
    np.testing.assert_array_equal(got, ref["composite"])
