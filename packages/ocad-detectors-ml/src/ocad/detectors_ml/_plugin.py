"""The ``ml`` plugin (entry point ``ml = "ocad.detectors_ml._plugin"`` in the ``ocad`` group).

* ``ocad_detectors``: the residual and multivariate detectors built from the
  artifacts *shipped* in this package (``ocad/detectors_ml/models/<name>/``),
  when ``context.use_shipped_models`` is true and their metrics are configured.
* ``ocad_artifact_detectors``: the same detectors built from the artifacts
  ``Monitor.from_model_dir`` found: every ``"forecaster"`` artifact goes into one
  :class:`ResidualDetector`, a ``"multivariate"`` artifact becomes the
  :class:`MultivariateDetector`; other kinds are ignored.

Broken artifacts
----------------
Every artifact is loaded and built on its own: one that fails (hash mismatch,
malformed manifest, ONNX graph onnxruntime cannot load or whose signature does
not match the manifest) is skipped, logged, and reported in
``context.artifact_errors`` (the Monitor shows them in ``health()["artifact_errors"]``)
and in this module's :data:`last_errors`; the plugin's other detectors are
built. With ``context.strict`` (``Monitor(..., strict=True)``) the first
problem is raised instead, the registry records it and the Monitor refuses to
start. A bad ``[onnxruntime]`` or ``[detectors.residual]`` config table is not an
artifact problem: it raises ``OcadConfigError`` and the Monitor refuses to start,
naming the key.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ocad.core import OcadArtifactError, OcadConfigError
from ocad.core.artifacts import LoadedArtifact, load_artifact
from ocad.core.plugins import hookimpl

from ._multivariate import MULTIVARIATE_KIND, MultivariateDetector
from ._residual import FORECASTER_KIND, Forecaster, ResidualDetector
from ._session import SessionConfig, _check_providers

if TYPE_CHECKING:
    from ocad.core.plugins import Detector, DetectorContext, ModelArtifact

__all__ = ["build_detectors", "last_errors", "models_dir", "shipped_artifacts"]

log = logging.getLogger("ocad.detectors_ml")

#: Problems of the most recent hook call of this process (also in ``context.artifact_errors``).
last_errors: list[str] = []
_logged_no_models = False


def models_dir() -> Path:
    """Where the shipped artifacts live (package data written by the ocad-train build)."""
    return Path(str(resources.files("ocad.detectors_ml").joinpath("models")))


def shipped_artifacts() -> tuple[list[LoadedArtifact], list[str]]:
    """Verified shipped artifacts and the problems of those that failed verification."""
    root = models_dir()
    arts: list[LoadedArtifact] = []
    errors: list[str] = []
    if not root.is_dir():
        return arts, errors
    for p in sorted(root.iterdir()):
        if not (p / "manifest.json").is_file():
            continue
        try:
            arts.append(load_artifact(p))
        except OcadArtifactError as exc:
            errors.append(str(exc))
    return arts, errors


def _problem(context: Any, exc: OcadArtifactError | str) -> None:
    if getattr(context, "strict", False):
        raise exc if isinstance(exc, OcadArtifactError) else OcadArtifactError("ml plugin", exc)
    msg = str(exc)
    log.error("ocad ml plugin: %s (detector skipped)", msg)
    last_errors.append(msg)
    errs = getattr(context, "artifact_errors", None)
    if isinstance(errs, list):
        errs.append(msg)


def _check_options(context: DetectorContext) -> None:
    for name in ("residual", "multivariate"):
        extra = context.options(name)
        if extra:
            raise OcadConfigError(f"detectors.{name}: unknown option(s) {sorted(extra)}; only 'enabled' and "
                                  "'weight' are read (the model is configured by its artifact)")


def build_detectors(artifacts: Iterable[ModelArtifact], context: DetectorContext,
                    *, require_metrics: bool = True) -> list[Detector]:
    """Build the residual and multivariate detectors from ``artifacts`` (other kinds ignored).

    ``require_metrics``: skip models whose metrics are not all in ``context.metrics``.
    Bad artifacts are reported (see module docs), not raised, unless ``context.strict``.
    """
    _check_options(context)
    session = SessionConfig.from_mapping(context.session_options)
    _check_providers(session.providers)  # the user's config: refuses to start, before any artifact
    specs = {s.name: s for s in context.metrics}
    forecasters: dict[str, Forecaster] = {}
    multi: MultivariateDetector | None = None
    for art in artifacts:
        if not isinstance(art, LoadedArtifact):
            art = LoadedArtifact(path=Path(art.path), manifest=art.manifest)
        kind = art.manifest.get("kind")
        if kind not in (FORECASTER_KIND, MULTIVARIATE_KIND):
            continue
        try:
            metrics = art.manifest.get("inputs", {}).get("metrics", [])
            if not isinstance(metrics, list) or not all(isinstance(m, str) for m in metrics):
                raise OcadArtifactError(f"{art.name}@{art.version} ({art.path})",
                                        f"manifest field 'inputs.metrics' = {metrics!r:.80} must be a list of names")
            if require_metrics and not all(m in specs for m in metrics):
                log.info("ocad ml plugin: %s@%s skipped: metrics %s are not all configured",
                         art.name, art.version, metrics)
                continue
            if kind == FORECASTER_KIND:
                fc = Forecaster.from_artifact(art, session, specs.get(metrics[0]) if metrics else None)
                if fc.metric in forecasters:
                    _problem(context, f"artifact {art.name}@{art.version} ({art.path}): a second forecaster "
                             f"for metric {fc.metric!r} (already {forecasters[fc.metric].source}); ignored")
                    continue
                forecasters[fc.metric] = fc
            else:
                if multi is not None:
                    _problem(context, f"artifact {art.name}@{art.version} ({art.path}): a second multivariate "
                             f"model (already {multi.source}); ignored")
                    continue
                multi = MultivariateDetector.from_artifact(art, session=session, metrics=specs)
        except OcadArtifactError as exc:
            _problem(context, exc)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # noqa: BLE001 - a field no check above foresaw: this artifact only
            _problem(context, OcadArtifactError(
                f"{art.name}@{art.version} ({art.path})",
                f"manifest not understood: {type(exc).__name__}: {str(exc)[:300]}"))
    out: list[Detector] = []
    if forecasters:
        # The Monitor's metric order, not the directory's: evidence columns read like the config.
        order = {m: i for i, m in enumerate(specs)}
        fcs = sorted(forecasters.values(), key=lambda f: (order.get(f.metric, len(order)), f.metric))
        out.append(ResidualDetector(forecasters=tuple(fcs)))
    if multi is not None:
        out.append(multi)
    return out


@hookimpl
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    """The ML detectors on the shipped default models (none before the training build wrote them)."""
    global _logged_no_models
    if not context.use_shipped_models:
        return []
    last_errors.clear()
    arts, errors = shipped_artifacts()
    for e in errors:
        _problem(context, f"shipped model: {e}")
    if not arts:
        if not errors and not _logged_no_models:
            _logged_no_models = True
            log.info("ocad ml plugin: no shipped models in %s; the residual and multivariate detectors are "
                     "off (build them with ocad-train, or use Monitor.from_model_dir)", models_dir())
        return []
    return build_detectors(arts, context)


@hookimpl
def ocad_artifact_detectors(artifacts: Sequence[ModelArtifact], context: DetectorContext) -> Iterable[Detector]:
    """The ML detectors on trained artifacts (``Monitor.from_model_dir``)."""
    last_errors.clear()
    return build_detectors(artifacts, context, require_metrics=False)
