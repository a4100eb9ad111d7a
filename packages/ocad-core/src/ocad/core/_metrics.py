"""Metrics are names: a registry of metric specifications.

The O-RAN fronthaul CFM set is built in (registered by the built-in plugin through
the same ``ocad_metrics`` hook a third party uses); users add any KPI by hook or
config. An endpoint's *capabilities* are the metrics it reports: a metric it never
reports is "not supported", never zero.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import attrs

from ._errors import OcadConfigError

__all__ = ["ORAN_METRICS", "MetricKind", "MetricRegistry", "MetricSpec"]

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.\-]{0,127}$")
# Record keys that are never metrics.
RESERVED = frozenset({"endpoint_id", "ts"})


class MetricKind(str, enum.Enum):
    """How a metric's values behave; the feature engine and rules depend on it."""

    GAUGE = "gauge"  # a real-valued measurement (RTT, delay)
    BOOLEAN = "boolean"  # 1 = success / up, 0 = failure / down
    COUNT = "count"  # a non-negative integer count per interval (misses, drops)


def _check_name(inst: Any, attr: Any, value: str) -> None:
    if not isinstance(value, str) or not _NAME.match(value) or value in RESERVED:
        raise OcadConfigError(
            f"metric name {value!r} is invalid: use letters, digits, '_', '.', '-' "
            f"(start with a letter or '_'), not {sorted(RESERVED)}"
        )


@attrs.frozen
class MetricSpec:
    """One metric: its name, unit, kind and valid range.

    Values outside ``[low, high]`` are rejected (counted as ``out_of_range``);
    ``higher_is_worse`` tells detectors which direction is a fault: True (a rise, e.g.
    a delay), False (a drop, e.g. a success rate or throughput) or None (not declared:
    both directions are judged; the default for a user metric).

    >>> MetricSpec("my_kpi", unit="ms", low=0.0).kind
    <MetricKind.GAUGE: 'gauge'>
    """

    name: str = attrs.field(validator=_check_name)
    unit: str = ""
    kind: MetricKind = attrs.field(default=MetricKind.GAUGE, converter=MetricKind)
    low: float = attrs.field(default=-math.inf, converter=float)
    high: float = attrs.field(default=math.inf, converter=float)
    higher_is_worse: bool | None = attrs.field(default=None)
    description: str = ""

    def __attrs_post_init__(self) -> None:
        if not self.low < self.high:
            raise OcadConfigError(f"metric {self.name!r}: low={self.low} must be < high={self.high}")

    @classmethod
    def from_mapping(cls, name: str, data: Mapping[str, Any]) -> MetricSpec:
        """Build a spec from config (``[metrics.<name>]`` table)."""
        allowed = {f.name for f in attrs.fields(cls)} - {"name"}
        unknown = set(data) - allowed
        if unknown:
            raise OcadConfigError(
                f"metrics.{name}: unknown key(s) {sorted(unknown)}; allowed: {sorted(allowed)}"
            )
        try:
            return cls(name=name, **dict(data))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, OcadConfigError):
                raise
            raise OcadConfigError(f"metrics.{name}: {exc}") from exc

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["kind"] = self.kind.value
        return d


ORAN_METRICS: tuple[MetricSpec, ...] = (
    MetricSpec(
        "udp_echo_rtt_ms", unit="ms", low=0.0, high=60_000.0, higher_is_worse=True,
        description="UDP echo round-trip time between O-DU and O-RU / transport endpoint.",
    ),
    MetricSpec(
        "ecpri_delay_us", unit="us", low=0.0, high=10_000_000.0, higher_is_worse=True,
        description="eCPRI one-way delay measurement (message type 5).",
    ),
    MetricSpec(
        "lbm_rtt_ms", unit="ms", low=0.0, high=60_000.0, higher_is_worse=True,
        description="Ethernet CFM loopback (LBM/LBR) round-trip time.",
    ),
    MetricSpec(
        "lbm_success", unit="1", kind=MetricKind.BOOLEAN, low=0.0, high=1.0, higher_is_worse=False,
        description="1 when the CFM loopback got its reply, 0 when it did not.",
    ),
    MetricSpec(
        "ccm_miss_count", unit="1", kind=MetricKind.COUNT, low=0.0, high=1_000_000.0, higher_is_worse=True,
        description="CFM continuity-check messages missed in the interval.",
    ),
)


class MetricRegistry:
    """The metrics a process knows, by name. Order of registration is kept.

    >>> reg = MetricRegistry(ORAN_METRICS)
    >>> "lbm_success" in reg
    True
    """

    def __init__(self, specs: Iterable[MetricSpec] = ()) -> None:
        self._specs: dict[str, MetricSpec] = {}
        for spec in specs:
            self.add(spec)

    def add(self, spec: MetricSpec) -> None:
        """Register ``spec``; re-registering an identical spec is a no-op, a different one an error."""
        old = self._specs.get(spec.name)
        if old is not None and old != spec:
            raise OcadConfigError(
                f"metric {spec.name!r} is already registered with a different spec: {old} vs {spec}"
            )
        self._specs[spec.name] = spec

    def get(self, name: str) -> MetricSpec:
        try:
            return self._specs[name]
        except KeyError:
            raise OcadConfigError(
                f"unknown metric {name!r}; registered: {sorted(self._specs)}. "
                "Register it through the ocad_metrics hook or a [metrics.<name>] config table."
            ) from None

    def names(self) -> tuple[str, ...]:
        return tuple(self._specs)

    def subset(self, names: Iterable[str]) -> MetricRegistry:
        return MetricRegistry(self.get(n) for n in names)

    def __contains__(self, name: object) -> bool:
        return name in self._specs

    def __iter__(self) -> Iterator[MetricSpec]:
        return iter(self._specs.values())

    def __len__(self) -> int:
        return len(self._specs)

    def __repr__(self) -> str:
        return f"MetricRegistry({list(self._specs)})"
