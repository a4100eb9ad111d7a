"""A PTP time-offset metric and a calibrated detector for it.

``ptp_offset_ns`` is the offset of an O-RU's / O-DU's PTP clock (IEEE 1588,
ITU-T G.8275.1 telecom profile) from its master, in nanoseconds, signed. The
detector judges the *smoothed* offset (the FeatureEngine's EWMA of the window)
against a time-error budget, so that one noisy sample does not alarm but a
clock drifting away does.

The detector implements the :class:`ocad.core.plugins.Detector` protocol without
inheriting anything: ``name``, ``kind``, ``metrics``, ``window`` and
``score(view)``. It reads features the Monitor already computed for every
registered metric (``view.features["ptp_offset_ns:ewma"]``), so it costs a few
numpy operations per tick for all endpoints at once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ocad.core import MetricSpec, OcadConfigError
from ocad.core.plugins import Calibration, DetectorOutput, DetectorView

__all__ = ["DEFAULT_CALIBRATION", "PTP_OFFSET", "PtpOffsetDetector"]

PTP_OFFSET = MetricSpec(
    "ptp_offset_ns", unit="ns", low=-1e9, high=1e9,
    description="PTP clock offset from the master (signed, nanoseconds).",
)

#: Raw score r = |EWMA offset| / limit_ns → calibrated score, used until fit() on your own normal data:
#: a quarter of the budget is already unusual (0.9), half of it rare (0.99), the budget itself 0.999.
DEFAULT_CALIBRATION = Calibration(probs=(0.0, 0.5, 0.9, 0.99, 0.999),
                                  quantiles=(0.0, 0.05, 0.25, 0.5, 1.0), tail_scale=0.25)


@dataclass
class PtpOffsetDetector:
    """|EWMA of the PTP offset| against a time-error budget, calibrated to [0, 1].

    Parameters
    ----------
    limit_ns:
        The time-error budget. Default 1100 ns: ITU-T G.8271.1's network limit
        for the time error at the end application (class A).
    window:
        Samples of history used (the Monitor keeps at least this many).

    >>> det = PtpOffsetDetector(limit_ns=1000.0)
    >>> det.name, det.kind, det.metrics
    ('ptp', 'ptp', ('ptp_offset_ns',))
    """

    limit_ns: float = 1100.0
    window: int = 16
    name: str = "ptp"
    kind: str = "ptp"
    metrics: tuple[str, ...] = ("ptp_offset_ns",)
    calibration_: Calibration = field(default_factory=lambda: DEFAULT_CALIBRATION)

    def __post_init__(self) -> None:
        if not self.limit_ns > 0:
            raise OcadConfigError(f"detectors.ptp.limit_ns = {self.limit_ns!r}: must be > 0")
        if self.window < 2:
            raise OcadConfigError(f"detectors.ptp.window = {self.window!r}: must be >= 2")

    @classmethod
    def from_options(cls, options: Mapping[str, Any]) -> PtpOffsetDetector:
        """Build from the ``[detectors.ptp]`` config table (``limit_ns``, ``window``)."""
        unknown = set(options) - {"limit_ns", "window"}
        if unknown:
            raise OcadConfigError(f"detectors.ptp: unknown option(s) {sorted(unknown)}; use limit_ns, window")
        return cls(limit_ns=float(options.get("limit_ns", 1100.0)), window=int(options.get("window", 16)))

    def raw(self, view: DetectorView) -> tuple[np.ndarray, np.ndarray]:
        """Raw scores ``|ewma| / limit_ns`` and the EWMA itself, (N,) each; NaN where not reported."""
        key = f"{self.metrics[0]}:ewma"
        if key not in view.features:
            nan = np.full(view.n, np.nan)
            return nan, nan
        ewma = view.features[key]
        return np.abs(ewma) / self.limit_ns, ewma

    def score(self, view: DetectorView) -> DetectorOutput:
        raw, ewma = self.raw(view)
        s = self.calibration_.transform(raw)
        return DetectorOutput(scores=s, metrics=self.metrics, metric_scores=s[:, None],
                              observed=ewma[:, None], expected=np.zeros((view.n, 1)))

    # -- optional: calibration on normal data (Monitor.calibrate / `ocad calibrate` call these) --
    def fit(self, views: Iterable[DetectorView]) -> PtpOffsetDetector:
        raw = np.concatenate([self.raw(v)[0] for v in views] or [np.array([])])
        if np.isfinite(raw).sum() >= 100:
            self.calibration_ = Calibration.fit(raw)
        return self

    def params_to_dict(self) -> dict[str, Any]:
        return {"calibration": self.calibration_.to_dict(), "limit_ns": self.limit_ns}

    def load_params(self, d: Mapping[str, Any]) -> None:
        if float(d.get("limit_ns", self.limit_ns)) == self.limit_ns:
            self.calibration_ = Calibration.from_dict(d["calibration"])
