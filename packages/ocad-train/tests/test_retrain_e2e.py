"""The retraining flow end to end through the CLI, on a generated network (issue #15).

simulate → train (promoted through the gate) → a deliberately worse candidate is
refused → a better, warm-started candidate → shadow report (like with like, labelled)
→ promote → rollback → ``ocad retrain`` exit codes (promoted, unchanged, data error).
Small fleets, one thread, tiny models: about a minute on two shared cores.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ocad.core.artifacts import ModelStore

NAME = "tcn-udp_echo_rtt_ms"
CONFIG = """
[train]
seed = 3
core_calibration = false
[forecaster]
hidden = 8
levels = 2
batch_size = 128
lr = {lr}
max_train_windows = {train_windows}
max_eval_windows = 1500
parity_n = 1000
[multivariate]
enabled = false
"""
COMMON = ["--metrics", "udp_echo_rtt_ms", "--threads", "1", "--quiet"]


def _main() -> object:
    from importlib import metadata

    if any(ep.value == "ocad.train._plugin" for ep in metadata.entry_points(group="ocad")):
        from ocad.core.cli import main

        return main
    from ocad.train._cli import main

    return main


def test_simulate_train_gate_shadow_promote_rollback_retrain(tmp_path: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    main = _main()

    def ocad(*argv: str) -> tuple[int, str]:
        rc = main([str(a) for a in argv])  # type: ignore[operator]
        cap = capsys.readouterr()
        return rc, cap.out + cap.err

    good, worse = tmp_path / "good.toml", tmp_path / "worse.toml"
    good.write_text(CONFIG.format(lr=0.005, train_windows=2000))
    worse.write_text(CONFIG.format(lr=1e-5, train_windows=200))
    store = tmp_path / "store"
    drop = tmp_path / "drop"
    drop.mkdir()
    assert ocad("simulate", "--endpoints", 6, "--hours", 3, "--seed", 1, "--faults", "none",
                "--out", tmp_path / "week1.parquet")[0] == 0
    assert ocad("simulate", "--endpoints", 6, "--hours", 3, "--seed", 2, "--faults", "none",
                "--out", drop / "week2.parquet")[0] == 0
    assert ocad("simulate", "--endpoints", 6, "--hours", 2, "--seed", 9, "--out", tmp_path / "labelled.parquet")[0] == 0

    # 1. the first version passes the gate (beats naive; nothing active to compare with)
    rc, out = ocad("train", "--data", tmp_path / "week1.parquet", "--out", store, "--config", good, "--window", 16,
                   "--epochs", 3, "--promote", *COMMON)
    assert rc == 0, out
    st = ModelStore(store)
    assert st.active(NAME) == "1.0.0" and f"gate {NAME}@1.0.0 vs active -: PASS" in out
    rep = st.report(NAME, "1.0.0")
    assert set(rep) >= {"model", "prediction", "comparison", "detection", "operational", "dataset"}
    assert rep["prediction"]["per_metric"]["udp_echo_rtt_ms"]["beats_naive"] is True
    assert rep["dataset"]["endpoints"] == 6 and rep["dataset"]["interval_s"] == 5.0
    assert rep["operational"]["ms_per_1k_forecasts"] > 0 and rep["operational"]["model_bytes"] > 0

    # 2. a deliberately worse candidate: window 4, one epoch at a tiny learning rate -> refused, stays candidate
    rc, out = ocad("train", "--data", drop / "week2.parquet", "--out", store, "--config", worse, "--window", 4,
                   "--epochs", 1, *COMMON)
    assert rc == 0 and "1.1.0 is a candidate" in out, out
    assert st.active(NAME) == "1.0.0" and st.candidates(NAME) == ["1.1.0"]
    ratio = st.report(NAME, "1.1.0")["comparison"]["per_metric"]["udp_echo_rtt_ms"]["ratio"]
    assert ratio > 1.02
    rc, out = ocad("models", "promote", NAME, "1.1.0", "--store", store)
    assert rc == 3 and "REFUSED" in out and "MAE ratio candidate/active" in out, out
    assert st.active(NAME) == "1.0.0"

    # 3. a better candidate: warm start from the active weights, trained on the new week
    rc, out = ocad("train", "--data", drop / "week2.parquet", "--out", store, "--config", good, "--epochs", 3,
                   "--init-from", "active", *COMMON)
    assert rc == 0, out
    m = st.load(NAME, "1.2.0").manifest
    assert m["hyperparameters"]["init_from"] == f"{NAME}@1.0.0" and m["inputs"]["window"] == 16
    assert st.report(NAME, "1.2.0")["comparison"]["per_metric"]["udp_echo_rtt_ms"]["ratio"] <= 1.02

    # 4. shadow: the same detectors and metrics on both sides, only the model version differs
    rc, out = ocad("models", "shadow", "--data", tmp_path / "labelled.parquet", "--store", store,
                   "--candidate", f"{NAME}=1.2.0", "--json", tmp_path / "shadow.json", "--quiet")
    assert rc == 0, out
    sh = json.loads((tmp_path / "shadow.json").read_text())
    assert sh["labelled"] is True
    assert sh["active"]["versions"] == {NAME: "1.0.0"} and sh["candidate"]["versions"] == {NAME: "1.2.0"}
    assert sh["like_for_like"]["residual"] == {"active_metrics": ["udp_echo_rtt_ms"],
                                               "candidate_metrics": ["udp_echo_rtt_ms"], "same_metrics": True}
    assert all(d["same_metrics"] for d in sh["like_for_like"].values())
    assert sh["shadow"]["detectors"]["residual"]["n"] > 0
    for side in ("active", "candidate"):
        det = sh[side]["detection"]
        assert det["events"] > 0 and det["per_fault_type"] and det["false_alerts_per_endpoint_day"] is not None
    assert "only candidate" in out and "recall active" in out

    # 5. promote through the gate, then roll back
    rc, out = ocad("models", "promote", NAME, "1.2.0", "--store", store, "--labelled", tmp_path / "labelled.parquet")
    assert rc == 0 and "active version is now 1.2.0" in out, out
    assert "[ok] event F1 candidate" in out and "[ok] false alerts per endpoint-day candidate" in out
    rc, out = ocad("models", "show", NAME, "--store", store)
    shown = json.loads(out)
    assert shown["version"] == "1.2.0" and shown["performance_report"]["model"]["version"] == "1.2.0"
    det = shown["performance_report"]["detection"]  # the gate's labelled shadow run, both sides
    assert det["events"] == sh["candidate"]["detection"]["events"] and "event_f1" in det["active_side"]
    assert [e["action"] for e in shown["store_log"]] == ["candidate", "promote"]
    assert ocad("models", "rollback", NAME, "--store", store)[0] == 0
    assert st.active(NAME) == "1.0.0"
    assert [e["action"] for e in st.log(NAME)][-2:] == ["promote", "rollback"]

    # 6. the scheduled job (on the directory: its newest file): a new candidate through the gate; the same
    #    run again adds no version and changes nothing (exit 4); missing data is a usage/data error (exit 2)
    summary = tmp_path / "retrain.json"
    argv = ["retrain", "--data", drop, "--store", store, "--config", good, "--epochs", 3, "--threads", 1, "--quiet"]
    rc, out = ocad(*argv, "--json", summary)
    assert rc == 0 and st.active(NAME) == "1.3.0", out
    doc = json.loads(summary.read_text())
    assert doc["exit_code"] == 0 and doc["models"][0]["decision"] == "promoted"
    assert doc["models"][0]["gate"]["passed"] is True
    rc, out = ocad(*argv)
    assert rc == 4 and "same data fingerprint and metrics as 1.3.0" in out, out
    assert st.versions(NAME) == ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] and st.active(NAME) == "1.3.0"
    rc, out = ocad("retrain", "--data", tmp_path / "nowhere", "--store", store)
    assert rc == 2 and "no such file or directory" in out

    # 7. evaluating the store on labelled data refreshes the active version's report (detection section)
    assert st.report(NAME, "1.3.0")["detection"] is None
    rc, out = ocad("evaluate", "--data", tmp_path / "labelled.parquet", "--model-dir", store, "--ablation", "none", "-q")
    assert rc == 0 and "performance report refreshed" in out, out
    rep = st.report(NAME, "1.3.0")
    assert rep["detection"]["events"] > 0 and rep["detection"]["event_f1"] is not None
    assert rep["detection"]["source"] == str(tmp_path / "labelled.parquet")
    assert rep["prediction"]["per_metric"]["udp_echo_rtt_ms"]["beats_naive"] is True  # the rest is kept
