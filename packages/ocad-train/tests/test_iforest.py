"""Isolation Forest export (one TreeEnsembleRegressor graph) and the iforest-multivariate artifact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.ensemble import IsolationForest

from ocad.core import OcadConfigError
from ocad.core.artifacts import load_artifact, scaler_from_dict
from ocad.core.plugins import Calibration
from ocad.train._export import ParityError, check_parity, ort_session
from ocad.train._iforest import (
    ARTIFACT_KIND,
    ARTIFACT_NAME,
    feature_engine_params,
    feature_matrix_from_fleet,
    missing_fraction,
    train_iforest,
)
from ocad.train._onnx_trees import (
    average_path_length,
    boundary_inputs,
    iforest_reference_scores,
    iforest_to_onnx,
    raw_space_thresholds,
)

F = 12


def _data(rng: np.random.Generator, n: int, shift: float = 0.0) -> np.ndarray:
    """Features on very different scales and offsets, some skewed (like RTTs in ms and us).

    ``shift`` moves half of the features by that many standard deviations (anomalies).
    """
    z = rng.normal(size=(n, F))
    z[:, ::2] += shift
    z[:, :4] = np.exp(z[:, :4])
    z[:, 4] += 0.6 * z[:, 5]  # correlated pair
    scales = np.geomspace(1e-3, 1e4, F)
    return (z * scales + np.linspace(-50.0, 5000.0, F)).astype(np.float32)


def _boundary_rows(forest: IsolationForest, base: np.ndarray, center: np.ndarray, scale: np.ndarray,
                   rng: np.random.Generator, n: int) -> np.ndarray:
    return boundary_inputs(forest, base, n, center=center, scale=scale, seed=int(rng.integers(1 << 30)))


def _robust(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c = np.nanmedian(x, axis=0).astype(np.float64)
    q75, q25 = np.nanpercentile(x, [75, 25], axis=0)
    return c, np.maximum((q75 - q25) / 1.349, 1e-12)


FORESTS = [
    pytest.param(dict(n_estimators=100, max_samples=256, contamination="auto"), id="all-features"),
    pytest.param(dict(n_estimators=60, max_samples=128, max_features=0.5, bootstrap=True,
                      contamination=0.05), id="half-features-bootstrap"),
    pytest.param(dict(n_estimators=80, max_samples=0.02, max_features=0.75, contamination=0.01),
                 id="fractional-samples"),
]


@pytest.mark.parametrize("params", FORESTS)
def test_onnx_matches_score_samples_on_10k_heldout_inputs(params: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(7)
    x_train, x_test = _data(rng, 8000), _data(rng, 12_000)
    center, scale = _robust(x_train)
    impute = center.astype(np.float32)
    z_train = (x_train.astype(np.float64) - center) / scale
    forest = IsolationForest(random_state=3, **params).fit(z_train)

    # Held-out rows, rows outside the training range, rows with NaN, rows exactly on thresholds.
    x = x_test.copy()
    x[:1000] *= 3.0
    nan = rng.random(x.shape) < 0.1
    nan[:6000] = False
    x[nan] = np.nan
    x = np.concatenate([x, _boundary_rows(forest, x_test, center, scale, rng, 2000)])

    path = tmp_path / "m.onnx"
    onnx.save(iforest_to_onnx(forest, center=center, scale=scale, impute=impute), path)
    result = check_parity(
        lambda b: iforest_reference_scores(forest, b, center=center, scale=scale, impute=impute),
        path, x, tol=1e-4, input_name="X")
    assert result["n"] >= 10_000
    # Routing is exact, so only float32 arithmetic in the sum / exp remains.
    assert result["max_abs_diff"] < 2e-6

    # The reference really is sklearn's score_samples of the scaled, imputed rows.
    z = (np.where(np.isnan(x[:500]), impute, x[:500]).astype(np.float64) - center) / scale
    np.testing.assert_array_equal(
        iforest_reference_scores(forest, x[:500], center=center, scale=scale, impute=impute),
        forest.score_samples(z))


def test_naive_threshold_rounding_fails_parity_on_boundary_rows(monkeypatch: pytest.MonkeyPatch,
                                                                 tmp_path: Path) -> None:
    # Guards the test above: its boundary rows tell correct thresholds from float32(t * scale + center).
    import ocad.train._onnx_trees as trees

    rng = np.random.default_rng(1)
    x = _data(rng, 6000)
    center, scale = _robust(x[:4000])
    forest = IsolationForest(n_estimators=50, random_state=0).fit((x[:4000].astype(np.float64) - center) / scale)
    rows = _boundary_rows(forest, x[4000:], center, scale, rng, 2000)

    def ref(b: np.ndarray) -> np.ndarray:
        return iforest_reference_scores(forest, b, center=center, scale=scale)

    good = tmp_path / "good.onnx"
    onnx.save(iforest_to_onnx(forest, center=center, scale=scale), good)
    assert check_parity(ref, good, rows)["max_abs_diff"] < 2e-6
    monkeypatch.setattr(trees, "raw_space_thresholds", lambda t, c, s: (t * s + c).astype(np.float32))
    naive = tmp_path / "naive.onnx"
    onnx.save(iforest_to_onnx(forest, center=center, scale=scale), naive)
    with pytest.raises(ParityError):
        check_parity(ref, naive, rows)


def test_graph_layout_opsets_and_dynamic_batch() -> None:
    rng = np.random.default_rng(0)
    x = _data(rng, 3000)
    forest = IsolationForest(n_estimators=20, max_samples=64, random_state=0).fit(x)
    model = iforest_to_onnx(forest, impute=np.nanmedian(x, axis=0), feature_names=[f"f{i}" for i in range(F)])
    onnx.checker.check_model(model, full_check=True)
    assert model.ir_version == 10 <= 13
    assert {o.domain or "ai.onnx": o.version for o in model.opset_import} == {"ai.onnx": 17, "ai.onnx.ml": 3}
    ops = [n.op_type for n in model.graph.node]
    assert ops == ["IsNaN", "Where", "TreeEnsembleRegressor", "Exp", "Neg", "Reshape"]
    (tree,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in tree.attribute}
    assert attrs["aggregate_function"] == b"SUM"
    assert set(attrs["nodes_modes"]) == {b"BRANCH_LEQ", b"LEAF"}
    assert len(set(attrs["nodes_treeids"])) == 20
    inp, out = model.graph.input[0], model.graph.output[0]
    assert (inp.name, out.name) == ("X", "score")
    assert inp.type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert [d.dim_param or d.dim_value for d in inp.type.tensor_type.shape.dim] == ["N", F]
    assert [d.dim_param or d.dim_value for d in out.type.tensor_type.shape.dim] == ["N"]
    assert json.loads({p.key: p.value for p in model.metadata_props}["ocad.features"])[0] == "f0"

    sess = ort_session(model.SerializeToString())
    for n in (1, 7):
        got = sess.run(None, {"X": x[:n]})[0]
        assert got.shape == (n,) and got.dtype == np.float32
        np.testing.assert_allclose(got, forest.score_samples(x[:n]), atol=1e-6)
    assert sess.run(None, {"X": x[:0]})[0].shape == (0,)


def test_average_path_length_matches_sklearn() -> None:
    from sklearn.ensemble._iforest import _average_path_length

    n = np.array([0, 1, 2, 3, 10, 255, 256, 4096])
    np.testing.assert_allclose(average_path_length(n), _average_path_length(n), rtol=0, atol=1e-12)


@settings(max_examples=200, deadline=None)
@given(t=st.floats(-1e6, 1e6, allow_nan=False), c=st.floats(-1e4, 1e4, allow_nan=False),
       s=st.floats(1e-6, 1e4, allow_nan=False))
def test_raw_threshold_is_the_last_float32_routed_left(t: float, c: float, s: float) -> None:
    r = raw_space_thresholds(np.array([t]), np.array([c]), np.array([s]))[0]

    def left(x: np.float32) -> bool:  # sklearn: float32((x - c) / s) <= t, in float64 arithmetic
        return bool(np.float64(np.float32((np.float64(x) - c) / s)) <= t)

    assert r.dtype == np.float32
    assert left(r)
    assert not left(np.nextafter(r, np.float32(np.inf)))


def test_corrupted_leaf_fails_the_parity_check(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    x = _data(rng, 14_000)
    forest = IsolationForest(n_estimators=50, random_state=0).fit(x[:4000])
    model = iforest_to_onnx(forest)
    held_out = x[4000:]
    path = tmp_path / "ok.onnx"
    onnx.save(model, path)
    assert check_parity(forest.score_samples, path, held_out)["max_abs_diff"] < 1e-5

    # Corrupt the leaf of tree 0 that most held-out rows reach: its path length +1.
    leaf = np.bincount(forest.estimators_[0].apply(held_out)).argmax()
    (tree,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
    a = {x.name: x for x in tree.attribute}
    k = [i for i, (t, nid) in enumerate(zip(a["target_treeids"].ints, a["target_nodeids"].ints))
         if t == 0 and nid == leaf][0]
    a["target_weights"].floats[k] *= 1.2
    bad = tmp_path / "bad.onnx"
    onnx.save(model, bad)
    with pytest.raises(ParityError, match="parity check FAILED"):
        check_parity(forest.score_samples, bad, held_out)


# -- the artifact ---------------------------------------------------------------------

def _dataset(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    x_train, x_val = _data(rng, 12_000), _data(rng, 8000)
    labels = np.zeros(x_val.shape[0], np.int64)
    labels[:300] = 1
    x_val[:300] = _data(rng, 300, shift=3.0)  # anomalies: half of the features well off
    labels[300:400] = -1  # "neither", e.g. just after a fault
    # Missing metrics: 5% of rows lack features 8..11 (a third), a few rows lack almost all.
    for x in (x_train, x_val):
        rows = rng.random(x.shape[0]) < 0.05
        x[np.ix_(rows, np.arange(8, 12))] = np.nan
        x[rng.random(x.shape[0]) < 0.01, 1:] = np.nan
    names = [f"m{j // 4}:f{j % 4}" for j in range(F)]
    return x_train, x_val, labels, names


@pytest.fixture(scope="module")
def artifact(tmp_path_factory: pytest.TempPathFactory):
    x_train, x_val, labels, names = _dataset(11)
    out = tmp_path_factory.mktemp("art") / "iforest"
    art = train_iforest(x_train, x_val, names, out_dir=out, labels_val=labels, seed=5,
                        config={"n_estimators": 60, "max_samples": 256, "target_far": 0.01,
                                "max_missing_fraction": 0.5, "window": 60})
    return art, (x_train, x_val, labels, names)


def test_artifact_manifest(artifact) -> None:
    art, (x_train, x_val, labels, names) = artifact
    loaded = load_artifact(art.path, expected_kind="multivariate")
    m = loaded.manifest
    assert (m["name"], m["kind"], m["format"]) == (ARTIFACT_NAME, ARTIFACT_KIND, "onnx")
    assert m["files"]["model"]["path"] == "model.onnx"
    inp = m["inputs"]
    assert inp["features"] == names and inp["metrics"] == ["m0", "m1", "m2"]
    assert (inp["dtype"], inp["input_name"], inp["output_name"]) == ("float32", "X", "score")
    assert inp["max_missing_fraction"] == 0.5 and inp["window"] == 60
    assert list(inp["impute"]) == names and "missing_fraction" in inp["missing_policy"]
    assert m["scaler_in_graph"] is True
    scaler = scaler_from_dict(m["scaler"])
    np.testing.assert_allclose(list(inp["impute"].values()), scaler.center_.astype(np.float32))
    assert m["parity"]["n"] >= 10_000 and m["parity"]["max_abs_diff"] <= 1e-4
    assert abs(m["contamination"] - 0.01) < 0.003
    val = m["metrics"]["validation"]
    assert val["n_not_judged"] == int((missing_fraction(x_val) > 0.5).sum()) > 0
    assert val["n_ignored"] > 0
    assert val["recall"] > 0.9 and val["precision"] > 0.5 and val["roc_auc"] > 0.95
    assert len(m["training_data"]["fingerprint"]) == 64
    assert m["training_data"]["n_samples"] == int((missing_fraction(x_train) <= 0.5).sum())
    assert m["hyperparameters"]["n_estimators"] == 60
    assert set(m["library_versions"]) >= {"scikit-learn", "onnx", "onnxruntime", "numpy", "ocad_core"}
    model = onnx.load(str(loaded.file("model")))
    assert model.ir_version == 10


def test_artifact_scores_raw_features_and_is_calibrated(artifact) -> None:
    art, (_, x_val, labels, _) = artifact
    m = art.manifest
    sess = ort_session(art.file("model"))
    cal = Calibration.from_dict(m["calibration"])
    judged = missing_fraction(x_val) <= m["inputs"]["max_missing_fraction"]
    normal = judged & (labels == 0)
    raw = -sess.run(["score"], {"X": x_val[normal]})[0].astype(np.float64)
    assert np.isfinite(raw).all()
    frac = float(np.mean(cal.transform(raw) > 0.99))
    assert 0.003 <= frac <= 0.03

    # Fresh normal data from the same process (not seen in calibration) is calibrated too.
    fresh = _data(np.random.default_rng(99), 20_000)
    fresh_raw = -sess.run(["score"], {"X": fresh})[0].astype(np.float64)
    p = cal.transform(fresh_raw)
    assert 0.003 <= float(np.mean(p > 0.99)) <= 0.03
    assert 0.4 <= float(np.median(p)) <= 0.6
    assert 0.003 <= float(np.mean(fresh_raw > m["threshold"])) <= 0.03

    # Anomalies score above the threshold.
    anomalous = judged & (labels == 1)
    raw_a = -sess.run(["score"], {"X": x_val[anomalous]})[0]
    assert np.mean(raw_a > m["threshold"]) > 0.9


def test_training_is_reproducible_and_refuses_to_overwrite(artifact, tmp_path: Path) -> None:
    art, (x_train, x_val, labels, names) = artifact
    cfg = {"n_estimators": 60, "max_samples": 256, "target_far": 0.01, "max_missing_fraction": 0.5,
           "window": 60}
    again = train_iforest(x_train, x_val, names, out_dir=tmp_path / "a", labels_val=labels, seed=5, config=cfg)
    assert again.file("model").read_bytes() == art.file("model").read_bytes()
    assert again.manifest["training_data"] == art.manifest["training_data"]
    with pytest.raises(Exception, match="immutable"):
        train_iforest(x_train, x_val, names, out_dir=tmp_path / "a", seed=5, config=cfg)
    with pytest.raises(OcadConfigError, match="unknown key"):
        train_iforest(x_train, x_val, names, out_dir=tmp_path / "b", config={"n_trees": 3})


def test_parity_failure_writes_no_artifact(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import ocad.train._iforest as mod

    real = mod.iforest_to_onnx

    def broken(*args, **kwargs):  # an exporter bug: every leaf 1% too deep
        model = real(*args, **kwargs)
        (tree,) = [n for n in model.graph.node if n.op_type == "TreeEnsembleRegressor"]
        w = [a for a in tree.attribute if a.name == "target_weights"][0]
        w.floats[:] = [v * 1.01 for v in w.floats]
        return model

    monkeypatch.setattr(mod, "iforest_to_onnx", broken)
    x_train, x_val, _, names = _dataset(3)
    out = tmp_path / "never"
    with pytest.raises(ParityError):
        train_iforest(x_train[:3000], x_val[:2000], names, out_dir=out, config={"n_estimators": 20})
    assert not out.exists() and not list(tmp_path.iterdir())


# -- features from a fleet ------------------------------------------------------------

def test_feature_matrix_from_fleet_rows_are_runtime_windows() -> None:
    from ocad.core.plugins import ORAN_METRICS
    from ocad.core.pipeline import FeatureEngine
    from ocad.core.tooling import generate_fleet

    fleet = generate_fleet(n_endpoints=7, duration_s=2 * 3600, seed=4)
    engine = FeatureEngine(ORAN_METRICS)
    w, stride = 24, 5
    x, names, labels, ei, ti = feature_matrix_from_fleet(fleet, engine, w, stride, max_rows_per_chunk=50)
    n_t = fleet.ts.shape[0]
    ends = np.arange(w - 1, n_t, stride)
    assert x.shape == (ends.size * 7, len(engine.names)) and names == list(engine.names)
    assert np.array_equal(ti, np.repeat(ends, 7)) and np.array_equal(ei, np.tile(np.arange(7), ends.size))
    np.testing.assert_array_equal(labels, fleet.labels[ei, ti])
    assert labels.any()  # the fleet has faults, and they reach the labels
    for i in (0, 8, x.shape[0] // 2, x.shape[0] - 1):
        e, t = ei[i], ti[i]
        one = engine.compute(fleet.values[e:e + 1, t - w + 1:t + 1], fleet.ts[None, t - w + 1:t + 1])
        # Same window, same engine; the engine's float32 EWMA (a BLAS product) may round
        # differently in a batch of one than in a block of many, at float32 precision.
        np.testing.assert_allclose(x[i], one.data[0], rtol=1e-6, atol=1e-9)
    # Endpoints without a metric have NaN features for it: the missing-metric policy applies.
    assert np.isnan(x).any() and (missing_fraction(x) < 0.5).all()
    params = feature_engine_params(engine)
    assert params["metrics"] == list(fleet.metrics) and params["alpha"] == engine.alpha
    rebuilt = FeatureEngine(ORAN_METRICS, **{k: v for k, v in params.items() if k != "metrics"})
    assert rebuilt.names == engine.names


def test_end_to_end_on_a_generated_fleet(tmp_path: Path) -> None:
    from ocad.core.plugins import ORAN_METRICS
    from ocad.core.pipeline import FeatureEngine
    from ocad.core.tooling import generate_fleet

    fleet = generate_fleet(n_endpoints=16, duration_s=6 * 3600, seed=2)
    engine = FeatureEngine(ORAN_METRICS)
    w = 36
    x, names, labels, ei, ti = feature_matrix_from_fleet(fleet, engine, w, stride=5)
    normal = fleet.normal_mask()[ei, ti]
    # Chronological split with a gap of one window: no window spans both parts.
    cut = int(fleet.ts.shape[0] * 0.6)
    train = (ti < cut) & normal
    val = ti >= cut + w
    y = np.where(labels[val] != 0, 1, np.where(normal[val], 0, -1))
    art = train_iforest(x[train], x[val], names, out_dir=tmp_path / "fleet", labels_val=y, seed=1,
                        config={"n_estimators": 100, "window": w, "feature_engine": feature_engine_params(engine)})
    m = load_artifact(art.path).manifest
    assert m["inputs"]["metrics"] == list(fleet.metrics)
    assert m["inputs"]["feature_engine"]["metrics"] == list(fleet.metrics)
    assert m["parity"]["max_abs_diff"] <= 1e-4 and m["parity"]["n"] >= 10_000
    v = m["metrics"]["validation"]
    assert v["n_anomalous"] > 200 and v["roc_auc"] > 0.75 and v["recall"] > 0.3, v
    assert abs(v["far"] - 0.01) < 0.005
