"""ONNX in onnxruntime vs the framework model it was exported from (needs ocad-train)."""

from __future__ import annotations

from typing import Any

import numpy as np

from . import models


class TCNForecastSuite:
    """One TCN forecast call (the shipped architecture): the shipped last-step graph in onnxruntime,
    the full graph (every output step, the artifacts before issue #12), eager PyTorch."""

    params = [["onnxruntime", "onnxruntime-full", "torch"], [1, 10_000]]
    param_names = ["backend", "batch"]
    timeout = 600
    repeat = (1, 10, 20.0)

    def setup_cache(self) -> dict[str, Any]:
        models.require_training()
        model, onnx_bytes, arch = models.tcn_pair()
        return {"state": {k: v.numpy() for k, v in model.state_dict().items()}, "onnx": onnx_bytes,
                "onnx_full": models.tcn_pair(graph="full")[1], "arch": arch}

    def setup(self, cache: dict[str, Any], backend: str, batch: int) -> None:
        models.require_training()
        import torch

        from ocad.train import TCNForecaster

        models.single_thread_training_libs()
        arch = cache["arch"]
        self.x = models.tcn_inputs(batch, arch["window"])
        if backend == "torch":
            model = TCNForecaster(arch["window"], arch["hidden"], arch["levels"], arch["kernel_size"]).eval()
            model.load_state_dict({k: torch.from_numpy(v) for k, v in cache["state"].items()})
            self.run = models.torch_forecast(model)
        else:
            key = "onnx_full" if backend == "onnxruntime-full" else "onnx"
            self.run = models.ort_forecast(models.runtime_session(cache[key]))
        self.run(self.x)

    def time_forecast(self, cache: dict[str, Any], backend: str, batch: int) -> None:
        self.run(self.x)


class IsolationForestSuite:
    """Isolation Forest scores: the exported TreeEnsembleRegressor graph vs ``score_samples``."""

    params = [["onnxruntime", "sklearn"], [1, 1_000, 100_000]]
    param_names = ["backend", "batch"]
    timeout = 900
    repeat = (1, 10, 30.0)

    def setup_cache(self) -> dict[str, Any]:
        models.require_training()
        forest, onnx_bytes, test = models.iforest_pair()
        return {"forest": forest, "onnx": onnx_bytes, "x": test}

    def setup(self, cache: dict[str, Any], backend: str, batch: int) -> None:
        models.require_training()
        models.single_thread_training_libs()
        self.x = np.ascontiguousarray(cache["x"][:batch])
        if backend == "sklearn":
            self.run = cache["forest"].score_samples
        else:
            sess = models.runtime_session(cache["onnx"])
            self.run = models.ort_forecast(sess)
        self.run(self.x)

    def time_score(self, cache: dict[str, Any], backend: str, batch: int) -> None:
        self.run(self.x)
