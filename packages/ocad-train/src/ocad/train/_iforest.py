"""Multivariate Isolation Forest on window features: train, export to ONNX, check, write.

:func:`feature_matrix_from_fleet` turns a fleet into rows of window features (the
same :class:`~ocad.core.pipeline._features.FeatureEngine` the runtime runs), and
:func:`train_iforest` fits the forest, exports it with
:func:`~ocad.train._onnx_trees.iforest_to_onnx`, proves parity and writes the
``iforest-multivariate`` artifact.

Missing-feature policy (:data:`MISSING_POLICY`, recorded in the manifest; the
runtime must do the same)
--------------------------------------------------------------------------------
Endpoints that lack a metric (a transport node has no eCPRI, some O-RUs have no
CFM loopback) or lost samples have NaN features. For every row:

1. ``missing_fraction`` = share of the model's features that are NaN.
2. If ``missing_fraction > max_missing_fraction`` (manifest, default 0.5) the row
   is not judged: training and validation drop it, the runtime returns NaN
   ("cannot judge") for the endpoint and does not call the model.
3. Otherwise each NaN feature is imputed with the training median of that feature
   (``inputs.impute``; as float32), which the scaler maps to ~0, i.e. "typical".
   The imputation is *inside the ONNX graph* (``IsNaN`` + ``Where``), so the runtime
   feeds raw float32 features, NaN included, and nothing else.

The scaler (a :class:`~ocad.core.artifacts.RobustScaler` fitted on the training features) is
folded into the tree thresholds (``scaler_in_graph: true``); it is stored in the
manifest for evidence (observed vs. expected) and audit, never re-applied.

Scores: the graph outputs ``score`` = sklearn's ``score_samples`` (higher = more
normal, in ``[-1, 0]``); the *raw anomaly score* is ``raw = -score`` (higher = more
anomalous) and ``calibration`` maps ``raw`` to ``[0, 1]`` on normal validation
data. ``threshold`` is on ``raw``: the ``1 - target_far`` quantile of validation
normal rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ocad.core import OcadConfigError
from ocad.core.artifacts import LoadedArtifact, RobustScaler, write_artifact
from ocad.core.plugins import Calibration

from ._export import ParityError, check_parity, ort_session
from ._onnx_trees import (
    INPUT_NAME,
    IR_VERSION,
    OPSET_ML,
    OPSET_ONNX,
    OUTPUT_NAME,
    boundary_inputs,
    iforest_reference_scores,
    iforest_to_onnx,
)

__all__ = [
    "ARTIFACT_KIND",
    "ARTIFACT_NAME",
    "DEFAULT_CONFIG",
    "MISSING_POLICY",
    "feature_engine_params",
    "feature_matrix_from_fleet",
    "missing_fraction",
    "train_iforest",
]

ARTIFACT_NAME = "iforest-multivariate"
ARTIFACT_KIND = "multivariate"

DEFAULT_CONFIG: Mapping[str, Any] = {
    "version": "1.0.0",
    "n_estimators": 150,
    "max_samples": 256,
    "max_features": 1.0,
    "bootstrap": False,
    # sklearn's own contamination only moves ``offset_`` (predict / decision_function);
    # score_samples, which is what is exported, does not depend on it.
    "contamination": "auto",
    # Share of normal validation rows above ``threshold``: the false-alarm rate chosen.
    "target_far": 0.01,
    "max_missing_fraction": 0.5,
    "parity_n": 10_000,
    "parity_tol": 1e-4,
    # Normal validation rows needed to fit the calibration table and the threshold. The
    # training pipeline lowers it (to 200) for short data sets, see ocad.train._pipeline.
    "min_validation_rows": 1000,
}

MISSING_POLICY = (
    "missing_fraction = share of the model's features that are NaN. Rows with missing_fraction > "
    "max_missing_fraction are not judged (runtime: score NaN, 'cannot judge'; training: dropped). "
    "Otherwise each NaN feature is imputed with the training median (inputs.impute, float32) inside "
    "the ONNX graph (IsNaN + Where): feed raw float32 features, NaN included."
)


def missing_fraction(x: np.ndarray) -> np.ndarray:
    """Per-row share of NaN features, ``(N,)`` float64 (the runtime's "cannot judge" test)."""
    x = np.asarray(x)
    if x.ndim != 2 or x.shape[1] == 0:
        raise ValueError(f"features must be a 2-D (rows, features) array, got shape {x.shape}")
    return np.isnan(x).mean(axis=1)


# -- features from a fleet ------------------------------------------------------------

_ENGINE_PARAMS = ("alpha", "cusum_k", "elevated_z", "rel_floor", "abs_floor")


def feature_engine_params(feature_engine: Any) -> dict[str, Any]:
    """The FeatureEngine settings to record as ``config["feature_engine"]`` (→ ``inputs.feature_engine``).

    The runtime rebuilds the same engine from them: its metrics (order matters for
    the endpoint-level ``concurrency`` feature) and its numeric parameters.
    """
    out: dict[str, Any] = {"metrics": [str(m) for m in feature_engine.metrics]}
    for p in _ENGINE_PARAMS:
        if hasattr(feature_engine, p):
            out[p] = float(getattr(feature_engine, p))
    return out


def feature_matrix_from_fleet(fleet: Any, feature_engine: Any, window: int, stride: int = 1, *,
                              max_rows_per_chunk: int = 20_000
                              ) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Window features of every endpoint every ``stride`` ticks, as the runtime computes them.

    A row is endpoint ``e`` at tick ``t``: ``feature_engine.compute`` of the ``window``
    samples ending at (and including) ``t``, exactly what the WindowStore holds when
    tick ``t`` is scored. Ticks run ``t = window-1, window-1+stride, ...``. Metrics are
    matched by name (the engine's metric missing from the fleet gives NaN features).

    Returns
    -------
    X : (N, F) float64
        Features (NaN where a feature cannot be computed).
    names : list[str]
        Feature names, ``X``'s column order.
    labels : (N,) int8
        The fleet's label at tick ``t`` (0 normal, else fault code).
    endpoint_index : (N,) int64
        Row of the endpoint in ``fleet.values``.
    time_index : (N,) int64
        Tick ``t`` the window ends at. A window spans ticks ``[t-window+1, t]``:
        for a chronological split keep rows whose whole span is in one part.

    Rows are ordered by tick, then endpoint.
    """
    window = int(window)
    stride = int(stride)
    if window < 1 or stride < 1:
        raise OcadConfigError(f"window and stride must be >= 1, got window={window}, stride={stride}")
    values = np.asarray(fleet.values)
    ts = np.asarray(fleet.ts, dtype=np.float64)
    n_e, n_t, _ = values.shape
    names = list(feature_engine.names)
    ends = np.arange(window - 1, n_t, stride, dtype=np.int64)
    if ends.size == 0:
        raise OcadConfigError(f"the fleet has {n_t} ticks, fewer than one window of {window}")
    fleet_metrics = list(fleet.metrics)
    cols = [fleet_metrics.index(m) if m in fleet_metrics else -1 for m in feature_engine.metrics]
    vals = np.empty((n_e, n_t, len(cols)), dtype=np.float32)
    for j, c in enumerate(cols):
        vals[:, :, j] = values[:, :, c] if c >= 0 else np.nan

    steps_per_chunk = max(1, int(max_rows_per_chunk) // max(n_e, 1))
    blocks = []
    for k in range(0, ends.size, steps_per_chunk):
        e_chunk = ends[k:k + steps_per_chunk]
        # (S, E, W, M): the W ticks ending at each t, for every endpoint.
        idx = e_chunk[:, None] - np.arange(window - 1, -1, -1)[None, :]
        v = np.transpose(vals[:, idx, :], (1, 0, 2, 3)).reshape(-1, window, len(cols))
        t = np.repeat(ts[idx], n_e, axis=0)
        blocks.append(np.asarray(feature_engine.compute(v, t).data, dtype=np.float64))
    X = np.concatenate(blocks, axis=0)
    labels = np.asarray(fleet.labels)[:, ends].T.reshape(-1).astype(np.int8)
    endpoint_index = np.tile(np.arange(n_e, dtype=np.int64), ends.size)
    time_index = np.repeat(ends, n_e)
    return X, names, labels, endpoint_index, time_index


# -- training -------------------------------------------------------------------------

def _config(config: Mapping[str, Any]) -> dict[str, Any]:
    unknown = set(config) - set(DEFAULT_CONFIG) - {"metrics", "window", "feature_engine", "stride"}
    if unknown:
        raise OcadConfigError(f"iforest config: unknown key(s) {sorted(unknown)}; allowed: "
                              f"{sorted(set(DEFAULT_CONFIG) | {'metrics', 'window', 'feature_engine', 'stride'})}")
    cfg = {**DEFAULT_CONFIG, **config}
    if not 0.0 < float(cfg["target_far"]) < 0.5:
        raise OcadConfigError(f"iforest config: target_far={cfg['target_far']!r} must be in (0, 0.5)")
    if not 0.0 <= float(cfg["max_missing_fraction"]) < 1.0:
        raise OcadConfigError(
            f"iforest config: max_missing_fraction={cfg['max_missing_fraction']!r} must be in [0, 1)")
    if int(cfg["min_validation_rows"]) < 100:
        raise OcadConfigError(f"iforest config: min_validation_rows={cfg['min_validation_rows']!r} must be >= 100 "
                              "(the calibration table needs 100 normal scores)")
    if int(cfg["parity_n"]) < 10_000:
        raise OcadConfigError(f"iforest config: parity_n={cfg['parity_n']!r} must be >= 10000")
    return cfg


def _fingerprint(arrays: Sequence[np.ndarray | None], names: Sequence[str], cfg: Mapping[str, Any],
                 seed: int) -> str:
    h = hashlib.sha256()
    for a in arrays:
        if a is None:
            h.update(b"none")
            continue
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps({"features": list(names), "config": cfg, "seed": int(seed)},
                        sort_keys=True, default=str).encode())
    return h.hexdigest()


def _parity_inputs(x_val: np.ndarray, x_train: np.ndarray, n: int, max_missing: float,
                   rng: np.random.Generator) -> np.ndarray:
    """Held-out inputs for the parity check: every validation row, then synthetic rows.

    Synthetic rows take each feature from an independent random validation row (so
    they cover combinations the forest never saw), a share of them with extra NaN
    (exercising the in-graph imputation) and a share stretched beyond the training
    range (the outermost leaves). Threshold probes are added by the caller.
    """
    base = x_val if x_val.shape[0] else x_train
    parts = [x_val]
    need = max(n - x_val.shape[0], n // 4)
    f = base.shape[1]
    mixed = base[rng.integers(0, base.shape[0], size=(need, f)), np.arange(f)[None, :]].astype(np.float32)
    nan_rows = rng.random(need) < 0.25
    nan_cells = (rng.random((need, f)) < max_missing * 0.8) & nan_rows[:, None]
    mixed[nan_cells] = np.nan
    with warnings.catch_warnings():  # an all-NaN column is legal (a metric nobody reports)
        warnings.simplefilter("ignore", RuntimeWarning)
        lo, hi = np.nanmin(x_train, axis=0), np.nanmax(x_train, axis=0)
    span = np.where(np.isfinite(hi - lo), hi - lo, 1.0)
    wide_rows = rng.random(need) < 0.1
    wide = (np.nan_to_num(lo) - span + rng.random((need, f)) * 3 * span).astype(np.float32)
    mixed[wide_rows] = wide[wide_rows]
    parts.append(mixed)
    return np.concatenate(parts, axis=0).astype(np.float32)


def _library_versions() -> dict[str, str]:
    import onnx
    import onnxruntime
    import sklearn

    import ocad.core

    return {"scikit-learn": sklearn.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__, "numpy": np.__version__,
            "ocad_core": getattr(ocad.core, "__version__", "unknown")}


def _metrics_of(names: Sequence[str]) -> list[str]:
    out: list[str] = []
    for n in names:
        if ":" in n:
            m = n.split(":", 1)[0]
            if m not in out:
                out.append(m)
    return out


def _validation_metrics(raw: np.ndarray, threshold: float, labels: np.ndarray | None,
                        normal: np.ndarray) -> dict[str, Any]:
    flagged = raw > threshold
    out: dict[str, Any] = {
        "n": int(raw.size), "n_normal": int(normal.sum()),
        "far": float(flagged[normal].mean()) if normal.any() else None,
        "flagged_fraction": float(flagged.mean()) if raw.size else None,
    }
    if labels is not None:
        known = labels >= 0
        pos = (labels > 0)[known]
        fl = flagged[known]
        tp = int((fl & pos).sum())
        fp = int((fl & ~pos).sum())
        fn = int((~fl & pos).sum())
        out.update({
            "n_anomalous": int(pos.sum()), "n_ignored": int((~known).sum()), "tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else None,
            "recall": tp / (tp + fn) if tp + fn else None,
        })
        if 0 < pos.sum() < pos.size:
            from sklearn.metrics import average_precision_score, roc_auc_score

            out["roc_auc"] = float(roc_auc_score(pos, raw[known]))
            out["average_precision"] = float(average_precision_score(pos, raw[known]))
    return out


def train_iforest(features_train: np.ndarray, features_val: np.ndarray, feature_names: list[str], *,
                  config: Mapping[str, Any], out_dir: Path | str | os.PathLike[str],
                  labels_val: np.ndarray | None = None, seed: int = 0) -> LoadedArtifact:
    """Train the multivariate Isolation Forest, export, check parity, write the artifact.

    Parameters
    ----------
    features_train, features_val:
        ``(n, F)`` raw window features (NaN = missing), columns in ``feature_names``
        order; cast to float32 first, as the runtime feeds them. Training rows are
        assumed normal (filter them first); validation rows are normal where
        ``labels_val == 0`` (all of them without labels).
    feature_names:
        The model's input columns, in order (``"<metric>:<feature>"``).
    config:
        Keys of :data:`DEFAULT_CONFIG` (missing ones take the default), plus
        optionally ``metrics`` (default: the prefixes of ``feature_names``), ``window``,
        ``stride`` and ``feature_engine`` (recorded in ``inputs`` for the runtime).
    out_dir:
        The artifact directory to create (must not exist: versions are immutable).
    labels_val:
        Optional ``(n_val,)`` integer labels: 0 normal, > 0 anomalous (a fault code),
        < 0 neither (e.g. just after a fault: excluded from calibration, threshold
        and metrics). Adds precision / recall / AUC to ``metrics.validation``.
    seed:
        Seeds the forest and the parity inputs.

    Returns
    -------
    LoadedArtifact
        The verified artifact (``manifest.json`` + ``model.onnx``).

    Raises
    ------
    ParityError
        If the ONNX graph differs from sklearn by more than ``parity_tol`` on the
        held-out parity inputs; nothing is written then.
    OcadConfigError
        For a bad config or too little data.
    """
    from sklearn.ensemble import IsolationForest

    cfg = _config(config)
    names = [str(n) for n in feature_names]
    x_tr = np.asarray(features_train, dtype=np.float32)
    x_va = np.asarray(features_val, dtype=np.float32)
    f = len(names)
    if x_tr.ndim != 2 or x_tr.shape[1] != f or x_va.ndim != 2 or x_va.shape[1] != f:
        raise OcadConfigError(f"features must be (n, {f}) arrays matching feature_names; got "
                              f"{x_tr.shape} and {x_va.shape}")
    if len(set(names)) != f:
        raise OcadConfigError("feature_names must be unique")
    y_va = None if labels_val is None else np.asarray(labels_val).reshape(-1)
    if y_va is not None and y_va.shape[0] != x_va.shape[0]:
        raise OcadConfigError(f"labels_val has {y_va.shape[0]} entries for {x_va.shape[0]} validation rows")
    if np.isinf(x_tr).any() or np.isinf(x_va).any():
        raise OcadConfigError("features contain ±inf; the feature engine must give finite values or NaN")
    max_missing = float(cfg["max_missing_fraction"])

    keep_tr = missing_fraction(x_tr) <= max_missing
    x_fit = x_tr[keep_tr]
    if x_fit.shape[0] < 100:
        raise OcadConfigError(f"only {x_fit.shape[0]} training rows have missing_fraction <= {max_missing}; "
                              "need at least 100")
    keep_va = missing_fraction(x_va) <= max_missing
    x_judged = x_va[keep_va]
    y_judged = None if y_va is None else y_va[keep_va]
    normal = np.ones(x_judged.shape[0], bool) if y_judged is None else (y_judged == 0)
    min_val = int(cfg["min_validation_rows"])
    if normal.sum() < min_val:
        raise OcadConfigError(f"{int(normal.sum())} normal validation rows can be judged; need >= {min_val} to "
                              "calibrate and choose the threshold")

    scaler = RobustScaler().fit(x_fit)
    center = np.asarray(scaler.center_, dtype=np.float64)
    scale = np.asarray(scaler.scale_, dtype=np.float64)
    impute = center.astype(np.float32)

    def scaled(x: np.ndarray) -> np.ndarray:
        x = np.where(np.isnan(x), impute, x)
        return (x.astype(np.float64) - center) / scale

    rng = np.random.default_rng(seed)
    forest = IsolationForest(
        n_estimators=int(cfg["n_estimators"]), max_samples=cfg["max_samples"],
        max_features=cfg["max_features"], bootstrap=bool(cfg["bootstrap"]),
        contamination=cfg["contamination"], random_state=int(seed), n_jobs=1,
    ).fit(scaled(x_fit))

    model = iforest_to_onnx(
        forest, center=center, scale=scale, impute=impute, feature_names=names,
        doc_string=f"{ARTIFACT_NAME}: IsolationForest.score_samples of raw float32 features {names}")
    for k, v in (("ocad.name", ARTIFACT_NAME), ("ocad.version", str(cfg["version"]))):
        p = model.metadata_props.add()
        p.key, p.value = k, v
    onnx_bytes = model.SerializeToString()

    def reference(b: np.ndarray) -> np.ndarray:
        return iforest_reference_scores(forest, b, center=center, scale=scale, impute=impute)

    parity_x = _parity_inputs(x_judged, x_fit, int(cfg["parity_n"]), max_missing, rng)
    parity_x = np.concatenate([parity_x, boundary_inputs(
        forest, parity_x, max(1000, parity_x.shape[0] // 10), center=center, scale=scale, seed=seed)])
    with tempfile.TemporaryDirectory(prefix="ocad-iforest-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        onnx_path.write_bytes(onnx_bytes)
        parity = check_parity(reference, onnx_path, parity_x, tol=float(cfg["parity_tol"]),
                              input_name=INPUT_NAME)
        # Calibrate on what the runtime will compute: the ONNX graph's own scores.
        sess = ort_session(onnx_path)
        raw_va = -sess.run([OUTPUT_NAME], {INPUT_NAME: x_judged})[0].astype(np.float64)

    raw_normal = raw_va[normal]
    calibration = Calibration.fit(raw_normal)
    target_far = float(cfg["target_far"])
    threshold = float(np.quantile(raw_normal, 1.0 - target_far))
    val_metrics = _validation_metrics(raw_va, threshold, y_judged, normal)
    val_metrics["n_rows"] = int(x_va.shape[0])
    val_metrics["n_not_judged"] = int((~keep_va).sum())

    metrics = list(cfg["metrics"]) if cfg.get("metrics") else _metrics_of(names)
    inputs: dict[str, Any] = {
        "metrics": metrics,
        "features": names,
        "dtype": "float32",
        "shape": [None, f],
        "input_name": INPUT_NAME,
        "output_name": OUTPUT_NAME,
        "output": "score [N] float32 = IsolationForest.score_samples, higher = more normal; raw = -score",
        "missing_policy": MISSING_POLICY,
        "max_missing_fraction": max_missing,
        "impute": {n: float(v) for n, v in zip(names, impute)},
        "impute_in_graph": True,
    }
    for key in ("window", "stride", "feature_engine"):
        if key in cfg:
            inputs[key] = cfg[key]
    hyper = {
        "n_estimators": int(cfg["n_estimators"]), "max_samples": cfg["max_samples"],
        "max_samples_": int(forest.max_samples_), "max_features": cfg["max_features"],
        "bootstrap": bool(cfg["bootstrap"]), "contamination": cfg["contamination"],
        "target_far": target_far, "random_state": int(seed),
    }
    manifest = {
        "name": ARTIFACT_NAME,
        "kind": ARTIFACT_KIND,
        "version": str(cfg["version"]),
        "format": "onnx",
        "onnx": {"ir_version": IR_VERSION, "opset": {"ai.onnx": OPSET_ONNX, "ai.onnx.ml": OPSET_ML},
                 "graph": "IsNaN/Where impute -> TreeEnsembleRegressor(SUM) -> Exp -> Neg -> Reshape"},
        "inputs": inputs,
        "scaler": scaler.to_dict(),
        "scaler_in_graph": True,
        "scaler_note": "folded into the tree thresholds (exact for float32 inputs); do not re-apply",
        "calibration": calibration.to_dict(),
        "raw_score": "-score (higher = more anomalous); calibration and threshold are on raw",
        "threshold": threshold,
        "threshold_calibrated": float(calibration.transform(np.array([threshold]))[0]),
        "contamination": float(val_metrics["far"]),
        "parity": parity,
        "metrics": {"validation": val_metrics},
        "training_data": {
            "fingerprint": _fingerprint([x_tr, x_va, y_va], names, cfg, seed),
            "n_samples": int(x_fit.shape[0]),
            "n_rows": int(x_tr.shape[0]),
            "n_dropped_missing": int((~keep_tr).sum()),
            "n_validation": int(x_va.shape[0]),
        },
        "hyperparameters": hyper,
        "library_versions": _library_versions(),
    }
    return write_artifact(Path(out_dir), manifest, {"model": ("model.onnx", onnx_bytes)})
