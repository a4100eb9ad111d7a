"""Isolation Forest → ONNX: one ``TreeEnsembleRegressor`` node and a few elementwise ops.

The graph computes exactly what the training pipeline computes in Python::

    x     = impute where x is NaN       # missing feature = float32(training median) ("typical")
    z     = (x - center) / scale        # RobustScaler, float64, then float32 (sklearn casts)
    score = IsolationForest.score_samples(z)
          = -2 ** (-mean_t h_t(z) / c(max_samples_))      # higher = more normal

Design (why it is fast and exact):

* **One tree-ensemble node.** Every leaf stores its *final* contribution,
  ``-ln 2 * (depth + c(n_leaf_samples)) / (n_trees * c(max_samples_))``, so the
  node's SUM over trees is already the exponent; the graph then is
  ``[IsNaN → Where →] TreeEnsembleRegressor → Exp → Neg → Reshape``.
  onnxruntime walks all trees in C++ over the whole batch (one call, no
  per-tree Python, no column copies),
  where sklearn calls ``tree.apply`` once per tree and copies ``X[:, features]``
  for feature-subsampled forests.
* **Feature subsampling** (``max_features < 1``): each tree's feature indices are
  remapped through ``estimators_features_`` to columns of the original ``X``.
* **Scaler folded into the thresholds**, not Sub/Div nodes. The scaler is a
  per-feature increasing map, so ``f(x) <= t`` (sklearn's test on the scaled,
  float32-rounded value) is ``x <= t'`` for the largest float32 ``t'`` with
  ``f(t') <= t``. ``t'`` is found by bisection over the ordered float32 values,
  evaluating ``f`` with exactly the numpy operations the reference uses, so
  routing matches sklearn *bit for bit* for every float32 input; a Sub/Div in
  float32 inside the graph would round differently from the float64 reference
  and flip the odd split. The runtime feeds raw features.
* **Thresholds in float32, mode BRANCH_LEQ.** onnxruntime compares float32
  input with float32 thresholds; the largest float32 ``t'`` described above is
  also the right rounding when there is no scaler (largest float32 ``<= t``).
* **Missing values** (NaN) are replaced in the graph (``IsNaN`` + ``Where``, one
  cheap pass over ``X``) by a per-feature raw value, in practice the training
  median as float32, which the scaler maps to ~0 ("typical"). This was measured
  faster than the tree node's ``missing_value_tracks_true`` flags, which add a
  NaN test to every node visit of every tree. Without ``impute`` NaN goes right
  at every split (``NaN <= t`` is false): callers must then never feed NaN.
  ``Inf`` routes like any large number. The *runtime* policy on top of this
  (endpoints missing too many features get NaN, "cannot judge") is the
  detector's, driven by ``max_missing_fraction`` in the manifest.

Input ``"X"``: float32 ``[N, F]`` (dynamic ``N``); output ``"score"``: float32 ``[N]``.
Opsets ai.onnx 17 and ai.onnx.ml 3, IR version 10.
"""

from __future__ import annotations

import json
import math
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import onnx
    from sklearn.ensemble import IsolationForest

__all__ = [
    "INPUT_NAME",
    "IR_VERSION",
    "OPSET_ML",
    "OPSET_ONNX",
    "OUTPUT_NAME",
    "average_path_length",
    "boundary_inputs",
    "iforest_reference_scores",
    "iforest_to_onnx",
    "raw_space_thresholds",
]

INPUT_NAME = "X"
OUTPUT_NAME = "score"
OPSET_ONNX = 17
OPSET_ML = 3
IR_VERSION = 10  # onnxruntime 1.31 reads IR <= 13; 10 keeps older runtimes working too


def average_path_length(n: np.ndarray | float) -> np.ndarray:
    """``c(n)``: the average path length of an unsuccessful BST search over ``n`` points.

    Same definition as sklearn's private ``_average_path_length``: 0 for ``n <= 1``,
    1 for ``n == 2``, ``2 (ln(n-1) + γ) - 2 (n-1)/n`` otherwise.

    >>> [round(float(v), 4) for v in average_path_length(np.array([1, 2, 256]))]
    [0.0, 1.0, 10.2448]
    """
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    nb = n[big]
    out[big] = 2.0 * (np.log(nb - 1.0) + np.euler_gamma) - 2.0 * (nb - 1.0) / nb
    return out


def _affine(center: np.ndarray | None, scale: np.ndarray | None, f: int) -> tuple[np.ndarray, np.ndarray]:
    c = np.zeros(f) if center is None else np.asarray(center, dtype=np.float64).reshape(-1)
    s = np.ones(f) if scale is None else np.asarray(scale, dtype=np.float64).reshape(-1)
    if c.shape != (f,) or s.shape != (f,):
        raise ValueError(f"center/scale must have {f} entries (one per feature), got {c.shape} and {s.shape}")
    if not (np.all(np.isfinite(c)) and np.all(np.isfinite(s)) and np.all(s > 0)):
        raise ValueError("center must be finite and scale finite and > 0 (an increasing map per feature)")
    return c, s


def _scaled32(x32: np.ndarray, c: np.ndarray, s: np.ndarray) -> np.ndarray:
    """The value sklearn's tree compares: RobustScaler in float64, then sklearn's float32 cast."""
    return ((x32.astype(np.float64) - c) / s).astype(np.float32)


def iforest_reference_scores(model: IsolationForest, X: np.ndarray, *,
                             center: np.ndarray | None = None,
                             scale: np.ndarray | None = None,
                             impute: np.ndarray | None = None) -> np.ndarray:
    """What the exported graph computes, in sklearn: the parity reference.

    ``X`` holds raw (unscaled) features, cast to float32 as the graph's input is.
    With ``impute`` (one raw value per feature) NaN entries are replaced by it
    first. Returns float64 ``score_samples`` (higher = more normal).
    """
    x = np.array(X, dtype=np.float32)
    c, s = _affine(center, scale, x.shape[1])
    if impute is not None:
        fill = _impute32(impute, x.shape[1])
        x = np.where(np.isnan(x), fill, x)
    return model.score_samples((x.astype(np.float64) - c) / s)


def _impute32(impute: np.ndarray, f: int) -> np.ndarray:
    v = np.asarray(impute, dtype=np.float32).reshape(-1)
    if v.shape != (f,) or not np.all(np.isfinite(v)):
        raise ValueError(f"impute must hold {f} finite values (one per feature), got shape {v.shape}")
    return v


_KEY_FLIP = np.int64(0x7FFFFFFF)


def _to_key(x32: np.ndarray) -> np.ndarray:
    """Map float32 to int64 so that integer order is float order (-0.0 just below +0.0)."""
    b = x32.astype(np.float32).view(np.int32).astype(np.int64)
    return np.where(b < 0, b ^ _KEY_FLIP, b)


def _from_key(k: np.ndarray) -> np.ndarray:
    b = np.where(k < 0, k ^ _KEY_FLIP, k).astype(np.int32)
    return b.view(np.float32)


def raw_space_thresholds(t: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Largest float32 ``x`` with ``float32((x - center) / scale) <= t``, elementwise.

    ``t`` are sklearn's float64 split thresholds on the scaled feature; the result is
    the float32 threshold on the *raw* feature that routes every float32 input as
    sklearn does (``x <= result`` ⇔ sklearn goes left). With ``center=0, scale=1``
    it is the largest float32 not above ``t``.

    >>> float(raw_space_thresholds(np.array([0.1]), np.zeros(1), np.ones(1))[0]) <= 0.1
    True
    """
    t = np.asarray(t, dtype=np.float64)
    c = np.broadcast_to(np.asarray(center, dtype=np.float64), t.shape)
    s = np.broadcast_to(np.asarray(scale, dtype=np.float64), t.shape)

    def ok(k: np.ndarray) -> np.ndarray:
        return _scaled32(_from_key(k), c, s).astype(np.float64) <= t

    lo = np.full(t.shape, _to_key(np.array([-np.inf], np.float32))[0])  # ok(-inf) is always True
    hi = np.full(t.shape, _to_key(np.array([np.inf], np.float32))[0])
    top = ok(hi)
    # Invariant: ok(lo) and not ok(hi); ~32 halvings over the 2^32 float32 values.
    while True:
        open_ = (hi - lo > 1) & ~top
        if not open_.any():
            break
        mid = (lo + hi) // 2
        good = ok(mid)
        lo = np.where(open_ & good, mid, lo)
        hi = np.where(open_ & ~good, mid, hi)
    return np.where(top, np.float32(np.inf), _from_key(lo)).astype(np.float32)


def boundary_inputs(model: IsolationForest, base: np.ndarray, n: int, *, center: np.ndarray | None = None,
                    scale: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    """Parity probes: rows of ``base`` with one feature exactly on a random split's raw threshold.

    Half sit on the float32 threshold ``t'`` (sklearn goes left), half one ulp above
    (right): the inputs that a threshold rounded the wrong way would misroute, and
    that random data almost never hits.
    """
    rng = np.random.default_rng(seed)
    x = np.asarray(base, dtype=np.float32)
    c, s = _affine(center, scale, x.shape[1])
    rows = x[rng.integers(0, x.shape[0], size=n)].copy()
    cols = np.empty(n, dtype=np.int64)
    t64 = np.empty(n, dtype=np.float64)
    for i, k in enumerate(rng.integers(len(model.estimators_), size=n)):
        tr = model.estimators_[k].tree_
        node = rng.choice(np.flatnonzero(tr.children_left >= 0))
        cols[i] = int(model.estimators_features_[k][tr.feature[node]])
        t64[i] = tr.threshold[node]
    t = raw_space_thresholds(t64, c[cols], s[cols])
    up = np.arange(n) % 2 == 1
    t[up] = np.nextafter(t[up], np.float32(np.inf))
    rows[np.arange(n), cols] = t
    return rows


def _tree_arrays(model: IsolationForest) -> list[dict[str, np.ndarray]]:
    out = []
    for est, feats in zip(model.estimators_, model.estimators_features_):
        tr = est.tree_
        left, right = tr.children_left, tr.children_right
        depth = np.zeros(tr.node_count, dtype=np.int64)
        for i in range(tr.node_count):  # parents precede children in sklearn's node order
            if left[i] >= 0:
                depth[left[i]] = depth[i] + 1
                depth[right[i]] = depth[i] + 1
        out.append({
            "left": left, "right": right, "is_leaf": left < 0,
            "feature": np.asarray(feats, dtype=np.int64)[np.maximum(tr.feature, 0)],
            "threshold": tr.threshold.astype(np.float64),
            "path": depth + average_path_length(tr.n_node_samples),
        })
    return out


def iforest_to_onnx(model: IsolationForest, *, center: np.ndarray | None = None,
                    scale: np.ndarray | None = None, impute: np.ndarray | None = None,
                    feature_names: list[str] | None = None,
                    doc_string: str = "") -> onnx.ModelProto:
    """Export a fitted :class:`sklearn.ensemble.IsolationForest` as described in the module doc.

    ``center`` / ``scale`` (per feature, e.g. a fitted :class:`ocad.core.artifacts.RobustScaler`'s
    ``center_`` / ``scale_``) describe the scaling applied *before* the forest; they
    are folded into the thresholds so the graph takes raw features. ``impute``
    (one raw value per feature, e.g. ``float32(center_)``: the training median)
    replaces NaN inputs inside the graph; without it NaN goes right at every split
    (``NaN <= t`` is false), which no caller should rely on.

    >>> from sklearn.ensemble import IsolationForest
    >>> X = np.random.default_rng(0).normal(size=(500, 3)).astype(np.float32)
    >>> m = iforest_to_onnx(IsolationForest(n_estimators=5, random_state=0).fit(X))
    >>> [o.name for o in m.graph.output]
    ['score']
    """
    import onnx
    from onnx import TensorProto, helper

    if not hasattr(model, "estimators_"):
        raise ValueError("the IsolationForest is not fitted; call fit() first")
    n_features = int(model.n_features_in_)
    c, s = _affine(center, scale, n_features)
    psi = int(getattr(model, "_max_samples", model.max_samples_))
    c_psi = float(average_path_length(np.array([psi]))[0])
    n_trees = len(model.estimators_)
    if c_psi <= 0.0 or n_trees == 0:
        raise ValueError(f"cannot export an IsolationForest with max_samples_={psi} and {n_trees} trees: "
                         "use max_samples >= 2 and n_estimators >= 1")
    if feature_names is not None and len(feature_names) != n_features:
        raise ValueError(f"{len(feature_names)} feature names for a model with {n_features} features")
    # Each leaf's contribution to the exponent of 2 ** (-E[h] / c(psi)), premultiplied by ln 2
    # so the graph needs Exp, not Pow with a constant base.
    leaf_factor = -math.log(2.0) / (n_trees * c_psi)

    trees = _tree_arrays(model)
    tree_ids = np.concatenate([np.full(len(tr["left"]), k, np.int64) for k, tr in enumerate(trees)])
    node_ids = np.concatenate([np.arange(len(tr["left"]), dtype=np.int64) for tr in trees])
    is_leaf = np.concatenate([tr["is_leaf"] for tr in trees])
    feature = np.concatenate([tr["feature"] for tr in trees])
    thr = np.concatenate([tr["threshold"] for tr in trees])
    left = np.concatenate([tr["left"] for tr in trees])
    right = np.concatenate([tr["right"] for tr in trees])
    path = np.concatenate([tr["path"] for tr in trees])

    split = ~is_leaf
    values = np.zeros(len(thr), dtype=np.float32)
    values[split] = raw_space_thresholds(thr[split], c[feature[split]], s[feature[split]])
    feature = np.where(split, feature, 0)
    left = np.where(split, left, 0)
    right = np.where(split, right, 0)

    leaf_tree = tree_ids[is_leaf]
    leaf_node = node_ids[is_leaf]
    leaf_w = (path[is_leaf] * leaf_factor).astype(np.float32)

    attrs: dict[str, Any] = {
        "n_targets": 1,
        "aggregate_function": "SUM",
        "post_transform": "NONE",
        "nodes_treeids": tree_ids.tolist(),
        "nodes_nodeids": node_ids.tolist(),
        "nodes_featureids": feature.tolist(),
        "nodes_modes": ["LEAF" if lf else "BRANCH_LEQ" for lf in is_leaf],
        "nodes_values": values.tolist(),
        "nodes_truenodeids": left.tolist(),
        "nodes_falsenodeids": right.tolist(),
        "target_treeids": leaf_tree.tolist(),
        "target_nodeids": leaf_node.tolist(),
        "target_ids": [0] * len(leaf_tree),
        "target_weights": leaf_w.tolist(),
    }

    nodes = []
    initializers = [helper.make_tensor("flat_shape", TensorProto.INT64, [1], [-1])]
    tree_input = INPUT_NAME
    if impute is not None:
        fill = _impute32(impute, n_features)
        initializers.append(helper.make_tensor("impute", TensorProto.FLOAT, [n_features], fill.tolist()))
        nodes += [
            helper.make_node("IsNaN", [INPUT_NAME], ["missing"], name="missing"),
            helper.make_node("Where", ["missing", "impute", INPUT_NAME], ["X_imputed"], name="impute"),
        ]
        tree_input = "X_imputed"
    nodes += [
        helper.make_node("TreeEnsembleRegressor", [tree_input], ["exponent"], domain="ai.onnx.ml",
                         name="isolation_trees", **attrs),
        helper.make_node("Exp", ["exponent"], ["two_pow"], name="two_pow_neg_mean_path"),
        helper.make_node("Neg", ["two_pow"], ["score_2d"], name="negate"),
        helper.make_node("Reshape", ["score_2d", "flat_shape"], [OUTPUT_NAME], name="flatten"),
    ]
    graph = helper.make_graph(
        nodes, "iforest_score_samples",
        inputs=[helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["N", n_features])],
        outputs=[helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["N"])],
        initializer=initializers,
    )
    m = helper.make_model(
        graph,
        opset_imports=[helper.make_opsetid("", OPSET_ONNX), helper.make_opsetid("ai.onnx.ml", OPSET_ML)],
        producer_name="ocad-train",
        doc_string=doc_string or ("IsolationForest.score_samples (higher = more normal) of raw float32 "
                                  "features; scaler folded into thresholds"
                                  + ("; NaN imputed in-graph." if impute is not None else "; never feed NaN.")),
    )
    m.ir_version = IR_VERSION
    meta = {
        "ocad.graph": "iforest_score_samples",
        "ocad.n_trees": str(n_trees),
        "ocad.max_samples": str(psi),
        "ocad.n_features": str(n_features),
        "ocad.impute_missing": json.dumps(impute is not None),
    }
    if feature_names is not None:
        meta["ocad.features"] = json.dumps(list(feature_names))
    helper.set_model_props(m, meta)
    onnx.checker.check_model(m)
    return m


SESSION_VARIANTS: dict[str, tuple[int, bool]] = {
    "ort2": (2, True),  # 2 intra-op threads, onnxruntime's default spin-waiting
    "ort2_nospin": (2, False),
    "ort1": (1, True),
}


def _benchmark(n_estimators: int = 150, max_samples: int = 256, n_features: int = 30,
               batches: tuple[int, ...] = (1, 1_000, 100_000), seconds: float = 4.0,
               seed: int = 0) -> list[dict[str, float]]:
    """onnxruntime (:data:`SESSION_VARIANTS`) vs sklearn ``score_samples`` on one forest.

    Runs are interleaved (each session, then sklearn, again and again) for about
    ``seconds`` per batch size; per variant the *minimum* and the median wall time
    are kept (on a shared machine the minimum is the run least disturbed by other
    processes). Run: ``python -m ocad.train._onnx_trees [n_estimators] [seconds]``.
    """
    import time

    import onnxruntime as ort
    from sklearn.ensemble import IsolationForest

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(max(batches) + 20_000, n_features)).astype(np.float32)
    x[:, : n_features // 3] = np.exp(x[:, : n_features // 3])  # skewed, like RTTs
    forest = IsolationForest(n_estimators=n_estimators, max_samples=max_samples,
                             random_state=seed).fit(x[:20_000])
    # The production graph (with the in-graph NaN imputation); no scaler, so that
    # sklearn's score_samples on the same float32 batch is the exact reference.
    data = iforest_to_onnx(forest, impute=np.median(x[:20_000], axis=0)).SerializeToString()
    sessions = {}
    for name, (threads, spin) in SESSION_VARIANTS.items():
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        sessions[name] = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    rows = []
    for b in batches:
        xb = np.ascontiguousarray(x[20_000:20_000 + b])
        ref = forest.score_samples(xb)
        times: dict[str, list[float]] = {k: [] for k in [*sessions, "sklearn"]}
        row: dict[str, float] = {"batch": b, "max_abs_diff": max(
            float(np.max(np.abs(s.run(None, {INPUT_NAME: xb})[0] - ref))) for s in sessions.values())}
        end = time.perf_counter() + seconds
        while time.perf_counter() < end or len(times["sklearn"]) < 3:
            for k, s in sessions.items():
                t0 = time.perf_counter()
                s.run(None, {INPUT_NAME: xb})
                times[k].append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            forest.score_samples(xb)
            times["sklearn"].append(time.perf_counter() - t0)
        row["runs"] = len(times["sklearn"])
        for k, v in times.items():
            row[f"{k}_min_s"] = min(v)
            row[f"{k}_median_s"] = float(np.median(v))
        rows.append(row)
    return rows


if __name__ == "__main__":  # pragma: no cover - manual benchmark
    import sys

    n_trees = int(sys.argv[1]) if len(sys.argv) > 1 else 150
    secs = float(sys.argv[2]) if len(sys.argv) > 2 else 4.0
    print(f"IsolationForest n_estimators={n_trees} max_samples=256 features=30; "
          "times min / median ms; ratio = sklearn / ort (min)")
    for r in _benchmark(n_estimators=n_trees, seconds=secs):
        skl = r["sklearn_min_s"]
        cells = [f"sklearn {skl * 1e3:.3f} / {r['sklearn_median_s'] * 1e3:.3f}"]
        for k in SESSION_VARIANTS:
            cells.append(f"{k} {r[k + '_min_s'] * 1e3:.3f} / {r[k + '_median_s'] * 1e3:.3f} "
                         f"({skl / r[k + '_min_s']:.1f}x)")
        print(f"batch {int(r['batch']):>6} runs {int(r['runs']):>4} | " + " | ".join(cells)
              + f" | max|d| {r['max_abs_diff']:.1e}")
