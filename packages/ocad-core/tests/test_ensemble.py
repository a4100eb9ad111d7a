"""CompositeDetector (``ocad.core.pipeline._composite``): capability-aware weighting and failure isolation."""

from __future__ import annotations

import logging
import time
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ocad.core import OcadConfigError
from ocad.core.pipeline import CompositeDetector
from ocad.core.plugins import DetectorOutput

N = 4


class Fixed:
    """A detector returning given scores (or whatever ``fn`` returns)."""

    def __init__(self, name: str, scores: Any = None, *, kind: str | None = None, window: int = 8, fn=None) -> None:
        self.name, self.kind, self.metrics, self.window = name, kind or name, ("udp_echo_rtt_ms",), window
        self._scores, self._fn = scores, fn
        self.calls = 0

    def score(self, view):
        self.calls += 1
        if self._fn is not None:
            return self._fn(view, self.calls)
        return DetectorOutput(scores=np.asarray(self._scores, dtype=np.float64))


@pytest.fixture
def view(make_view):
    return make_view(np.ones((N, 8, 5)))


def test_weighted_mean_renormalises_over_detectors_that_judge(view):
    a = Fixed("a", [0.9, np.nan, 0.2, np.nan])
    b = Fixed("b", [0.3, 0.6, np.nan, np.nan])
    c = Fixed("c", [np.nan] * N)  # cannot judge anyone: not a zero
    comp = CompositeDetector([a, b, c], {"a": 2.0, "b": 1.0})
    out = comp.score(view)
    np.testing.assert_allclose(out.scores[:3], [(2 * 0.9 + 0.3) / 3, 0.6, 0.2])
    assert np.isnan(out.scores[3])
    np.testing.assert_allclose(out.contributions[0], [2 * 0.9 / 3, 0.3 / 3, 0.0])
    np.testing.assert_allclose(out.contributions[1], [0.0, 0.6, 0.0])
    np.testing.assert_allclose(out.contributions.sum(axis=1)[:3], out.scores[:3])
    assert out.contributions[3].tolist() == [0.0, 0.0, 0.0]
    assert out.detectors == ("a", "b", "c") and out.weights.tolist() == [2.0, 1.0, 1.0]
    assert np.isnan(out.detector_scores[:, 2]).all()
    assert comp.health["c"].failures == 0  # NaN = cannot judge, not a failure


@settings(max_examples=50, deadline=None)
@given(s=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
                    elements=st.one_of(st.just(np.nan), st.floats(0.0, 1.0))),
       data=st.data())
def test_composite_is_the_weighted_mean_of_what_is_known(make_view, s, data):
    n, d = s.shape
    w = data.draw(st.lists(st.sampled_from([0.0, 0.5, 1.0, 1.5, 3.0]), min_size=d, max_size=d))
    dets = [Fixed(f"d{j}", s[:, j]) for j in range(d)]
    out = CompositeDetector(dets, {f"d{j}": w[j] for j in range(d)}).score(make_view(np.ones((n, 4, 5))))
    for i in range(n):
        known = ~np.isnan(s[i])
        wsum = float(np.dot(known, w))
        if wsum == 0:
            assert np.isnan(out.scores[i]) and (out.contributions[i] == 0).all()
            continue
        want = float(np.nansum(np.where(known, s[i], 0.0) * w)) / wsum
        assert out.scores[i] == pytest.approx(want, abs=1e-12)
        assert 0.0 <= out.scores[i] <= 1.0
        assert out.contributions[i].sum() == pytest.approx(out.scores[i], abs=1e-12)
        assert (out.contributions[i][~known] == 0).all()


def _raise(view, k):
    raise RuntimeError(f"boom {k}")


BROKEN = {
    "raises": (lambda v, k: _raise(v, k), "RuntimeError: boom"),
    "wrong_shape": (lambda v, k: DetectorOutput(scores=np.zeros(v.n + 1)), "shape"),
    "out_of_range": (lambda v, k: DetectorOutput(scores=np.full(v.n, 1.5)), "outside [0, 1]"),
    "negative": (lambda v, k: DetectorOutput(scores=np.full(v.n, -0.1)), "outside [0, 1]"),
    "not_an_output": (lambda v, k: np.zeros(v.n), "AttributeError"),
    "bad_evidence": (lambda v, k: DetectorOutput(scores=np.zeros(v.n), metrics=("m",),
                                                 observed=np.zeros((v.n, 3))), "observed"),
}


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_broken_detector_is_isolated_counted_and_disabled(view, kind, caplog):
    fn, msg = BROKEN[kind]
    good = Fixed("good", [0.1, 0.2, 0.3, 0.4])
    bad = Fixed("bad", fn=fn)
    comp = CompositeDetector([bad, good], max_consecutive_failures=3)
    with caplog.at_level(logging.WARNING, logger="ocad.detectors"):
        for tick in range(1, 6):
            out = comp.score(view)
            np.testing.assert_allclose(out.scores, [0.1, 0.2, 0.3, 0.4])  # others unaffected
            assert np.isnan(out.detector_scores[:, 0]).all()
            h = comp.health["bad"]
            assert h.failures == min(tick, 3) and h.calls == min(tick, 3)
            assert msg in h.last_error
            assert h.disabled == (tick >= 3)
    assert h.skipped == 2 and bad.calls == 3
    assert "3 consecutive failures" in h.disabled_reason and msg in h.disabled_reason
    assert comp.health["good"].failures == 0 and comp.health["good"].calls == 5
    report = comp.health_report()["bad"]
    assert report["disabled"] is True and report["failures"] == 3
    assert any("bad" in r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


def test_consecutive_failures_reset_on_success(view):
    flaky = Fixed("flaky", fn=lambda v, k: _raise(v, k) if k % 2 else DetectorOutput(scores=np.full(v.n, 0.5)))
    comp = CompositeDetector([flaky], max_consecutive_failures=2)
    for _ in range(10):
        comp.score(view)
    h = comp.health["flaky"]
    assert h.failures == 5 and h.consecutive_failures == 0 and not h.disabled and h.calls == 10


def test_slow_detector_dropped_and_skipped_for_cooldown(view):
    # Generous margins: the good detector must stay under the budget on a loaded machine too.
    def slow(v, k):
        time.sleep(0.4)
        return DetectorOutput(scores=np.full(v.n, 0.9))

    s = Fixed("slow", fn=slow)
    good = Fixed("good", [0.2] * N)
    comp = CompositeDetector([s, good], time_budget_s=0.25, budget_cooldown_ticks=2)
    out = comp.score(view)
    np.testing.assert_allclose(out.scores, 0.2)  # the late result is dropped
    h = comp.health["slow"]
    assert h.over_budget == 1 and h.cooldown == 2 and "budget" in h.last_error and h.total_time_s >= 0.4
    for _ in range(2):
        np.testing.assert_allclose(comp.score(view).scores, 0.2)
    assert s.calls == 1 and h.skipped == 2 and h.cooldown == 0
    comp.score(view)
    assert s.calls == 2 and h.over_budget == 2 and not h.disabled  # over budget is not a failure
    assert comp.health["good"].over_budget == 0 and comp.health["good"].calls == 4


def test_construction_errors():
    with pytest.raises(OcadConfigError, match="unique"):
        CompositeDetector([Fixed("a"), Fixed("a")])
    for w in (-1.0, float("nan"), "1", True):
        with pytest.raises(OcadConfigError, match=r"detectors\.a\.weight"):
            CompositeDetector([Fixed("a")], {"a": w})


def test_window_kinds_and_empty(view):
    comp = CompositeDetector([Fixed("a", window=8), Fixed("b", kind="spike", window=32)])
    assert comp.window == 32 and comp.kinds == ("a", "spike")
    out = CompositeDetector([]).score(view)
    assert out.scores.shape == (N,) and np.isnan(out.scores).all()
    assert CompositeDetector([]).window == 1
