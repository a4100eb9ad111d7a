"""Optional experiment tracking with MLflow (extra ``mlflow``; ``ocad train --mlflow``).

One MLflow run per training invocation; per artifact its hyperparameters (prefixed
by the artifact name), per-epoch losses, test / validation metrics, parity and
the artifact directory itself. Tracking never changes what is trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ocad.core.artifacts import LoadedArtifact

from ._errors import require_extra

__all__ = ["MlflowTracker"]


class MlflowTracker:
    """Log a training run to MLflow. Raises ``OcadDependencyError`` (extra ``mlflow``) if missing."""

    def __init__(self, *, tracking_uri: str | None = None, experiment: str = "ocad",
                 run_name: str | None = None, params: Mapping[str, Any] | None = None) -> None:
        self._mlflow = require_extra("mlflow", "mlflow", "experiment tracking (ocad train --mlflow)")
        if tracking_uri:
            self._mlflow.set_tracking_uri(tracking_uri)
        self._mlflow.set_experiment(experiment)
        self._run = self._mlflow.start_run(run_name=run_name)
        self._step: dict[str, int] = {}
        if params:
            self._mlflow.log_params({k: str(v)[:250] for k, v in params.items()})

    def log_epoch(self, name: str, record: Mapping[str, float]) -> None:
        step = int(record.get("epoch", self._step.get(name, 0) + 1))
        self._step[name] = step
        self._mlflow.log_metrics({f"{name}.train_loss": record["train_loss"],
                                  f"{name}.val_loss": record["val_loss"]}, step=step)

    def log_artifact(self, art: LoadedArtifact, *, seconds: float | None = None) -> None:
        m = art.manifest
        flat: dict[str, float] = {}
        for part in ("test", "validation"):
            for k, v in (m.get("metrics", {}).get(part) or {}).items():
                if isinstance(v, (int, float)):
                    flat[f"{art.name}.{part}.{k}"] = float(v)
        if "parity" in m:
            flat[f"{art.name}.parity.max_abs_diff"] = float(m["parity"]["max_abs_diff"])
        if seconds is not None:
            flat[f"{art.name}.seconds"] = float(seconds)
        self._mlflow.log_metrics(flat)
        hp = {f"{art.name}.{k}": str(v)[:250] for k, v in (m.get("hyperparameters") or {}).items()
              if k != "history"}
        self._mlflow.log_params(hp)
        self._mlflow.log_artifacts(str(art.path), artifact_path=f"{art.name}/{art.version}")

    def close(self) -> None:
        self._mlflow.end_run()
