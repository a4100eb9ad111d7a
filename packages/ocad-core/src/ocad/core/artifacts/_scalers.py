"""JSON-serialisable scalers (the :class:`~ocad.core.Scaler` protocol)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

__all__ = ["RobustScaler", "StandardScaler", "scaler_from_dict"]


def _col_stats_ok(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"scaler input must be 1-D or 2-D, got shape {x.shape}")
    return x


@attrs.define
class StandardScaler:
    """``(x - mean_) / scale_`` per column, NaN-aware. Fitted attributes end in ``_``.

    >>> s = StandardScaler().fit(np.array([[1.0], [3.0]]))
    >>> s.transform(np.array([[3.0]])).tolist()
    [[1.0]]
    """

    mean_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> StandardScaler:
        x = _col_stats_ok(x)
        mean = np.nanmean(x, axis=0)
        std = np.nanstd(x, axis=0)
        self.mean_ = np.nan_to_num(mean)
        self.scale_ = np.where(np.isfinite(std) & (std > 1e-12), std, 1.0)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.mean_ is None or self.scale_ is None:
            raise ValueError("StandardScaler is not fitted; call fit() first")
        return self.mean_, self.scale_

    def transform(self, x: np.ndarray) -> np.ndarray:
        m, s = self._check()
        return (np.asarray(x, dtype=np.float64) - m) / s

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        m, s = self._check()
        return np.asarray(x, dtype=np.float64) * s + m

    def to_dict(self) -> dict[str, Any]:
        m, s = self._check()
        return {"type": "standard", "mean": m.tolist(), "scale": s.tolist()}


@attrs.define
class RobustScaler:
    """``(x - center_) / scale_`` with median and IQR/1.349 (a robust std), NaN-aware."""

    center_: np.ndarray | None = None
    scale_: np.ndarray | None = None

    def fit(self, x: np.ndarray) -> RobustScaler:
        x = _col_stats_ok(x)
        med = np.nanmedian(x, axis=0)
        q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
        iqr = (q75 - q25) / 1.349
        self.center_ = np.nan_to_num(med)
        self.scale_ = np.where(np.isfinite(iqr) & (iqr > 1e-12), iqr, 1.0)
        return self

    def _check(self) -> tuple[np.ndarray, np.ndarray]:
        if self.center_ is None or self.scale_ is None:
            raise ValueError("RobustScaler is not fitted; call fit() first")
        return self.center_, self.scale_

    def transform(self, x: np.ndarray) -> np.ndarray:
        c, s = self._check()
        return (np.asarray(x, dtype=np.float64) - c) / s

    def inverse_transform(self, x: np.ndarray) -> np.ndarray:
        c, s = self._check()
        return np.asarray(x, dtype=np.float64) * s + c

    def to_dict(self) -> dict[str, Any]:
        c, s = self._check()
        return {"type": "robust", "center": c.tolist(), "scale": s.tolist()}


def scaler_from_dict(d: Mapping[str, Any]) -> StandardScaler | RobustScaler:
    """Rebuild a scaler from :meth:`to_dict` output."""
    kind = d.get("type")
    if kind == "standard":
        return StandardScaler(mean_=np.asarray(d["mean"], dtype=np.float64),
                              scale_=np.asarray(d["scale"], dtype=np.float64))
    if kind == "robust":
        return RobustScaler(center_=np.asarray(d["center"], dtype=np.float64),
                            scale_=np.asarray(d["scale"], dtype=np.float64))
    raise ValueError(f"unknown scaler type {kind!r}; expected 'standard' or 'robust'")
