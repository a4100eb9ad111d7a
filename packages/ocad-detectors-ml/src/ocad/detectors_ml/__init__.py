"""OCAD ML detectors: trained ONNX models run with onnxruntime (never torch, never scikit-learn).

Installing this package is all it takes: its ``ml`` plugin (entry point group
``ocad``) adds two detectors to ``Monitor.from_defaults()`` when the shipped
default models are present, and builds them from trained artifacts in
``Monitor.from_model_dir(path)``:

* :class:`ResidualDetector` (``residual``): per metric, how far the newest value
  is above a TCN forecast of it, standardised by the forecaster's validation
  residuals and calibrated;
* :class:`MultivariateDetector` (``multivariate``): an Isolation Forest over each
  endpoint's window features, with an explicit policy for missing metrics.

Both run one ``session.run`` per model per tick for all endpoints. Session
options come from the Monitor config's ``[onnxruntime]`` table
(:class:`SessionConfig`; defaults: one intra-op thread, CPU provider).

Example::

    from ocad.core import Monitor

    mon = Monitor.from_model_dir("models/")      # artifacts written by ocad-train
    print([d.name for d in mon.detectors])       # [..., 'residual', 'multivariate']
"""

from __future__ import annotations

from ._multivariate import MULTIVARIATE_KIND, MultivariateDetector
from ._plugin import build_detectors, models_dir, shipped_artifacts
from ._residual import FORECASTER_KIND, Forecaster, ResidualDetector
from ._session import DEFAULT_SESSION_OPTIONS, SessionConfig, load_session

try:  # the version lives in pyproject.toml only
    from importlib import metadata as _metadata

    __version__ = _metadata.version("ocad-detectors-ml")
except _metadata.PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "DEFAULT_SESSION_OPTIONS",
    "FORECASTER_KIND",
    "Forecaster",
    "MULTIVARIATE_KIND",
    "MultivariateDetector",
    "ResidualDetector",
    "SessionConfig",
    "build_detectors",
    "load_session",
    "models_dir",
    "shipped_artifacts",
]
