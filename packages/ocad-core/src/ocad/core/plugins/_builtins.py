"""The built-in plugin: O-RAN metrics and the core detectors, through the public hooks.

It is registered like any third-party plugin would be (see ``hookspecs``), so the
built-ins have no powers a plugin lacks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from .._errors import OcadConfigError
from .._metrics import ORAN_METRICS, MetricKind, MetricSpec
from .hookspecs import hookimpl

if TYPE_CHECKING:
    from ._protocols import Detector
    from ._registry import DetectorContext


@hookimpl
def ocad_metrics() -> Iterable[MetricSpec]:
    return ORAN_METRICS


@hookimpl
def ocad_detectors(context: DetectorContext) -> Iterable[Detector]:
    from ..detectors._rules import RuleDetector
    from ..detectors._statistical import ConcurrencyDetector, ContinuityDetector, SpikeDetector

    m = context.metrics
    out: list[Detector] = [RuleDetector.from_options(m, context.options("rule"))]
    kinds = {s.kind for s in m}
    if MetricKind.GAUGE in kinds:
        from ..detectors._level import LevelDetector, RecurrenceDetector

        out.append(_build("spike", context, SpikeDetector.from_registry, m))
        out.append(_build("level", context, LevelDetector.from_registry, m))
        out.append(_build("recurrence", context, RecurrenceDetector.from_registry, m))
        from ..detectors._changepoint import ChangepointDetector

        out.append(_build("changepoint", context, ChangepointDetector.from_specs, m))
    if kinds & {MetricKind.BOOLEAN, MetricKind.COUNT}:
        out.append(_build("continuity", context, ContinuityDetector.from_registry, m))
    if len(m) > 1:
        out.append(_build("concurrency", context, ConcurrencyDetector))
    return out


def _build(name: str, context: DetectorContext, factory: Callable[..., Any], *args: Any) -> Any:
    """``factory(*args, window=..., **[detectors.<name>])``: the table may override the window;
    an option the detector does not take is the user's config error, named as such."""
    options = context.options(name)
    try:
        return factory(*args, **{"window": context.window, **options})
    except TypeError as exc:
        raise OcadConfigError(f"detectors.{name}: bad option(s) in {options!r}: {exc}") from exc
