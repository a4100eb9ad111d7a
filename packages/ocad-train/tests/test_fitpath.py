"""The fit path for any user series (#16 item 7, #15 items 1-2): short series, duplicates, large
values, one metric and many, labelled files; the store loads and changes the core detectors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from ocad.core import Monitor
from ocad.core.artifacts import ModelStore

TINY_ARGS = ["--epochs", "2", "--threads", "1", "--quiet"]
TINY_TOML = ('[forecaster]\nhidden = 8\nlevels = 2\nbatch_size = 128\nlr = 0.005\n'
             '[multivariate]\nn_estimators = 16\n')


def _main() -> Any:
    from ocad.train._cli import main

    return main


def _series(path: Path, n: int, interval_s: float, level: float, *, seed: int = 0, dups: int = 0,
            metrics: int = 1) -> Path:
    """One endpoint, ``metrics`` correlated noisy columns around ``level``, ``dups`` repeated rows."""
    rng = np.random.default_rng(seed)
    common = rng.standard_normal(n)
    cols = {("value" if metrics == 1 else f"s{j}"): level * (1 + 0.05 * (common + rng.standard_normal(n)))
            for j in range(metrics)}
    df = pd.DataFrame({"endpoint_id": "series", "ts": 1.7e9 + interval_s * np.arange(n), **cols})
    if dups:
        df = pd.concat([df, df.iloc[rng.choice(n, dups, replace=False)]])
    df.sample(frac=1.0, random_state=seed).to_csv(path, index=False)  # unsorted on purpose
    return path


def _train(tmp_path: Path, data: Path, *extra: str) -> tuple[int, str, Path]:
    store = tmp_path / "store"
    cfg = tmp_path / "tiny.toml"
    cfg.write_text(TINY_TOML)
    # --promote: the versions go live through the quality gate (train alone adds candidates)
    rc = _main()(["train", "--data", str(data), "--out", str(store), "--config", str(cfg), "--promote", *TINY_ARGS,
                  *extra])
    return rc, str(store), store


def _report(store: Path) -> dict[str, Any]:
    doc = json.loads((store / "train_report.json").read_text())
    return {d["model"]: d for d in doc["decisions"]} | {"_data": doc["data"]}


def test_200_samples_of_one_series_at_1_min_succeed_and_say_what_was_skipped(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = _series(tmp_path / "s.csv", 200, 60.0, 3.0, dups=7)
    rc, _, store = _train(tmp_path, data, "--metrics", "value")
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "SKIPPED tcn-value: too little data" in out and "SKIPPED iforest-multivariate: one metric" in out
    assert "fitted  core-calibration" in out
    rep = _report(store)
    assert rep["core-calibration"]["fitted"] and not rep["tcn-value"]["fitted"]
    assert "a forecaster needs about" in rep["tcn-value"]["reason"]
    # Duplicates dropped and counted as the Monitor does; 1-minute sampling recognised.
    assert rep["_data"]["dropped"] == {"duplicate_ts": 7} and rep["_data"]["interval_s"] == 60.0
    assert ModelStore(store).names() == ["core-calibration"]

    # The store loads (strict: nothing silently lost) and its calibration replaces the default tables.
    mon = Monitor.from_model_dir(store, strict=True)
    fresh = Monitor({"monitor": {"use_shipped_models": False}, "metrics": {"value": {}}})
    spike = {d.name: d for d in mon.detectors}["spike"]
    spike0 = {d.name: d for d in fresh.detectors}["spike"]
    assert "value" in spike.calibrations_ and "value" not in spike0.calibrations_
    cp, cp0 = ({d.name: d for d in m.detectors}["changepoint"] for m in (mon, fresh))
    assert cp.calibrations_["value"] != cp0.calibrations_.get("value")
    m = ModelStore(store).load("core-calibration").manifest
    assert m["inputs"]["metrics"] == ["value"] and m["format"] == "json"
    assert m["training_data"]["n_rows"] == 200 and m["calibration"]["tables_per_detector"]["spike"] == 1
    # ... and it runs on the rest of the series.
    rest = pd.DataFrame({"endpoint_id": "series", "ts": 1.7e9 + 60.0 * np.arange(200, 400),
                         "value": 3.0 * (1 + 0.05 * np.random.default_rng(1).standard_normal(200))})
    mon.observe(rest)
    assert mon.health()["validation"]["values_rejected"] == 0


def test_a_series_around_1e4_exports_with_the_scaled_parity_rule(tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    data = _series(tmp_path / "big.csv", 600, 1.0, 1.0e4, seed=2)
    rc, _, store = _train(tmp_path, data, "--metrics", "value")
    out = capsys.readouterr().out
    assert rc == 0, out
    art = ModelStore(store).load("tcn-value")
    par = art.manifest["parity"]
    assert par["max_diff_over_allowed"] <= 1.0 and par["scale_median"] > 5e3
    assert "max(1, scale)" in par["rule"]
    assert "short series" in _report(store)["tcn-value"]["reason"]
    mon = Monitor.from_model_dir(store, strict=True)
    assert {"residual", "spike"} <= {d.name for d in mon.detectors}


def test_eight_metric_short_set_fits_calibration_and_the_forest_only_with_enough_rows(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    short = _series(tmp_path / "mv400.csv", 400, 10.0, 20.0, metrics=8)
    rc, _, store = _train(tmp_path, short)
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = _report(store)
    assert not rep["iforest-multivariate"]["fitted"] and "the forest needs 200 / 200" in out
    cal = ModelStore(store).load("core-calibration").manifest
    assert cal["inputs"]["metrics"] == [f"s{j}" for j in range(8)]

    longer = _series(tmp_path / "mv1000.csv", 1000, 10.0, 20.0, metrics=8, seed=4)
    (tmp_path / "b").mkdir()
    rc, _, store2 = _train(tmp_path / "b", longer)
    out = capsys.readouterr().out
    assert rc == 0, out
    rep = _report(store2)
    assert rep["iforest-multivariate"]["fitted"], rep["iforest-multivariate"]["reason"]
    mon = Monitor.from_model_dir(store2, strict=True)
    assert "multivariate" in {d.name for d in mon.detectors}


def test_labelled_parquet_from_simulate_trains_on_normal_samples_only(tmp_path: Path,
                                                                     capsys: pytest.CaptureFixture[str]) -> None:
    from ocad.core.tooling import load_labelled_file
    from ocad.core.cli import main as core_main
    from ocad.train import load_table

    sim = tmp_path / "fleet.parquet"
    assert core_main(["simulate", "--endpoints", "2", "--hours", "1", "--seed", "3", "--out", str(sim)]) == 0
    df = pd.read_parquet(sim)  # really Parquet, the labelled layout
    assert "fault_type" in df.columns and (df["fault_type"] != "").any()
    # One format: the training reader and the evaluation reader agree on what is normal.
    table, run = load_table(sim), load_labelled_file(sim)
    for e, eid in enumerate(table.endpoint_ids):
        lt, codes = run.labels.per_endpoint[eid]
        np.testing.assert_array_equal(table.ts[e], lt)
        np.testing.assert_array_equal(table.normal(e), codes == 0)
    capsys.readouterr()
    rc, _, store = _train(tmp_path, sim, "--metrics", "udp_echo_rtt_ms", "--no-multivariate")
    out = capsys.readouterr().out
    assert rc == 0, out
    n_normal = int((df["fault_type"] == "").sum())
    cal = ModelStore(store).load("core-calibration").manifest
    assert cal["training_data"]["n_rows"] == n_normal < len(df)
    assert _report(store)["_data"]["labelled_abnormal"] == len(df) - n_normal
    assert _report(store)["iforest-multivariate"]["reason"].startswith("disabled")
