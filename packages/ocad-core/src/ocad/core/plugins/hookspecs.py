"""The plugin contract: every hook a plugin may implement.

OCAD uses `pluggy <https://pluggy.readthedocs.io>`_ with the project name and the
entry-point group ``ocad``. A plugin is any module or object with functions
decorated by :data:`hookimpl`; ship it by declaring an entry point::

    # pyproject.toml of your package
    [project.entry-points.ocad]
    my_plugin = "my_package.ocad_plugin"

Installing the package is all it takes: ``Monitor.from_defaults()`` and
``ocad plugins`` see it. The built-in detectors and metrics are registered through
these same hooks (``ocad.core.plugins._builtins``), so a plugin has exactly the powers a
built-in has.

Isolation: each entry point is loaded in its own ``try``; each hook
implementation is called on its own. A plugin that fails to import, or raises in
a hook, is recorded (``ocad plugins`` lists it with the error) and skipped; the
others go on. Set ``OCAD_DISABLE_PLUGINS=name1,name2`` to skip some entry points,
or ``OCAD_PLUGINS_AUTOLOAD=0`` to load none (the built-ins still load).
"""

from __future__ import annotations

import argparse
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from .._metrics import MetricSpec
    from ._protocols import Detector, ModelArtifact
    from ._registry import DetectorContext

__all__ = ["PROJECT", "hookimpl", "hookspec"]

PROJECT = "ocad"

#: Marker for hook specifications (used by OCAD itself).
hookspec = pluggy.HookspecMarker(PROJECT)
#: Marker for hook implementations: decorate your plugin's functions with it.
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def ocad_metrics() -> Iterable[MetricSpec]:
    """Return the metrics this plugin defines.

    Called once when a registry is built. Each item is a
    :class:`ocad.core.MetricSpec` (name, unit, kind, valid range, direction).
    Registering a name twice with an identical spec is harmless; with a different
    spec it is a conflict, reported as a failure of the later plugin.

    Example::

        @hookimpl
        def ocad_metrics():
            return [MetricSpec("bfd_session_flaps", unit="1", kind="count", low=0)]

    Users can also add metrics without a plugin, in config::

        [metrics.my_kpi]
        unit = "ms"
        low = 0
    """


@hookspec
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    """Return the detectors this plugin contributes to a Monitor.

    Parameters
    ----------
    context:
        A :class:`ocad.core.DetectorContext`: ``context.metrics`` (the
        :class:`~ocad.core.MetricRegistry` of the Monitor's metrics),
        ``context.window`` (the Monitor's window length),
        ``context.options(name)`` (the ``[detectors.<name>]`` config table as a
        dict, empty if absent), ``context.use_shipped_models`` (False when the
        user asked for core detectors only).

    Each returned object must satisfy the :class:`ocad.core.Detector` protocol
    (``name``, ``kind``, ``metrics``, ``window``, ``score(view)``) and pass
    :func:`ocad.core.testing.check_detector`. Return nothing (or ``[]``) when the
    detector does not apply, e.g. none of its metrics is configured. A detector
    disabled in config (``enabled = false``) is dropped by the Monitor; the
    plugin need not check.

    Raising here is reported as a plugin failure; the Monitor starts without
    this plugin's detectors (or refuses to start with ``strict=True``). The one
    exception is :class:`ocad.core.OcadConfigError`: raise it for bad options in
    ``context.options(name)`` and the Monitor refuses to start with your message,
    because a misconfigured detector silently missing is worse than no start.
    """


@hookspec
def ocad_artifact_detectors(
    artifacts: Sequence[ModelArtifact], context: DetectorContext
) -> Iterable[Detector]:
    """Build detectors from trained model artifacts.

    Called by ``Monitor.from_model_dir(path)`` with every verified artifact found
    there (each a :class:`ocad.core.ModelArtifact`: ``path``, ``manifest`` and
    ``file(role)``). Return a detector for each artifact whose
    ``manifest["kind"]`` this plugin understands; ignore the others. Verification
    of hashes and paths has already happened; loading the model file (e.g. an
    ONNX session) is the plugin's job and must run no code from the artifact.

    One unusable artifact must not cost the plugin its other detectors: skip it
    and append a message to ``context.artifact_errors`` (shown in
    ``Monitor.health()["artifact_errors"]``), unless ``context.strict`` is true,
    in which case raise (the Monitor then refuses to start).
    """


@hookspec
def ocad_cli_commands(subparsers: argparse._SubParsersAction) -> None:
    """Add subcommands to the ``ocad`` command line.

    ``subparsers`` is the ``argparse`` sub-parser collection of ``ocad``. Add a
    parser and set its handler with ``parser.set_defaults(func=handler)``;
    ``handler(args)`` returns the process exit code. This is how ``ocad-train``
    adds ``ocad train`` and ``ocad models`` without ``ocad-core`` depending on it.

    Example::

        @hookimpl
        def ocad_cli_commands(subparsers):
            p = subparsers.add_parser("hello", help="say hello")
            p.set_defaults(func=lambda args: print("hello") or 0)
    """
