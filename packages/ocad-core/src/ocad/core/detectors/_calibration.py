"""Map raw detector scores to calibrated scores in [0, 1].

A :class:`Calibration` is the empirical distribution of a detector's raw score on
*normal* data, stored as a quantile table (JSON, no pickle). ``transform(raw)`` is
the estimated probability that a normal raw score is below ``raw``; above the
table's top quantile the tail is extrapolated exponentially, so scores keep
ordering instead of saturating at exactly 1. With every detector calibrated this
way, a threshold of 0.999 means "about one false alarm per thousand normal
samples" for every detector.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import attrs
import numpy as np

__all__ = ["Calibration", "transform_columns"]

# Probabilities of the stored quantiles: dense in the upper tail, where thresholds live.
DEFAULT_PROBS: tuple[float, ...] = (
    0.0, 0.01, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.98,
    0.99, 0.995, 0.998, 0.999, 0.9995, 0.9999,
)


def _tuple_floats(v: Any) -> tuple[float, ...]:
    return tuple(float(x) for x in v)


@attrs.frozen
class Calibration:
    """Quantile table of raw scores on normal data.

    >>> cal = Calibration.fit(np.random.default_rng(0).normal(size=100_000))
    >>> bool(abs(cal.transform(np.array([1.2816]))[0] - 0.9) < 0.01)
    True
    """

    probs: tuple[float, ...] = attrs.field(converter=_tuple_floats)
    quantiles: tuple[float, ...] = attrs.field(converter=_tuple_floats)
    n: int = 0
    tail_scale: float = 1.0
    _knots: tuple[np.ndarray, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if len(self.probs) != len(self.quantiles) or len(self.probs) < 2:
            raise ValueError("Calibration needs as many quantiles as probabilities (at least 2)")
        if np.any(np.diff(self.probs) <= 0):
            raise ValueError("Calibration probabilities must increase strictly")
        if np.any(np.diff(self.quantiles) < 0) or not np.all(np.isfinite(self.quantiles)):
            raise ValueError("Calibration quantiles must be finite and non-decreasing")
        if not self.tail_scale > 0:
            raise ValueError("Calibration tail_scale must be > 0")
        # Precomputed once: transform() runs for every detector and metric on every tick.
        q = np.asarray(self.quantiles)
        p = np.asarray(self.probs)
        u, first, counts = np.unique(q, return_index=True, return_counts=True)
        p_lo = p[first]
        p_hi = p[first + counts - 1]
        xs = np.repeat(u, 2)
        ys = np.column_stack([p_lo, p_hi]).ravel()
        ties = bool((counts > 1).any())
        object.__setattr__(self, "_knots", (u, p_lo, p_hi, xs, ys, ties, float(1.0 - p[-1])))

    @classmethod
    def fit(cls, raw: np.ndarray, probs: tuple[float, ...] = DEFAULT_PROBS) -> Calibration:
        """Fit on raw scores of normal data (NaN ignored). Needs at least 100 finite values."""
        x = np.asarray(raw, dtype=np.float64).ravel()
        x = x[np.isfinite(x)]
        if x.size < 100:
            raise ValueError(f"Calibration.fit needs at least 100 finite raw scores, got {x.size}")
        q = np.quantile(x, probs)
        q = np.maximum.accumulate(q)
        # Tail scale: spread of the top of the distribution, so a value one scale above
        # the top quantile has ~e times smaller tail probability.
        hi = q[-1] - np.quantile(x, 0.99)
        scale = float(hi) if hi > 1e-12 else float(np.std(x) or 1.0)
        return cls(probs=probs, quantiles=tuple(q), n=int(x.size), tail_scale=max(scale, 1e-9))

    @classmethod
    def identity(cls) -> Calibration:
        """For raw scores that already are probabilities in [0, 1]."""
        return cls(probs=(0.0, 1.0), quantiles=(0.0, 1.0), n=0, tail_scale=1.0)

    def transform(self, raw: np.ndarray) -> np.ndarray:
        """Calibrated scores in [0, 1]; NaN stays NaN.

        Discrete raw scores (a failure count that is 0 on almost all normal samples) put
        several quantiles on one value; such a value maps to the *middle* of its probability
        mass (mid-p), not to its top, so "0 failures" is not scored as extreme.
        """
        r = np.asarray(raw, dtype=np.float64)
        u = self._knots[0]
        out = self._inner(r)
        top = r > u[-1]
        if top.any():
            with np.errstate(over="ignore"):
                out = np.where(top, 1.0 - self._knots[6] * np.exp(-(r - u[-1]) / self.tail_scale), out)
        return np.minimum(np.maximum(out, 0.0), 1.0)  # NaN propagates through min/max

    def _inner(self, r: np.ndarray) -> np.ndarray:
        """transform() without the upper tail and the final clip: knots, ties, below the table."""
        u, p_lo, p_hi, xs, ys, ties, _ = self._knots
        # Between knots: interpolate from the top of the lower knot's mass to the bottom of the next.
        if u.size > 1:
            out = _interp(r, xs, ys)
        else:  # one distinct quantile; NaN compares False both ways and must stay NaN, not p_hi
            out = np.where(r < u[0], p_lo[0], np.where(r >= u[0], p_hi[0], np.nan))
        if ties:
            idx = np.minimum(np.searchsorted(u, r), u.size - 1)
            on_knot = u[idx] == r
            if on_knot.any():
                out = np.where(on_knot, 0.5 * (p_lo[idx] + p_hi[idx]), out)
        return np.where(r < u[0], 0.0, out)

    def to_dict(self) -> dict[str, Any]:
        return {"probs": list(self.probs), "quantiles": list(self.quantiles), "n": self.n,
                "tail_scale": self.tail_scale}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Calibration:
        return cls(probs=d["probs"], quantiles=d["quantiles"], n=int(d.get("n", 0)),
                   tail_scale=float(d.get("tail_scale", 1.0)))


def transform_columns(calibrations: Sequence[Calibration], raw: np.ndarray) -> np.ndarray:
    """``calibrations[k].transform(raw[:, k])`` for every column k of ``raw`` (N, K), at once.

    The same numbers as the per-column calls; the upper tail and the clip run once on the
    whole matrix instead of once per column (a detector scores K metrics on every tick).
    """
    r = np.asarray(raw, dtype=np.float64)
    out = np.empty(r.shape, dtype=np.float64)
    for k, cal in enumerate(calibrations):
        out[:, k] = cal._inner(r[:, k])
    if r.shape[1]:
        top_u, tail, scale = _tails(tuple(calibrations))
        top = r > top_u
        if top.any():
            with np.errstate(over="ignore"):
                out = np.where(top, 1.0 - tail * np.exp(-(r - top_u) / scale), out)
    return np.minimum(np.maximum(out, 0.0), 1.0)  # NaN propagates through min/max


@functools.lru_cache(maxsize=256)
def _tails(calibrations: tuple[Calibration, ...]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: top quantile, tail mass above it and tail scale."""
    return (np.array([c._knots[0][-1] for c in calibrations]), np.array([c._knots[6] for c in calibrations]),
            np.array([c.tail_scale for c in calibrations]))


try:  # the compiled routine behind np.interp, without its Python-level argument checks
    from numpy._core.multiarray import interp as _compiled_interp
except ImportError:  # pragma: no cover - other numpy layouts
    _compiled_interp = None


def _interp(x: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    if _compiled_interp is not None:
        return _compiled_interp(x, xp, fp, None, None)
    return np.interp(x, xp, fp)  # pragma: no cover
