"""Shared fixtures of the ocad-train tests: a tiny fleet and tiny training configs.

Tests run with ``--import-mode=importlib``; helpers are fixtures, not imports.
Everything trains on one thread with models of a few hundred parameters, so the
whole suite stays well under a minute and a half on two shared cores.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest

TINY: dict[str, Any] = {
    "train": {"seed": 3},
    "forecaster": {
        "window": 16, "hidden": 8, "levels": 2, "epochs": 3, "patience": 3, "batch_size": 128, "lr": 5e-3,
        "max_train_windows": 3000, "max_eval_windows": 2000, "threads": 1, "parity_n": 10_000,
    },
}


@pytest.fixture(scope="session")
def fleet() -> Any:
    from ocad.core.tooling import generate_fleet

    return generate_fleet(n_endpoints=6, duration_s=2.5 * 3600, interval_s=5.0, seed=3)


@pytest.fixture
def tiny_config() -> dict[str, Any]:
    """A fresh copy of the tiny training config (mapping in the TOML layout)."""
    return copy.deepcopy(TINY)


@pytest.fixture(scope="session")
def trained(fleet: Any, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One forecaster trained on the tiny fleet into a store (shared, read-only)."""
    from ocad.train import train_forecasters

    store = tmp_path_factory.mktemp("store")
    (art,) = train_forecasters(fleet, ["udp_echo_rtt_ms"], copy.deepcopy(TINY), store, progress=False)
    return art


@pytest.fixture
def kpi_csv(tmp_path: Path) -> Path:
    """A wide CSV with a user KPI ``my_kpi`` (noise around per-endpoint levels), ISO timestamps."""
    import pandas as pd

    rng = np.random.default_rng(5)
    rows = []
    t0 = pd.Timestamp("2026-03-01T00:00:00Z")
    for e in range(4):
        level = 10.0 + 20.0 * e
        v = level * (1 + 0.05 * rng.standard_normal(900))
        ts = t0 + pd.to_timedelta(np.arange(900) * 10, unit="s")
        rows.append(pd.DataFrame({"endpoint_id": f"ep-{e}", "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                                  "my_kpi": v.round(4)}))
    path = tmp_path / "my.csv"
    pd.concat(rows).to_csv(path, index=False)
    return path
