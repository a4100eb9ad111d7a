"""What detectors see and what they return: the data passed between pipeline stages.

A tick's data for N endpoints travels as arrays, never as per-endpoint Python
objects, so that every stage is vectorised. Evidence objects are only built for
the few endpoints that raise or update an alert.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

__all__ = ["DetectorOutput", "DetectorView", "Evidence", "FeatureFrame"]


@attrs.frozen(eq=False)
class FeatureFrame:
    """Features of N endpoints: ``data[:, j]`` is feature ``names[j]``.

    Names are ``"<metric>:<feature>"`` (e.g. ``"udp_echo_rtt_ms:p99"``) or
    ``"<feature>"`` for endpoint-level features (``"concurrency"``). NaN where
    a feature cannot be computed (metric not reported, too few samples).
    ``window`` is the number of samples per endpoint they were computed over
    (``None``: not recorded); a detector trained on features of another window
    length recomputes its own.
    """

    names: tuple[str, ...]
    data: np.ndarray  # (N, F) float64
    window: int | None = attrs.field(default=None, kw_only=True)
    _index: dict[str, int] = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_index", {n: i for i, n in enumerate(self.names)})
        if self.data.ndim != 2 or self.data.shape[1] != len(self.names):
            raise ValueError(f"FeatureFrame data shape {self.data.shape} does not match {len(self.names)} names")

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __getitem__(self, name: str) -> np.ndarray:
        """The (N,) column of feature ``name``."""
        return self.data[:, self._index[name]]

    def columns(self, names: tuple[str, ...] | list[str]) -> np.ndarray:
        """An (N, len(names)) matrix of the named features; missing names give NaN columns."""
        get = self._index.get
        idx = np.fromiter((get(n, -1) for n in names), dtype=np.intp, count=len(names))
        if idx.size and idx.min() >= 0:
            return self.data[:, idx]  # one gather (a copy)
        out = np.full((self.data.shape[0], len(names)), np.nan, dtype=np.float64)
        have = idx >= 0
        out[:, have] = self.data[:, idx[have]]
        return out

    def take(self, rows: np.ndarray) -> FeatureFrame:
        return FeatureFrame(self.names, self.data[rows], window=self.window)


@attrs.frozen(eq=False)
class DetectorView:
    """The window and feature view of N endpoints at one tick.

    ``values[i, -1, m]`` is endpoint ``i``'s newest sample of metric ``metrics[m]``;
    windows are chronological (oldest first). Slots an endpoint has not filled yet,
    and metrics it did not report, are NaN. ``capabilities[i, m]`` is True when the
    endpoint has ever reported metric ``m``: a detector must return NaN (cannot
    judge), not a low score, for an endpoint lacking every metric it needs.
    """

    endpoints: np.ndarray  # (N,) object (str)
    metrics: tuple[str, ...]  # M
    values: np.ndarray  # (N, W, M) float32
    ts: np.ndarray  # (N, W) float64, NaN in unfilled slots
    capabilities: np.ndarray  # (N, M) bool
    features: FeatureFrame
    counts: np.ndarray  # (N,) int64: samples seen so far (may exceed W)
    #: The endpoints' long-horizon baselines (``ocad.core._baseline.BaselineFrame``); None when the
    #: caller keeps none (a bare view built for a test): detectors that need it then cannot judge.
    baseline: Any = attrs.field(default=None, kw_only=True)

    @property
    def n(self) -> int:
        return int(self.values.shape[0])

    @property
    def window(self) -> int:
        return int(self.values.shape[1])

    def metric_index(self, name: str) -> int | None:
        try:
            return self.metrics.index(name)
        except ValueError:
            return None

    def take(self, rows: np.ndarray) -> DetectorView:
        """The view restricted to ``rows`` (used to isolate or shard endpoints)."""
        return DetectorView(
            endpoints=self.endpoints[rows], metrics=self.metrics, values=self.values[rows],
            ts=self.ts[rows], capabilities=self.capabilities[rows],
            features=self.features.take(rows), counts=self.counts[rows],
            baseline=None if self.baseline is None else self.baseline.take(rows),
        )


def _as_2d(name: str, a: Any, n: int, k: int) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    if arr.shape != (n, k):
        raise ValueError(f"DetectorOutput.{name} has shape {arr.shape}, expected {(n, k)}")
    return arr


@attrs.frozen(eq=False)
class DetectorOutput:
    """A detector's verdict on N endpoints.

    ``scores[i]`` is in [0, 1] (calibrated: ``s`` means about a ``1 - s`` chance of
    a value this extreme on normal data) or NaN where the detector cannot judge.
    The per-metric arrays carry the evidence: ``metric_scores[i, k]`` is the score
    attributable to ``metrics[k]``, ``observed`` / ``expected`` are in the metric's
    unit (or the feature's, for feature-based detectors).
    """

    scores: np.ndarray  # (N,)
    metrics: tuple[str, ...] = ()
    metric_scores: np.ndarray | None = None  # (N, K)
    observed: np.ndarray | None = None  # (N, K)
    expected: np.ndarray | None = None  # (N, K)

    @classmethod
    def empty(cls, n: int) -> DetectorOutput:
        """All NaN: the detector cannot judge any of the N endpoints."""
        return cls(scores=np.full(n, np.nan))

    def check(self, n: int, name: str = "detector") -> DetectorOutput:
        """Validate shapes and ranges; returns a float64 copy. Raises ``ValueError`` naming the problem."""
        s = np.asarray(self.scores, dtype=np.float64)
        if s.shape != (n,):
            raise ValueError(f"{name}: scores have shape {s.shape}, expected ({n},)")
        if s.size:
            # fmin / fmax skip NaN ("cannot judge"); an all-NaN array gives NaN, which passes.
            lo, hi = np.fmin.reduce(s), np.fmax.reduce(s)
            if lo < 0.0 or hi > 1.0:
                raise ValueError(f"{name}: scores outside [0, 1] (min {lo:.4g}, max {hi:.4g})")
        k = len(self.metrics)
        ms = ob = ex = None
        if self.metric_scores is not None:
            ms = _as_2d("metric_scores", self.metric_scores, n, k)
        if self.observed is not None:
            ob = _as_2d("observed", self.observed, n, k)
        if self.expected is not None:
            ex = _as_2d("expected", self.expected, n, k)
        return DetectorOutput(scores=s, metrics=self.metrics, metric_scores=ms, observed=ob, expected=ex)

    def top_metric(self, i: int) -> int | None:
        """Index of the metric with the highest score for endpoint ``i``."""
        if self.metric_scores is None or not self.metrics:
            return None
        row = self.metric_scores[i]
        if np.all(np.isnan(row)):
            return None
        return int(np.nanargmax(row))


@attrs.frozen
class Evidence:
    """Why an alert exists: one detector's finding on one metric (or feature)."""

    detector: str
    kind: str
    metric: str | None
    observed: float | None
    expected: float | None
    score: float
    contribution: float

    def to_dict(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Evidence:
        return cls(**dict(d))
