"""CompositeDetector (``ocad.core.pipeline._composite``): capability-aware weighting and failure isolation."""

from __future__ import annotations

import logging
import math
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


def _surprise(p: float) -> float:
    """The documented surprise scale: ``min(1, -log10 p / 10)``."""
    return min(1.0, -math.log10(min(max(p, 1e-15), 1.0)) / 10.0)


def _cauchy(p: list[float], w: list[float]) -> float:
    """Weighted Cauchy combination, written out: ``T = sum w tan((1/2 - min(p, 1/2)) pi) / sum w``,
    ``p = 1/2 - arctan(T) / pi`` (``tan((1/2 - p) pi) = 1 / tan(p pi)``, exact for tiny p)."""
    terms = [0.0 if q >= 0.5 else 1.0 / math.tan(max(q, 1e-15) * math.pi) for q in p]
    t = sum(wi * ti for wi, ti in zip(w, terms)) / sum(w)
    return math.atan(1.0 / t) / math.pi if t > 0 else 0.5


def test_cauchy_combination_one_decisive_detector_dominates_and_nan_renormalises(view):
    a = Fixed("a", [1.0 - 1e-8, np.nan, 0.9, np.nan])
    b = Fixed("b", [0.0, 0.99, np.nan, np.nan])
    c = Fixed("c", [np.nan] * N)  # cannot judge anyone: not a zero
    comp = CompositeDetector([a, b, c], {"a": 2.0, "b": 1.0})
    out = comp.score(view)
    # row 0: a has p = 1e-8, b has p = 1 (no evidence, its term is 0).
    # T = (2 / tan(1e-8 pi) + 0) / 3, so p = arctan(1/T) / pi = 1.5e-8 to first order: the decisive
    # detector is not averaged away (a weighted mean of the surprises would give (2*0.8 + 0) / 3).
    p0 = math.atan(3.0 * math.tan(1e-8 * math.pi) / 2.0) / math.pi
    assert p0 == pytest.approx(1.5e-8, rel=1e-9)
    assert out.scores[0] == pytest.approx(-math.log10(1.5e-8) / 10.0, rel=1e-7)  # 0.7824
    assert out.scores[0] > (2 * 0.8 + 0.0) / 3 + 0.2
    # rows 1 and 2: one detector judges, the weights renormalise, the combined p is its own p
    np.testing.assert_allclose(out.scores[1:3], [0.2, 0.1], rtol=1e-9)  # p = 0.01 and p = 0.1
    assert np.isnan(out.scores[3])  # nobody judges
    np.testing.assert_allclose(out.pvalues[0, :2], [1e-8, 1.0], rtol=1e-7)
    np.testing.assert_allclose(out.detector_scores[0, :2], [0.8, 0.0], atol=1e-7)  # surprise of each p
    np.testing.assert_allclose(out.calibrated[0, :2], [1.0 - 1e-8, 0.0])
    # contributions: each detector's share of the statistic times the composite
    np.testing.assert_allclose(out.contributions[0], [out.scores[0], 0.0, 0.0])
    np.testing.assert_allclose(out.contributions[1], [0.0, 0.2, 0.0], rtol=1e-9)
    np.testing.assert_allclose(out.contributions[2], [0.1, 0.0, 0.0], rtol=1e-9)
    np.testing.assert_allclose(out.contributions.sum(axis=1)[:3], out.scores[:3])
    assert out.contributions[3].tolist() == [0.0, 0.0, 0.0]
    assert out.detectors == ("a", "b", "c") and out.weights.tolist() == [2.0, 1.0, 1.0]
    assert np.isnan(out.detector_scores[:, 2]).all()
    assert comp.health["c"].failures == 0  # NaN = cannot judge, not a failure


def test_cauchy_combination_hand_computed_and_weak_evidence_adds_up(make_view):
    # three detectors, equal weights; p = 0.01 on one, two or three of them, 0.5 (no evidence) elsewhere
    s = np.array([[0.99, 0.5, 0.5], [0.99, 0.99, 0.5], [0.99, 0.99, 0.99], [0.5, 0.5, 0.5]])
    dets = [Fixed(f"d{j}", s[:, j]) for j in range(3)]
    out = CompositeDetector(dets).score(make_view(np.ones((4, 4, 5))))
    cot = 1.0 / math.tan(0.01 * math.pi)  # 31.82
    want_p = [math.atan(3.0 / cot) / math.pi, math.atan(3.0 / (2.0 * cot)) / math.pi, 0.01, 0.5]
    np.testing.assert_allclose(want_p[:2], [0.02992, 0.01499], rtol=1e-3)  # by hand
    np.testing.assert_allclose(out.scores, [_surprise(q) for q in want_p], rtol=1e-9)
    assert out.scores[0] < out.scores[1] < out.scores[2]  # more detectors with evidence: more surprise
    # nothing unusual: p = 1/2, a surprise near 0 (log10(2) / 10)
    assert out.scores[3] == pytest.approx(math.log10(2.0) / 10.0) and out.scores[3] < 0.04
    np.testing.assert_allclose(out.contributions[1], [out.scores[1] / 2, out.scores[1] / 2, 0.0])


@settings(max_examples=50, deadline=None)
@given(s=hnp.arrays(np.float64, st.tuples(st.integers(1, 6), st.integers(1, 4)),
                    elements=st.one_of(st.just(np.nan), st.floats(0.0, 1.0))),
       data=st.data())
def test_composite_is_the_cauchy_combination_of_what_is_known(make_view, s, data):
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
        ps = [1.0 - float(s[i, j]) for j in range(d) if known[j]]
        ws = [w[j] for j in range(d) if known[j]]
        want = _surprise(_cauchy(ps, ws))
        assert out.scores[i] == pytest.approx(want, rel=1e-7, abs=1e-12)
        assert 0.0 <= out.scores[i] <= 1.0
        # one detector's evidence is never averaged away: the combined p is at most what that
        # detector alone gives at its weight share, arctan(tan(pi p_j) sum(w) / w_j) / pi
        bound = min([math.atan(math.tan(math.pi * max(p, 1e-15)) * wsum / wj) / math.pi
                     for p, wj in zip(ps, ws) if wj > 0 and p < 0.5] + [0.5])
        assert out.scores[i] >= _surprise(bound) - 1e-9
        assert out.contributions[i].sum() == pytest.approx(out.scores[i], abs=1e-12)
        assert (out.contributions[i][~known] == 0).all()
        for j in range(d):  # each detector's own score is the surprise of its p-value
            if known[j]:
                assert out.detector_scores[i, j] == pytest.approx(_surprise(1.0 - float(s[i, j])), abs=1e-9)


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
    good = Fixed("good", [0.9, 0.99, 0.999, 0.9999])  # p = 1e-1 .. 1e-4: surprise 0.1 .. 0.4
    bad = Fixed("bad", fn=fn)
    comp = CompositeDetector([bad, good], max_consecutive_failures=3)
    with caplog.at_level(logging.WARNING, logger="ocad.detectors"):
        for tick in range(1, 6):
            out = comp.score(view)
            np.testing.assert_allclose(out.scores, [0.1, 0.2, 0.3, 0.4], rtol=1e-9)  # others unaffected
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
    good = Fixed("good", [0.99] * N)  # p = 0.01: surprise 0.2
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
