"""JSON-serialisable scalers (``ocad.core.artifacts._scalers``)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ocad.core.artifacts import RobustScaler, StandardScaler, scaler_from_dict
from ocad.core.plugins import Scaler

SCALERS = [StandardScaler, RobustScaler]

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)
with_nan = st.one_of(finite, finite, finite, st.just(np.nan))
matrices = hnp.arrays(np.float64, st.tuples(st.integers(1, 30), st.integers(1, 4)), elements=with_nan)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy on all-NaN columns
@pytest.mark.parametrize("cls", SCALERS)
@settings(max_examples=40, deadline=None)
@given(x=matrices, data=st.data())
def test_inverse_transform_undoes_transform(cls, x, data):
    s = cls().fit(x)
    probe = data.draw(hnp.arrays(np.float64, (data.draw(st.integers(1, 10)), x.shape[1]), elements=with_nan))
    z = s.transform(probe)
    assert z.shape == probe.shape
    np.testing.assert_array_equal(np.isnan(z), np.isnan(probe))
    back = s.inverse_transform(z)
    np.testing.assert_allclose(back, probe, rtol=1e-9, atol=1e-9 * (1 + np.nanmax(np.abs(probe), initial=0)))
    np.testing.assert_allclose(s.transform(s.inverse_transform(z)), z, rtol=1e-7, atol=1e-6)
    # fitted parameters are finite and the scale is positive, whatever the data (constant, all-NaN, ...)
    params = s.to_dict()
    assert np.all(np.isfinite(params["scale"])) and np.all(np.asarray(params["scale"]) > 0)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("cls", SCALERS)
@settings(max_examples=30, deadline=None)
@given(x=matrices)
def test_to_dict_json_round_trip(cls, x):
    s = cls().fit(x)
    d = json.loads(json.dumps(s.to_dict()))
    r = scaler_from_dict(d)
    assert type(r) is cls
    np.testing.assert_array_equal(r.transform(x), s.transform(x))
    np.testing.assert_array_equal(r.inverse_transform(x), s.inverse_transform(x))
    assert r.to_dict() == s.to_dict()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_standard_scaler_numbers():
    x = np.array([[1.0, 10.0, np.nan], [3.0, 10.0, np.nan], [np.nan, 10.0, np.nan], [5.0, 10.0, np.nan]])
    s = StandardScaler().fit(x)
    np.testing.assert_allclose(s.mean_, [3.0, 10.0, 0.0])
    np.testing.assert_allclose(s.scale_, [np.sqrt(8 / 3), 1.0, 1.0])  # ddof 0; constant / empty column → 1
    np.testing.assert_allclose(s.transform([[3.0, 12.0, 1.0]]), [[0.0, 2.0, 1.0]])


def test_robust_scaler_numbers():
    x = np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan])
    s = RobustScaler().fit(x)  # 1-D input is one column
    assert s.center_.tolist() == [3.0]
    assert s.scale_[0] == pytest.approx((4.0 - 2.0) / 1.349)
    assert s.transform(np.array([[3.0 + 2.0 / 1.349]]))[0, 0] == pytest.approx(1.0)


@pytest.mark.parametrize("cls", SCALERS)
def test_unfitted_and_bad_shapes(cls):
    with pytest.raises(ValueError, match="not fitted"):
        cls().transform(np.zeros((2, 1)))
    with pytest.raises(ValueError, match="not fitted"):
        cls().to_dict()
    with pytest.raises(ValueError, match="1-D or 2-D"):
        cls().fit(np.zeros((2, 2, 2)))
    assert isinstance(cls(), Scaler)


def test_scaler_from_dict_unknown_type():
    with pytest.raises(ValueError, match="unknown scaler type 'minmax'"):
        scaler_from_dict({"type": "minmax"})
