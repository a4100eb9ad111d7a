"""Compatibility module: the hook specifications live in :mod:`ocad.core.plugins.hookspecs`.

Third-party plugins import ``from ocad.core.hookspecs import hookimpl``; that keeps
working. New code imports ``from ocad.core.plugins import hookimpl``. The registry
registers the specifications from :mod:`ocad.core.plugins.hookspecs`.
"""

from __future__ import annotations

from .plugins.hookspecs import (  # noqa: F401  (the hook specs, for add_hookspecs)
    PROJECT,
    hookimpl,
    hookspec,
    ocad_artifact_detectors,
    ocad_cli_commands,
    ocad_detectors,
    ocad_metrics,
)

__all__ = ["PROJECT", "hookimpl", "hookspec"]
