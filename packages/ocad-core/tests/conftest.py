"""Shared fixtures of the ocad-core tests.

The tests run with ``--import-mode=importlib``, so helpers are handed out as
fixtures (plain functions) rather than imported from a module.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from ocad.core.pipeline import CompositeOutput, FeatureEngine
from ocad.core.plugins import ORAN_METRICS, DetectorOutput, DetectorView, PluginRegistry

METRICS = tuple(s.name for s in ORAN_METRICS)


@pytest.fixture
def registry() -> PluginRegistry:
    """Built-ins only: the tests must not depend on what else is installed."""
    return PluginRegistry(autoload=False)


def _make_view(values: np.ndarray, ts: np.ndarray | None = None, *, specs: Sequence[Any] = ORAN_METRICS,
               endpoints: Sequence[str] | None = None) -> DetectorView:
    values = np.asarray(values, dtype=np.float32)
    n, w, _ = values.shape
    if ts is None:
        ts = np.tile(np.arange(w, dtype=np.float64) * 5.0, (n, 1))
    if endpoints is None:
        endpoints = [f"ep{i}" for i in range(n)]
    eps = np.empty(n, dtype=object)
    eps[:] = list(endpoints)
    fe = FeatureEngine(specs)
    return DetectorView(endpoints=eps, metrics=fe.metrics, values=values, ts=ts,
                        capabilities=~np.all(np.isnan(values), axis=1), features=fe.compute(values, ts),
                        counts=(~np.isnan(ts)).sum(axis=1).astype(np.int64))


@pytest.fixture(scope="session")
def make_view():
    """``make_view(values (N, W, M), ts=None, specs=ORAN_METRICS)`` → a DetectorView."""
    return _make_view


def _composite(scores: Sequence[float], detector_scores: Sequence[Sequence[float]],
               kinds: Sequence[str], names: Sequence[str] | None = None) -> CompositeOutput:
    """A CompositeOutput built by hand: N endpoints × D detectors."""
    s = np.asarray(scores, dtype=np.float64)
    ds = np.asarray(detector_scores, dtype=np.float64).reshape(s.shape[0], len(kinds))
    names = tuple(names) if names is not None else tuple(f"det_{k}" for k in kinds)
    w = np.ones(len(kinds))
    ok = ~np.isnan(ds)
    contrib = np.where(ok, np.nan_to_num(ds), 0.0) / np.maximum(ok.sum(axis=1, keepdims=True), 1)
    outs = tuple(DetectorOutput(scores=ds[:, d], metrics=("m",), metric_scores=ds[:, d:d + 1],
                                observed=np.full((s.shape[0], 1), 2.0), expected=np.full((s.shape[0], 1), 1.0))
                 for d in range(len(kinds)))
    return CompositeOutput(scores=s, detectors=names, kinds=tuple(kinds), weights=w, detector_scores=ds,
                           contributions=contrib, outputs=outs)


@pytest.fixture(scope="session")
def composite():
    """``composite(scores (N,), detector_scores (N, D), kinds (D,))`` → a CompositeOutput."""
    return _composite
