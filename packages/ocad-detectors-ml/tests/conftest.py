"""Fixtures: a small normal fleet and synthetic ONNX artifacts built from it (see ml_synth)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))

import ml_synth as S  # noqa: E402

from ocad.core.artifacts import LoadedArtifact  # noqa: E402
from ocad.core.tooling import Fleet, generate_fleet  # noqa: E402
from ocad.detectors_ml import MultivariateDetector, ResidualDetector  # noqa: E402

from ml_synth import GAUGES, W  # noqa: E402


@pytest.fixture(scope="session")
def fleet() -> Fleet:
    return generate_fleet(n_endpoints=24, duration_s=3 * 3600, seed=5, faults=False)


@pytest.fixture(scope="session")
def forecaster_artifacts(tmp_path_factory: pytest.TempPathFactory) -> list[LoadedArtifact]:
    root = tmp_path_factory.mktemp("forecasters")
    return [S.forecaster_artifact(root / f"tcn-{m}", m, W) for m in GAUGES]


@pytest.fixture(scope="session")
def mv_train(fleet: Fleet) -> np.ndarray:
    return S.training_features(fleet, 32, S.DEFAULT_FEATURES, range(40, 1800, 8))


@pytest.fixture(scope="session")
def mv_artifact(tmp_path_factory: pytest.TempPathFactory, mv_train: np.ndarray) -> LoadedArtifact:
    return S.multivariate_artifact(tmp_path_factory.mktemp("mv") / "iforest-multivariate", mv_train)


@pytest.fixture()
def residual(forecaster_artifacts: list[LoadedArtifact]) -> ResidualDetector:
    return ResidualDetector.from_artifacts(forecaster_artifacts)


@pytest.fixture()
def multivariate(mv_artifact: LoadedArtifact) -> MultivariateDetector:
    return MultivariateDetector.from_artifact(mv_artifact)


@pytest.fixture(scope="session")
def model_dir(forecaster_artifacts: list[LoadedArtifact], mv_artifact: LoadedArtifact,
              tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory of artifacts as Monitor.from_model_dir reads it."""
    import shutil

    root = tmp_path_factory.mktemp("models")
    for a in [*forecaster_artifacts, mv_artifact]:
        shutil.copytree(a.path, root / a.path.name)
    return root
