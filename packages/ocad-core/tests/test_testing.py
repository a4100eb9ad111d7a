"""The conformance kit itself: it passes good detectors and names what is wrong with bad ones."""

from __future__ import annotations

import numpy as np
import pytest

from ocad.core.detectors import ContinuityDetector, RuleDetector, SpikeDetector
from ocad.core.plugins import ORAN_METRICS, DetectorOutput, DetectorView, MetricRegistry
from ocad.core.testing import SCENARIOS, check_detector, make_view

REG = MetricRegistry(ORAN_METRICS)


class Good:
    """Newest RTT over 30 ms, NaN where there is no RTT."""

    name = "good"
    kind = "test"
    metrics: tuple[str, ...] = ("udp_echo_rtt_ms",)
    window = 4

    def raw(self, view: DetectorView) -> np.ndarray:
        return view.features["udp_echo_rtt_ms:last"] / 30.0

    def score(self, view: DetectorView) -> DetectorOutput:
        r = self.raw(view)
        s = np.where(np.isnan(r), np.nan, np.clip(r, 0.0, 1.0))
        return DetectorOutput(scores=s, metrics=self.metrics, metric_scores=s[:, None])


def test_good_detectors_pass() -> None:
    check_detector(Good(), big_n=300)
    check_detector(SpikeDetector.from_registry(REG), big_n=300)
    check_detector(RuleDetector.from_options(REG, {}), big_n=300)
    check_detector(ContinuityDetector.from_registry(REG), big_n=300)


class ZeroForMissing(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        out = super().score(view)
        return DetectorOutput(scores=np.nan_to_num(out.scores))


class OutOfRange(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        return DetectorOutput(scores=super().score(view).scores * 3.0)


class BatchNormalised(Good):
    """Depends on the other endpoints of the batch: breaks sharding."""

    def score(self, view: DetectorView) -> DetectorOutput:
        r = self.raw(view)
        s = r / np.nanmax(r) if np.isfinite(r).any() else r
        return DetectorOutput(scores=s)


class Random(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        s = super().score(view).scores
        return DetectorOutput(scores=np.where(np.isnan(s), np.nan, np.random.default_rng().random(view.n)))


class Mutating(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        view.values[:, -1] = 0.0
        return super().score(view)


class CrashesOnOutage(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        if view.n and np.isnan(view.values).all():
            raise ValueError("no data")
        return super().score(view)


class WrongShape(Good):
    def score(self, view: DetectorView) -> DetectorOutput:
        s = super().score(view).scores
        return DetectorOutput(scores=s, metrics=self.metrics, observed=np.zeros((view.n, 2)))


class NoWindow(Good):
    window = 0


@pytest.mark.parametrize("det, check, words", [
    (ZeroForMissing(), "cannot-judge", "return NaN"),
    (OutOfRange(), "score", "outside [0, 1]"),
    (BatchNormalised(), "purity", "values differ"),
    (Random(), "determinism", "values differ"),
    (Mutating(), "score", "read-only"),
    (CrashesOnOutage(), "all-NaN windows", "no data"),
    (WrongShape(), "score", "observed has shape"),
    (NoWindow(), "protocol", "window must be an int >= 1"),
])
def test_bad_detectors_fail_with_a_clear_message(det: Good, check: str, words: str) -> None:
    with pytest.raises(AssertionError) as info:
        check_detector(det, big_n=0)
    msg = str(info.value)
    assert msg.startswith(f"check_detector({det.name!r}) [{check}"), msg
    assert words in msg


def test_generated_views_cover_every_scenario() -> None:
    v = make_view(REG, 2 * len(SCENARIOS), 16, detector_metrics=["udp_echo_rtt_ms"])
    j = v.metric_index("udp_echo_rtt_ms")
    lacks = SCENARIOS.index("lacks_detector_metrics")
    assert not v.capabilities[lacks, j] and np.isnan(v.values[lacks, :, j]).all()
    nothing = SCENARIOS.index("reports_nothing")
    assert not v.capabilities[nothing].any() and np.isnan(v.features.data[nothing]).all()
    short = SCENARIOS.index("short_history")
    assert v.counts[short] == 3 and np.isnan(v.ts[short, :-3]).all()
    for s in ORAN_METRICS:  # generated values respect each metric's valid range
        x = v.values[:, :, v.metric_index(s.name)]
        assert np.nanmin(x) >= s.low and np.nanmax(x) <= s.high
    assert make_view(REG, 0, 8).n == 0
