"""Tests of the example plugin: the conformance kit, the detector's numbers, the registration."""

from __future__ import annotations

import numpy as np
import pytest

from ocad.core import Monitor
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import ORAN_METRICS, MetricRegistry, PluginRegistry
from ocad.core.testing import check_detector, make_view
from ocad_plugin_example import PTP_OFFSET, PtpOffsetDetector
from ocad_plugin_example import plugin as example_plugin

METRICS = MetricRegistry([*ORAN_METRICS, PTP_OFFSET])


def test_conforms() -> None:
    check_detector(PtpOffsetDetector(), metrics=METRICS)


def _view_with_offsets(offsets: np.ndarray):  # type: ignore[no-untyped-def]
    view = make_view(METRICS, len(offsets), 16, scenarios=("normal",))
    j = METRICS.names().index("ptp_offset_ns")
    values = view.values.copy()
    values[:, :, j] = offsets[:, None]
    feats = FeatureEngine(METRICS).compute(values, view.ts)
    return type(view)(endpoints=view.endpoints, metrics=view.metrics, values=values, ts=view.ts,
                      capabilities=view.capabilities, features=feats, counts=view.counts)


def test_scores_grow_with_the_offset_and_match_the_calibration() -> None:
    det = PtpOffsetDetector(limit_ns=1000.0)
    s = det.score(_view_with_offsets(np.array([0.0, 50.0, -250.0, 500.0, 1000.0, -3000.0]))).scores
    assert np.all(np.diff(np.abs(s)) >= 0)
    assert s[1] == pytest.approx(0.5)       # 5 % of the budget: the median of normal offsets
    assert s[2] == pytest.approx(0.9)       # a quarter of the budget, either sign
    assert s[4] == pytest.approx(0.999)     # the budget itself
    assert s[5] > 0.9999


def test_registered_through_the_hooks() -> None:
    reg = PluginRegistry(autoload=False, plugins=[example_plugin])
    mon = Monitor({"detectors": {"ptp": {"limit_ns": 500.0}}}, registry=reg)
    det = [d for d in mon.detectors if d.name == "ptp"]
    assert det and det[0].limit_ns == 500.0
    assert "ptp_offset_ns" in mon.metrics.names()
    events = mon.observe([{"endpoint_id": "oru-1", "ts": float(t), "ptp_offset_ns": 5.0} for t in range(20)])
    assert events == []


def test_left_out_when_the_metric_is_not_watched() -> None:
    reg = PluginRegistry(autoload=False, plugins=[example_plugin])
    mon = Monitor({"monitor": {"metrics": ["udp_echo_rtt_ms"]}}, registry=reg)
    assert "ptp" not in [d.name for d in mon.detectors]
