"""The plugin module named by the entry point ``example = "ocad_plugin_example.plugin"``.

Each function is a hook implementation (see ``ocad.core.plugins.hookspecs`` for every
hook and its documentation). OCAD calls them when a registry is built, e.g. by
``Monitor.from_defaults()`` or ``ocad plugins``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ocad.core.plugins import hookimpl

from .detector import PTP_OFFSET, PtpOffsetDetector

if TYPE_CHECKING:
    from ocad.core import MetricSpec
    from ocad.core.plugins import Detector, DetectorContext


@hookimpl
def ocad_metrics() -> Iterable[MetricSpec]:
    """Register the metric, so records may carry ``ptp_offset_ns`` and features are computed for it."""
    return [PTP_OFFSET]


@hookimpl
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    """The PTP detector, when the Monitor watches the metric (``[monitor] metrics`` may leave it out)."""
    if PTP_OFFSET.name not in context.metrics:
        return []
    return [PtpOffsetDetector.from_options(context.options("ptp"))]
