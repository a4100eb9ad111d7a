"""The quality gate's decisions from the numbers in the reports (no training; issue #15)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ocad.core import OcadConfigError
from ocad.core.artifacts import ModelStore, write_artifact
from ocad.train._perf import gate

NAME = "tcn-m"


def _version(st: ModelStore, version: str, kind: str = "forecaster") -> None:
    manifest = {"name": NAME, "kind": kind, "format": "onnx", "version": version, "inputs": {"metrics": ["m"]},
                "calibration": {}, "library_versions": {}}
    write_artifact(st.version_dir(NAME, version), manifest, {"model": ("model.onnx", b"x")})


def _report(mae: float, naive: float, active: str | None = None, active_mae: float | None = None) -> dict[str, Any]:
    rep: dict[str, Any] = {"prediction": {"per_metric": {"m": {"mae": mae, "naive_mae": naive,
                                                               "beats_naive": mae < naive}}},
                           "comparison": None}
    if active is not None:
        rep["comparison"] = {"active_version": active, "per_metric": {
            "m": {"mae": active_mae, "naive_mae": naive, "ratio": mae / active_mae}}}
    return rep


@pytest.fixture
def store(tmp_path: Path) -> ModelStore:
    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0")
    st.promote(NAME, "1.0.0")
    _version(st, "1.1.0")
    return st


def _checks(v: Any) -> dict[str, bool]:
    return {c["check"]: c["passed"] for c in v.checks}


def test_beating_naive_and_the_active_version_within_the_tolerance_passes(store: ModelStore) -> None:
    store.write_report(NAME, "1.1.0", _report(0.50, 0.70, "1.0.0", 0.495))  # 1 % worse: within 1.02
    v = gate(store, NAME, "1.1.0")
    assert v.passed and _checks(v) == {"beats_naive": True, "not_worse_than_active": True}
    assert not gate(store, NAME, "1.1.0", mae_tolerance=1.005).passed
    with pytest.raises(OcadConfigError, match="tolerance"):
        gate(store, NAME, "1.1.0", mae_tolerance=0.9)


def test_not_beating_naive_or_worse_than_active_is_refused(store: ModelStore) -> None:
    store.write_report(NAME, "1.1.0", _report(0.80, 0.70, "1.0.0", 0.50))
    v = gate(store, NAME, "1.1.0")
    assert not v.passed and _checks(v) == {"beats_naive": False, "not_worse_than_active": False}
    assert any("does not beat the naive" in r for r in v.reasons())
    assert any("MAE ratio candidate/active 1.6" in r for r in v.reasons())


def test_a_comparison_with_a_version_no_longer_active_is_refused_until_measured_again(store: ModelStore) -> None:
    store.write_report(NAME, "1.1.0", _report(0.50, 0.70, "0.9.0", 0.60))
    v = gate(store, NAME, "1.1.0")
    assert not v.passed and "give --data FILE" in " ".join(v.reasons())


def test_labelled_detection_may_not_lose_f1_or_add_false_alerts(store: ModelStore) -> None:
    store.write_report(NAME, "1.1.0", _report(0.50, 0.70, "1.0.0", 0.50))

    def det(f1: float, fa: float) -> dict[str, Any]:
        return {"event_f1": f1, "false_alerts_per_endpoint_day": fa}

    same = {"active": {"detection": det(0.8, 1.0)}, "candidate": {"detection": det(0.8, 1.0)}}
    assert gate(store, NAME, "1.1.0", detection=same).passed
    lower_f1 = {"active": {"detection": det(0.8, 1.0)}, "candidate": {"detection": det(0.7, 0.5)}}
    assert _checks(gate(store, NAME, "1.1.0", detection=lower_f1))["event_f1"] is False
    more_false = {"active": {"detection": det(0.8, 1.0)}, "candidate": {"detection": det(0.9, 1.5)}}
    v = gate(store, NAME, "1.1.0", detection=more_false)
    assert not v.passed and _checks(v)["false_alerts_per_endpoint_day"] is False
    assert gate(store, NAME, "1.1.0", detection=more_false, false_alert_tolerance=0.5).passed
    unlabelled = {"active": {"detection": {"alerts": 3}}, "candidate": {"detection": {"alerts": 9}}}
    assert gate(store, NAME, "1.1.0", detection=unlabelled).passed  # no events: F1 not checked, stated
    assert "not checked" in gate(store, NAME, "1.1.0", detection=unlabelled).checks[-1]["detail"]


def test_the_active_version_and_an_unscored_forest_are_not_promoted_by_the_gate(tmp_path: Path) -> None:
    st = ModelStore(tmp_path).init()
    _version(st, "1.0.0", kind="multivariate")
    assert gate(st, NAME, "1.0.0").passed  # the first forest: nothing to compare with
    st.promote(NAME, "1.0.0")
    assert not gate(st, NAME, "1.0.0").passed  # already active
    _version(st, "1.1.0", kind="multivariate")
    v = gate(st, NAME, "1.1.0")
    assert not v.passed and "--labelled" in v.reasons()[0]
    det = {"active": {"detection": {"event_f1": 0.5, "false_alerts_per_endpoint_day": 1.0}},
           "candidate": {"detection": {"event_f1": 0.6, "false_alerts_per_endpoint_day": 0.9}}}
    assert gate(st, NAME, "1.1.0", detection=det).passed
