"""The conformance kit on every registered detector (built-in, ML, third-party) and on the ML detectors."""

from __future__ import annotations

import pytest

from ocad.core import Monitor
from ocad.core.testing import check_detector
from ocad.detectors_ml import MultivariateDetector, ResidualDetector

# Whatever is installed: the built-ins, the ML detectors when shipped models exist, the example plugin, ...
REGISTERED = list(Monitor.from_defaults().detectors)


@pytest.mark.parametrize("detector", REGISTERED, ids=[d.name for d in REGISTERED])
def test_registered_detector_conforms(detector) -> None:  # type: ignore[no-untyped-def]
    check_detector(detector)


def test_residual_conforms(residual: ResidualDetector) -> None:
    check_detector(residual)


def test_multivariate_conforms(multivariate: MultivariateDetector) -> None:
    check_detector(multivariate)


def test_every_core_detector_is_checked() -> None:
    assert {"rule", "spike", "changepoint", "continuity", "concurrency"} <= {d.name for d in REGISTERED}
