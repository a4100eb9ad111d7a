"""Start-up: imports in a fresh interpreter, artifact loading, building the Monitor."""

from __future__ import annotations

from .common import has_module, make_monitor, shipped_models


class ImportSuite:
    """``import`` in a fresh interpreter (asv ``timeraw``: the interpreter start is not counted)."""

    timeout = 120
    repeat = (3, 10, 30.0)

    def timeraw_import_core(self) -> str:
        return "import ocad.core"

    def timeraw_import_detectors_ml(self) -> str:
        if not has_module("ocad.detectors_ml"):
            raise NotImplementedError("ocad-detectors-ml is not installed")
        return "import ocad.detectors_ml"

    def timeraw_import_onnxruntime(self) -> str:
        # What the ML detectors pay on their first session (imported lazily, not by the import above).
        return "import onnxruntime"


class ArtifactSuite:
    """Loading the shipped artifacts: verify hashes and manifests, open onnxruntime sessions."""

    timeout = 300
    repeat = (1, 10, 20.0)

    def setup(self) -> None:
        if not shipped_models():
            raise NotImplementedError("no shipped ML models")
        from ocad.detectors_ml import models_dir

        self.paths = [models_dir() / name for name in shipped_models()]

    def time_load_artifacts(self) -> None:
        from ocad.core.artifacts import load_artifact

        for p in self.paths:
            load_artifact(p)

    def time_build_ml_detectors(self) -> None:
        from ocad.core.artifacts import load_artifact
        from ocad.core.plugins import DetectorContext, MetricRegistry, ORAN_METRICS
        from ocad.detectors_ml import build_detectors

        arts = [load_artifact(p) for p in self.paths]
        build_detectors(arts, DetectorContext(metrics=MetricRegistry(ORAN_METRICS), window=32))

    def time_monitor_with_models(self) -> None:
        make_monitor(ml=True)

    def peakmem_monitor_with_models(self) -> None:
        make_monitor(ml=True)
