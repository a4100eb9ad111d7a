"""The built-in plugin: O-RAN metrics and the core detectors, through the public hooks.

It is registered like any third-party plugin would be (see ``hookspecs``), so the
built-ins have no powers a plugin lacks.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from ._metrics import ORAN_METRICS, MetricKind, MetricSpec
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._protocols import Detector
    from ._registry import DetectorContext


@hookimpl
def ocad_metrics() -> Iterable[MetricSpec]:
    return ORAN_METRICS


@hookimpl
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    from ._rules import RuleDetector
    from ._statistical import ConcurrencyDetector, ContinuityDetector, SpikeDetector

    m = context.metrics
    win = context.window
    out: list[Detector] = [RuleDetector.from_options(m, context.options("rule"))]
    kinds = {s.kind for s in m}
    if MetricKind.GAUGE in kinds:
        out.append(SpikeDetector.from_registry(m, window=win, **context.options("spike")))
        from ._changepoint import ChangepointDetector

        out.append(ChangepointDetector.from_specs(m, **{"window": win, **context.options("changepoint")}))
    if kinds & {MetricKind.BOOLEAN, MetricKind.COUNT}:
        out.append(ContinuityDetector.from_registry(m, window=win, **context.options("continuity")))
    if len(m) > 1:
        out.append(ConcurrencyDetector(window=win, **context.options("concurrency")))
    return out
