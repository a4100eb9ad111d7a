"""Tuning cannot break the run: windows from the data's bounds; the forest is tuned too (issue #15)."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("optuna")

from ocad.core.artifacts import ModelStore  # noqa: E402
from ocad.core.tooling import generate_fleet  # noqa: E402
from ocad.train import load_config, train_forecasters  # noqa: E402
from ocad.train._data import from_fleet  # noqa: E402
from ocad.train._tune import feasible_windows, tune_iforest  # noqa: E402


@pytest.fixture(scope="module")
def short_fleet() -> Any:
    """10 endpoints x 2 h: before, tuning picked window 48 here and the final training found 0 test windows."""
    return from_fleet(generate_fleet(n_endpoints=10, duration_s=2 * 3600, interval_s=5.0, seed=0))


def test_the_search_space_only_holds_windows_the_data_supports(short_fleet: Any, tiny_config: dict) -> None:
    cfg = load_config(tiny_config).forecaster
    from ocad.train._forecaster import MIN_WINDOWS

    ok, counts = feasible_windows(short_fleet, "udp_echo_rtt_ms", cfg, seed=3)
    assert ok and max(ok) < 48, counts  # 48 was picked before; its test split is empty here
    enough = {w: all(counts[w][s] >= n for s, n in MIN_WINDOWS.items()) for w in counts}
    assert ok == sorted(w for w, e in enough.items() if e)
    assert counts[48]["test"] < MIN_WINDOWS["test"]


def test_tuning_on_the_short_fleet_trains_and_publishes(short_fleet: Any, tiny_config: dict, tmp_path: Path) -> None:
    cfg = copy.deepcopy(tiny_config)
    cfg["forecaster"].update(max_train_windows=1500, parity_n=1000, save_datasets=False)
    cfg["tune"] = {"epochs": 1}
    (art,) = train_forecasters(short_fleet, ["udp_echo_rtt_ms"], cfg, tmp_path, progress=False, tune_trials=3)
    tuning = art.manifest["hyperparameters"]["tuning"]
    assert tuning["n_trials"] == 3 and art.manifest["inputs"]["window"] in tuning["search_space"]["window"]
    assert 48 not in tuning["search_space"]["window"]
    assert ModelStore(tmp_path).candidates(art.name) == [art.version]


def test_too_little_data_for_any_window_fails_before_the_first_trial(tiny_config: dict) -> None:
    from ocad.core import OcadError
    from ocad.train._tune import tune_forecaster

    tiny = from_fleet(generate_fleet(n_endpoints=2, duration_s=1200, interval_s=5.0, seed=0))
    with pytest.raises(OcadError, match="no window of .* leaves enough usable windows"):
        tune_forecaster(tiny, "udp_echo_rtt_ms", load_config(tiny_config).forecaster, 2, progress=False)


def test_forest_tuning_uses_labelled_validation_rows_and_bounds_max_samples() -> None:
    rng = np.random.default_rng(0)
    x_train = rng.normal(size=(150, 6)).astype(np.float32)
    x_val = rng.normal(size=(400, 6)).astype(np.float32)
    labels = np.zeros(400, np.int16)
    labels[:20] = 3
    x_val[:20] += 4.0
    res = tune_iforest(x_train, x_val, labels, {}, 4, seed=1)
    assert res is not None and res["n_trials"] == 4
    assert res["search_space"]["max_samples"] == [64, 128]  # bounded by the 150 training rows
    assert res["best_params"]["max_samples"] in (64, 128) and res["best_value"] > 0.5
    assert tune_iforest(x_train, x_val, np.zeros(400, np.int16), {}, 2) is None  # no anomalies: skipped


def test_a_short_series_is_tuned_in_its_planned_split(tiny_config: dict, tmp_path: Path) -> None:
    from ocad.train import train_all

    short = from_fleet(generate_fleet(n_endpoints=1, duration_s=3600, interval_s=5.0, seed=2, faults=False))
    cfg = copy.deepcopy(tiny_config)
    cfg["forecaster"].update(window=32, max_train_windows=1500, parity_n=1000, save_datasets=False)
    cfg["train"].update(metrics=["udp_echo_rtt_ms"], core_calibration=False)
    cfg["multivariate"] = {"enabled": False}
    cfg["tune"] = {"epochs": 1}
    res = train_all(cfg, tmp_path, data=short, progress=False, tune_trials=2)
    (art,) = list(res)
    h = art.manifest["hyperparameters"]
    assert "short series" in res.decisions[0].reason and list(h["fractions"]) != [0.6, 0.2, 0.2]
    assert h["tuning"]["n_trials"] == 2 and h["window"] in h["tuning"]["search_space"]["window"]
