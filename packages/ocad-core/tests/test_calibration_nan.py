"""Regression: Calibration.transform keeps NaN (cannot judge) as NaN for every table shape."""

from __future__ import annotations

import numpy as np
import pytest

from ocad.core.plugins import Calibration


@pytest.mark.parametrize("quantiles", [(0.0, 0.0, 0.0), (0.0, 1.0, 2.0), (0.0, 0.0, 1.0)])
def test_nan_stays_nan(quantiles: tuple[float, ...]) -> None:
    cal = Calibration(probs=(0.0, 0.5, 1.0), quantiles=quantiles)
    out = cal.transform(np.array([np.nan, quantiles[0], quantiles[-1] + 1.0]))
    assert np.isnan(out[0])
    assert np.all((out[1:] >= 0.0) & (out[1:] <= 1.0))
