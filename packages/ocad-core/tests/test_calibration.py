"""Calibration tables (``ocad.core.detectors._calibration``): raw detector scores → calibrated [0, 1]."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ocad.core.plugins import Calibration


@st.composite
def tables(draw) -> Calibration:
    """Arbitrary valid tables, with ties (discrete raw scores) and probs not spanning [0, 1]."""
    k = draw(st.integers(2, 12))
    probs = sorted(draw(st.lists(st.floats(0.0, 1.0), min_size=k, max_size=k, unique=True)))
    steps = draw(st.lists(st.sampled_from([0.0, 0.0, 0.001, 0.5, 1.0, 37.0]), min_size=k - 1, max_size=k - 1))
    q0 = draw(st.floats(-100, 100))
    qs = list(q0 + np.concatenate([[0.0], np.cumsum(steps)]))
    return Calibration(probs=probs, quantiles=qs, n=0, tail_scale=draw(st.floats(1e-3, 10.0)))


@st.composite
def fitted(draw) -> tuple[Calibration, np.ndarray]:
    n = draw(st.integers(100, 400))
    kind = draw(st.sampled_from(["continuous", "discrete", "point"]))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    if kind == "continuous":
        raw = rng.gamma(draw(st.floats(0.2, 5.0)), draw(st.floats(0.01, 100.0)), size=n)
    elif kind == "discrete":
        raw = rng.poisson(draw(st.floats(0.01, 3.0)), size=n).astype(np.float64)
    else:
        raw = np.full(n, draw(st.floats(-10, 10)))
    raw = np.r_[raw, np.full(draw(st.integers(0, 20)), np.nan)]  # NaNs are ignored by fit
    return Calibration.fit(raw), raw


def probes(cal: Calibration) -> np.ndarray:
    q = np.asarray(cal.quantiles)
    lo, hi = q[0] - 1.0, q[-1] + 10.0 * cal.tail_scale + 1.0
    return np.sort(np.concatenate([q, np.nextafter(q, -np.inf), np.nextafter(q, np.inf),
                                   np.linspace(lo, hi, 400), [-np.inf, np.inf]]))


def check_transform(cal: Calibration) -> None:
    r = probes(cal)
    out = cal.transform(r)
    assert out.shape == r.shape
    assert np.all((out >= 0.0) & (out <= 1.0))
    # Monotone non-decreasing, up to rounding: np.interp can land one ulp above a knot's value
    # just before the knot, and 1 - (1 - p) can round one ulp below p at the top of the table.
    assert np.all(np.diff(out) >= -1e-15), "transform must be monotone non-decreasing"
    assert np.isnan(cal.transform(np.array([np.nan, 1.0, np.nan]))[[0, 2]]).all()
    assert out[0] == 0.0 and out[-1] == 1.0  # -inf and +inf


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")  # 0 * inf in the masked-out tail branch
@settings(max_examples=60, deadline=None)
@given(cal=tables())
def test_transform_monotone_bounded_nan_preserving_on_any_table(cal):
    check_transform(cal)


@pytest.mark.filterwarnings("ignore:invalid value:RuntimeWarning")
@settings(max_examples=40, deadline=None)
@given(data=fitted())
def test_fitted_calibration_is_monotone_and_round_trips_through_json(data):
    cal, raw = data
    check_transform(cal)
    assert cal.n == int(np.isfinite(raw).sum())
    again = Calibration.from_dict(json.loads(json.dumps(cal.to_dict())))
    assert again == cal
    r = probes(cal)
    np.testing.assert_array_equal(again.transform(r), cal.transform(r))


def test_uniform_on_the_fitting_distribution():
    rng = np.random.default_rng(1)
    cal = Calibration.fit(rng.normal(size=200_000))
    s = cal.transform(rng.normal(size=200_000))
    assert np.mean(s > 0.99) == pytest.approx(0.01, abs=0.0015)
    assert np.mean(s > 0.9) == pytest.approx(0.10, abs=0.005)
    assert np.mean(s > 0.5) == pytest.approx(0.50, abs=0.01)
    assert np.mean(s) == pytest.approx(0.5, abs=0.01)
    # the tail keeps ordering instead of saturating
    top = cal.quantiles[-1]
    t = cal.transform(np.array([top + 0.5, top + 1.0, top + 2.0]))
    assert 0.9999 < t[0] < t[1] < t[2] < 1.0


def test_point_mass_maps_to_the_middle_of_its_mass():
    cal = Calibration.fit(np.zeros(1000))
    assert cal.transform(np.array([0.0]))[0] == pytest.approx(0.5, abs=1e-3)
    assert cal.transform(np.array([-1e-9]))[0] == 0.0
    assert cal.transform(np.array([1.0]))[0] > 0.9999


def test_discrete_scores_use_mid_p():
    raw = np.r_[np.zeros(900), np.ones(90), np.full(10, 5.0)]
    cal = Calibration.fit(raw)
    s0, s1, s5 = cal.transform(np.array([0.0, 1.0, 5.0]))
    assert s0 == pytest.approx(0.45, abs=0.06)  # the middle of the 90 % mass at zero, not 0.9
    assert s0 < s1 < s5
    assert s5 > 0.99


def test_identity():
    cal = Calibration.identity()
    x = np.array([0.0, 0.25, 0.999, 1.0])
    np.testing.assert_allclose(cal.transform(x), [0.0, 0.25, 0.999, 1.0])


@pytest.mark.parametrize("kw, match", [
    (dict(probs=(0.0,), quantiles=(1.0,)), "at least 2"),
    (dict(probs=(0.0, 0.5, 1.0), quantiles=(1.0, 2.0)), "as many"),
    (dict(probs=(0.0, 0.5, 0.5), quantiles=(1.0, 2.0, 3.0)), "increase strictly"),
    (dict(probs=(0.0, 1.0), quantiles=(2.0, 1.0)), "non-decreasing"),
    (dict(probs=(0.0, 1.0), quantiles=(0.0, np.inf)), "finite"),
    (dict(probs=(0.0, 1.0), quantiles=(0.0, 1.0), tail_scale=0.0), "tail_scale"),
])
def test_invalid_tables_refused(kw, match):
    with pytest.raises(ValueError, match=match):
        Calibration(**kw)


def test_fit_needs_100_finite_values():
    with pytest.raises(ValueError, match="at least 100"):
        Calibration.fit(np.r_[np.ones(99), np.full(50, np.nan)])
