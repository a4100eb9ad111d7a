"""Tiny synthetic ONNX artifacts and views, so the tests need neither ocad-train nor trained models.

* forecaster: ``ŷ = mean(x)`` (ReduceMean over the window), the shape contract of
  the TCN artifact: input ``(B, W)`` float32, output ``(B, 1)``;
* multivariate: ``score = -mean(z²)`` with ``z = (impute(X) - center) / scale``,
  imputation and scaler inside the graph, the contract of the Isolation-Forest
  artifact: input ``"X"`` ``[N, F]`` float32, output ``"score"`` ``[N]``,
  higher = more normal.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ocad.core.artifacts import LoadedArtifact, load_artifact, write_artifact
from ocad.core.pipeline import FeatureEngine
from ocad.core.plugins import ORAN_METRICS, Calibration, DetectorView, MetricRegistry
from ocad.core.tooling import Fleet

OPSET = 17

#: The metrics of the synthetic forecasters and their window.
GAUGES = ("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms")
W = 16


def _model_bytes(graph: onnx.GraphProto) -> bytes:
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)], producer_name="ocad-tests")
    m.ir_version = 8
    onnx.checker.check_model(m)
    return m.SerializeToString()


def mean_forecaster_onnx(window: int, input_name: str = "x", output_name: str = "y") -> bytes:
    x = helper.make_tensor_value_info(input_name, TensorProto.FLOAT, ["batch", window])
    y = helper.make_tensor_value_info(output_name, TensorProto.FLOAT, ["batch", 1])
    node = helper.make_node("ReduceMean", [input_name], [output_name], axes=[1], keepdims=1)
    return _model_bytes(helper.make_graph([node], "mean_forecaster", [x], [y]))


def halfnormal_calibration(seed: int = 0) -> Calibration:
    """The calibration of max(0, Z): the raw residual score of N(0, 1) residuals."""
    return Calibration.fit(np.maximum(np.random.default_rng(seed).normal(size=200_000), 0.0))


def forecaster_manifest(metric: str, window: int, *, relative_rms: float = 0.05, level_floor: float = 0.1,
                        version: str = "1.0.0", fill_policy: Any = None, calibration: Calibration | None = None,
                        **extra: Any) -> dict[str, Any]:
    m = {
        "name": f"tcn-{metric}",
        "kind": "forecaster",
        "version": version,
        "format": "onnx",
        "inputs": {"metrics": [metric], "units": {metric: ""}, "window": window, "dtype": "float32",
                   "input_name": "x", "output_name": "y",
                   "fill_policy": fill_policy if fill_policy is not None else
                   {"method": "ffill", "limit": 2, "remaining_nan": "skip"}},
        "scaler": {"type": "residual", "relative_rms": relative_rms, "level_floor": level_floor,
                   "one_sided": "upper"},
        "calibration": (calibration or halfnormal_calibration()).to_dict(),
        "residual_score": "max(0, y - yhat) / (relative_rms * max(|mean(x)|, level_floor))",
        "library_versions": {"tests": "synthetic"},
    }
    m.update(extra)
    return m


def forecaster_artifact(dest: Path, metric: str, window: int = 16, **kw: Any) -> LoadedArtifact:
    return write_artifact(dest, forecaster_manifest(metric, window, **kw),
                          {"model": ("model.onnx", mean_forecaster_onnx(window))})


def zsq_onnx(n_features: int, impute: np.ndarray, center: np.ndarray, scale: np.ndarray) -> bytes:
    f = n_features
    x = helper.make_tensor_value_info("X", TensorProto.FLOAT, ["N", f])
    out = helper.make_tensor_value_info("score", TensorProto.FLOAT, ["N"])
    inits = [
        helper.make_tensor("impute", TensorProto.FLOAT, [f], np.asarray(impute, np.float32).tolist()),
        helper.make_tensor("center", TensorProto.FLOAT, [f], np.asarray(center, np.float32).tolist()),
        helper.make_tensor("scale", TensorProto.FLOAT, [f], np.asarray(scale, np.float32).tolist()),
    ]
    nodes = [
        helper.make_node("IsNaN", ["X"], ["nan"]),
        helper.make_node("Where", ["nan", "impute", "X"], ["xi"]),
        helper.make_node("Sub", ["xi", "center"], ["d"]),
        helper.make_node("Div", ["d", "scale"], ["z"]),
        helper.make_node("Mul", ["z", "z"], ["z2"]),
        helper.make_node("ReduceMean", ["z2"], ["m"], axes=[1], keepdims=0),
        helper.make_node("Neg", ["m"], ["score"]),
    ]
    return _model_bytes(helper.make_graph(nodes, "zsq", [x], [out], initializer=inits))


DEFAULT_FEATURES = (
    "udp_echo_rtt_ms:mean", "udp_echo_rtt_ms:p99", "udp_echo_rtt_ms:z_last",
    "ecpri_delay_us:mean", "ecpri_delay_us:p99", "ecpri_delay_us:z_last",
    "lbm_rtt_ms:mean", "lbm_rtt_ms:p99",
    "lbm_success:fail_rate", "ccm_miss_count:sum",
)


def multivariate_artifact(dest: Path, train_x: np.ndarray, features: Sequence[str] = DEFAULT_FEATURES, *,
                          window: int = 32, max_missing_fraction: float = 0.5, version: str = "1.0.0",
                          impute_in_graph: bool = True) -> LoadedArtifact:
    """An Isolation-Forest-shaped artifact fitted (median / IQR, calibration) on ``train_x`` (n, F)."""
    x = np.asarray(train_x, np.float64)
    center = np.nan_to_num(np.nanmedian(x, axis=0))
    q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
    scale = np.where(np.isfinite(q75 - q25) & (q75 - q25 > 1e-9), (q75 - q25) / 1.349, 1.0)
    xi = np.where(np.isnan(x), center, x)
    raw = np.mean(((xi - center) / scale) ** 2, axis=1)
    keep = np.isnan(x).mean(axis=1) <= max_missing_fraction
    manifest = {
        "name": "iforest-multivariate",
        "kind": "multivariate",
        "version": version,
        "format": "onnx",
        "inputs": {"metrics": sorted({f.split(":")[0] for f in features if ":" in f}),
                   "features": list(features), "dtype": "float32", "input_name": "X", "output_name": "score",
                   "max_missing_fraction": max_missing_fraction,
                   "impute": {f: float(np.float32(c)) for f, c in zip(features, center)},
                   "impute_in_graph": impute_in_graph, "window": window},
        "scaler": {"type": "robust", "center": center.tolist(), "scale": scale.tolist()},
        "scaler_in_graph": True,
        "calibration": Calibration.fit(raw[keep]).to_dict(),
        "library_versions": {"tests": "synthetic"},
    }
    # Without in-graph imputation the graph still imputes (harmlessly: the detector already has).
    return write_artifact(dest, manifest, {"model": ("model.onnx", zsq_onnx(len(features), center, center, scale))})


def view_at(fleet: Fleet, t: int, window: int, rows: np.ndarray | None = None,
            metrics: MetricRegistry | None = None) -> DetectorView:
    """The DetectorView a Monitor would build at tick ``t`` (``window`` samples ending at ``t``)."""
    reg = metrics or MetricRegistry(ORAN_METRICS)
    names = reg.names()
    cols = [list(fleet.metrics).index(m) if m in fleet.metrics else -1 for m in names]
    lo = max(0, t - window + 1)
    e = fleet.values.shape[0] if rows is None else len(rows)
    sel = np.arange(fleet.values.shape[0]) if rows is None else np.asarray(rows)
    vals = np.full((e, window, len(names)), np.nan, np.float32)
    ts = np.full((e, window), np.nan)
    k = t + 1 - lo
    for j, c in enumerate(cols):
        if c >= 0:
            vals[:, window - k:, j] = fleet.values[sel, lo:t + 1, c]
    ts[:, window - k:] = fleet.ts[lo:t + 1]
    caps = ~np.all(np.isnan(fleet.values[sel][:, :, cols]), axis=1) if all(c >= 0 for c in cols) else \
        np.stack([~np.all(np.isnan(fleet.values[sel, :, c]), axis=1) if c >= 0 else np.zeros(e, bool)
                  for c in cols], axis=1)
    fe = FeatureEngine(reg)
    return DetectorView(endpoints=fleet.endpoint_ids()[sel], metrics=names, values=vals, ts=ts,
                        capabilities=caps, features=fe.compute(vals, ts), counts=np.full(e, k, np.int64))


def training_features(fleet: Fleet, window: int, features: Sequence[str], ticks: Sequence[int]) -> np.ndarray:
    return np.concatenate([view_at(fleet, t, window).features.columns(tuple(features)) for t in ticks])


def fitted_forecaster_manifest(fleet: Fleet, metric: str, window: int, ticks: Sequence[int],
                               **kw: Any) -> dict[str, Any]:
    """A mean-forecaster manifest whose scaler and calibration are fitted on ``ticks`` of ``fleet``.

    Mirrors what the training build does with its validation split: the residuals of
    the model give ``relative_rms``; the raw scores of those residuals give the calibration.
    """
    j = list(fleet.metrics).index(metric)
    rel, lev = [], []
    for t in ticks:
        x = fleet.values[:, t - window:t, j].astype(np.float64)
        y = fleet.values[:, t, j].astype(np.float64)
        ok = np.isfinite(x).all(axis=1) & np.isfinite(y)
        level = x[ok].mean(axis=1)
        rel.append((y[ok] - level) / np.abs(level))
        lev.append(level)
    r = np.concatenate(rel)
    relative_rms = float(np.sqrt(np.mean(r ** 2)))
    level_floor = float(np.quantile(np.abs(np.concatenate(lev)), 0.01))
    raw = np.maximum(r, 0.0) / relative_rms
    return forecaster_manifest(metric, window, relative_rms=relative_rms, level_floor=level_floor,
                               calibration=Calibration.fit(raw), **kw)


def write_forecaster(dest: Path, manifest: dict[str, Any], window: int | None = None) -> LoadedArtifact:
    w = int(window if window is not None else manifest["inputs"]["window"])
    return write_artifact(dest, manifest, {"model": ("model.onnx", mean_forecaster_onnx(w))})


class CountingSession:
    """Wraps an onnxruntime session and counts ``run`` calls and rows."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls = 0
        self.rows = 0

    def run(self, outputs: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.calls += 1
        self.rows += int(next(iter(feeds.values())).shape[0])
        return self.inner.run(outputs, feeds)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)
