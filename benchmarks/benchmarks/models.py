"""The model pairs compared: ONNX in onnxruntime vs the framework model it was exported from.

Both members of a pair have the same weights: a TCN forecaster with the architecture
of the shipped ``tcn-*`` artifacts (seeded random weights: speed does not depend on
training) exported with ocad-train's exporter, and an Isolation Forest with the
shipped ``iforest-multivariate`` hyperparameters fitted on FeatureEngine features of
a synthetic fleet, exported with ocad-train's TreeEnsembleRegressor graph. The
onnxruntime sessions use the runtime's session options (``ocad.detectors_ml.SessionConfig``
defaults: one intra-op thread); torch and scikit-learn get one thread too.

Needs ocad-train (torch, scikit-learn, onnx); never imported by the runtime measurements.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .common import has_module

TCN_DEFAULT = {"window": 32, "hidden": 24, "levels": 4, "kernel_size": 3}
IFOREST_DEFAULT = {"n_estimators": 64, "max_samples": 256}


def require_training() -> None:
    for mod in ("torch", "sklearn", "onnx", "onnxruntime", "ocad.train"):
        if not has_module(mod):
            raise NotImplementedError(f"{mod} is not installed (pip install ocad-train)")


def _shipped_manifest(name: str) -> dict[str, Any] | None:
    if not has_module("ocad.detectors_ml"):
        return None
    from ocad.detectors_ml import models_dir

    p = models_dir() / name / "manifest.json"
    return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else None


def runtime_session(model: bytes) -> Any:
    """An onnxruntime session with the runtime detectors' default options."""
    import onnxruntime as ort

    from ocad.detectors_ml import SessionConfig

    cfg = SessionConfig()
    return ort.InferenceSession(model, sess_options=cfg.session_options(), providers=list(cfg.providers))


def tcn_architecture() -> dict[str, int]:
    m = _shipped_manifest("tcn-udp_echo_rtt_ms")
    hp = (m or {}).get("hyperparameters", {})
    return {k: int(hp.get(k, v)) for k, v in TCN_DEFAULT.items()}


def tcn_inputs(batch: int, window: int, seed: int = 0) -> np.ndarray:
    """RTT-like windows (ms): per-window level 1..10 with 5 % noise, float32 (batch, window)."""
    rng = np.random.default_rng(seed)
    level = rng.uniform(1.0, 10.0, size=(batch, 1))
    return (level * (1.0 + 0.05 * rng.standard_normal((batch, window)))).astype(np.float32)


def tcn_pair(seed: int = 0, graph: str = "last_step") -> tuple[Any, bytes, dict[str, int]]:
    """(torch model in eval mode, its ONNX bytes, architecture); ``graph`` as in ``export_tcn_onnx``."""
    require_training()
    import torch

    from ocad.train import TCNForecaster, export_tcn_onnx

    arch = tcn_architecture()
    torch.manual_seed(seed)
    model = TCNForecaster(arch["window"], arch["hidden"], arch["levels"], arch["kernel_size"]).eval()
    with tempfile.TemporaryDirectory() as tmp:
        path = export_tcn_onnx(model, arch["window"], Path(tmp) / "tcn.onnx", graph=graph)
        data = path.read_bytes()
    return model, data, arch


def torch_forecast(model: Any) -> Any:
    """Eager PyTorch forecast of a float32 numpy batch, as ocad-train's ``predict`` runs it."""
    import torch

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()

    return run


def ort_forecast(session: Any) -> Any:
    name = session.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        return session.run(None, {name: x})[0]

    return run


def iforest_features(rows: int, seed: int = 0) -> tuple[np.ndarray, list[str]]:
    """FeatureEngine features (the shipped model's list) of a synthetic fleet, float32 (rows, F)."""
    from ocad.core.pipeline import FeatureEngine
    from ocad.core.plugins import ORAN_METRICS
    from ocad.core.tooling import generate_fleet

    fe = FeatureEngine(ORAN_METRICS)
    m = _shipped_manifest("iforest-multivariate")
    names = list(m["inputs"]["features"]) if m else list(fe.names)
    window = 32
    fleet = generate_fleet(n_endpoints=200, duration_s=3 * 3600, seed=seed, faults=False)
    v = fleet.values  # (E, T, M)
    starts = np.arange(0, v.shape[1] - window, 4)
    wins = np.concatenate([v[:, s:s + window] for s in starts])  # (E * S, W, M)
    ts = np.broadcast_to(fleet.ts[:window] - fleet.ts[0], (wins.shape[0], window))
    ff = fe.compute(wins, ts)
    x = ff.columns(names).astype(np.float32)
    reps = -(-rows // x.shape[0])
    return np.tile(x, (reps, 1))[:rows], names


def iforest_pair(seed: int = 0) -> tuple[Any, bytes, np.ndarray]:
    """(fitted sklearn IsolationForest, its ONNX bytes, held-out float32 features (100 000, F))."""
    require_training()
    from sklearn.ensemble import IsolationForest

    from ocad.train._onnx_trees import iforest_to_onnx

    m = _shipped_manifest("iforest-multivariate")
    hp = {k: int((m or {}).get("hyperparameters", {}).get(k, v)) for k, v in IFOREST_DEFAULT.items()}
    x, _ = iforest_features(120_000, seed=seed)
    # Complete rows only: scikit-learn's forest routes NaN differently from the graph's
    # imputation, and the comparison is about speed on the same inputs.
    x = x[np.isfinite(x).all(axis=1)]
    x = np.tile(x, (-(-120_000 // x.shape[0]), 1))[:120_000]
    rng = np.random.default_rng(seed)
    rng.shuffle(x)
    train, test = x[:20_000], x[20_000:]
    forest = IsolationForest(n_estimators=hp["n_estimators"], max_samples=hp["max_samples"],
                             random_state=seed).fit(train)
    impute = np.nanmedian(train, axis=0).astype(np.float32)
    onnx_model = iforest_to_onnx(forest, impute=impute)
    return forest, onnx_model.SerializeToString(), np.ascontiguousarray(test)


def single_thread_training_libs() -> None:
    """One thread for torch and for the BLAS under scikit-learn: the same resources as the runtime."""
    import torch

    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1)
    except ImportError:  # pragma: no cover
        pass
