"""The built-in plugin: O-RAN metrics and the core detectors, registered through the public hooks."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._metrics import ORAN_METRICS, MetricSpec
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._protocols import Detector
    from ._registry import DetectorContext


@hookimpl
def ocad_metrics() -> Iterable[MetricSpec]:
    return ORAN_METRICS


@hookimpl
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    return []
