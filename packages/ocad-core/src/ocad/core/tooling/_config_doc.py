"""docs/config.md, generated from the configuration classes so that the page cannot drift.

    python -m ocad.core.tooling._config_doc > docs/config.md

``packages/ocad-core/tests/test_config_doc.py`` fails when the committed page differs from
:func:`render`. Tables and keys come from the code: every field of
:class:`~ocad.core.MonitorConfig` whose value is an attrs class (``[alerts]`` and any table added
the same way) is a table of its own with that class's fields and defaults; the scalar fields are
``[monitor]``; ``[metrics.NAME]`` is :class:`~ocad.core.MetricSpec`; ``[onnxruntime]`` is the ML
plugin's ``SessionConfig``. Descriptions are kept here, by key; a key without one still appears,
with its type and default.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from typing import Any

import attrs

__all__ = ["render"]

# (table, key) -> description. A key missing here is still listed (type and default from the code).
_DESCRIPTIONS: dict[tuple[str, str], str] = {
    ("monitor", "window"): "samples per endpoint window (the Monitor keeps at least what its detectors need)",
    ("monitor", "capacity"): "endpoints held at once; beyond it the least recently seen is evicted",
    ("monitor", "idle_timeout_s"): "evict an endpoint silent this long (sample time; the fleet's median clock)",
    ("monitor", "clock_reset_s"): "a timestamp this far back restarts the endpoint's window instead of being dropped",
    ("monitor", "time_budget_s"): "per detector per tick; a detector over budget is skipped for that tick",
    ("monitor", "max_consecutive_failures"): "a detector failing this many ticks in a row is disabled",
    ("monitor", "warmup_samples"): "samples before an endpoint may alert (unset: window // 2)",
    ("monitor", "use_shipped_models"): "load the ML plugin's shipped models (ocad-detectors-ml)",
    ("monitor", "metrics"): "only these metrics (names of registered metrics); unset: all",
    ("monitor", "calibration"): "calibration JSON (ocad calibrate) instead of the shipped one",
    ("metrics", "unit"): "unit, for display",
    ("metrics", "kind"): "gauge, count (integers) or boolean (0/1)",
    ("metrics", "low"): "smallest valid value; below it a value is rejected (out_of_range)",
    ("metrics", "high"): "largest valid value",
    ("metrics", "higher_is_worse"): "which direction one-sided detectors treat as a fault",
    ("metrics", "description"): "free text",
    ("detectors", "enabled"): "false: the detector is not built",
    ("detectors", "weight"): "its weight in the composite score (default: the tuned weight below, else 1)",
    ("detectors.rule", "thresholds"): "per metric, a table of limits (keys: {keys}): the rule fires beyond them; "
                                      "`max`/`min` on the value, `fail_run`/`nonzero_run` on runs of failures",
    ("detectors.rule", "window"): "samples the rule looks back for persistence",
    ("alerts", "open_threshold"): "composite score at which an alert opens (with enough kinds of evidence)",
    ("alerts", "evidence_threshold"): "a detector score this high counts as evidence of its kind",
    ("alerts", "min_kinds"): "kinds of evidence (rule, spike, ...) an alert needs to open",
    ("alerts", "confirm_samples"): "consecutive samples over the threshold before an alert opens",
    ("alerts", "hold_down_s"): "an alert resolves after this long below the threshold",
    ("alerts", "critical_threshold"): "composite score that makes an alert critical",
    ("alerts", "critical_clear"): "a critical alert drops back to major below this (hysteresis)",
    ("alerts", "critical_kinds"): "kinds of evidence that also make an alert critical",
    ("alerts", "update_delta"): "an open alert emits an update when its score moved this much",
    ("alerts", "update_min_interval_s"): "at most one update per alert per this many seconds",
    ("alerts", "evidence_report_threshold"): "detector scores from this level are listed as evidence",
    ("onnxruntime", "intra_op_num_threads"): "threads inside one model run (1: measured best on a shared host)",
    ("onnxruntime", "inter_op_num_threads"): "threads across graph nodes",
    ("onnxruntime", "providers"): "execution providers, in order",
    ("onnxruntime", "graph_optimization_level"): "disable, basic, extended or all",
    ("onnxruntime", "allow_spinning"): "idle pool threads busy-wait (costs CPU, see ocad-detectors-ml README)",
}
# MonitorConfig fields that are not [monitor] keys, and the table each one is.
_MAPPING_TABLES = {"user_metrics": "metrics", "detectors": "detectors", "onnxruntime": "onnxruntime"}


def _toml(v: Any) -> str:
    if v is None:
        return "*(unset)*"
    if isinstance(v, bool):
        return f"`{str(v).lower()}`"
    if isinstance(v, enum.Enum):
        return f'`"{v.value}"`'
    if isinstance(v, float) and math.isinf(v):
        return "`-inf`" if v < 0 else "`inf`"
    if isinstance(v, str):
        return f'`"{v}"`'
    if isinstance(v, (list, tuple)):
        return "`[" + ", ".join(_toml(x).strip("`") for x in v) + "]`"
    if isinstance(v, Mapping):
        return "`{ " + ", ".join(f"{k} = {_toml(x).strip('`')}" for k, x in v.items()) + " }`"
    return f"`{v}`"


def _type(f: attrs.Attribute) -> str:  # type: ignore[type-arg]
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return str(t).replace("|", "or").replace("tuple[str, ...]", "list of strings") \
        .replace("Mapping[str, Any]", "table")


def _default(f: attrs.Attribute) -> Any:  # type: ignore[type-arg]
    d = f.default
    if isinstance(d, attrs.Factory):  # type: ignore[arg-type]
        return d.factory(None) if d.takes_self else d.factory()  # type: ignore[call-arg]
    return d


def _rows(table: str, fields: Any, skip: tuple[str, ...] = ()) -> list[str]:
    out = ["| key | type | default | meaning |", "|---|---|---|---|"]
    for f in fields:
        if f.name in skip:
            continue
        desc = _DESCRIPTIONS.get((table.split(".")[0] if table.startswith("metrics") else table, f.name), "")
        out.append(f"| `{f.name}` | {_type(f)} | {_toml(_default(f))} | {desc} |")
    return out


def render() -> str:
    """The Markdown of docs/config.md."""
    from .._config import _MONITOR_KEYS, _TOP_KEYS, MonitorConfig
    from .._metrics import MetricSpec
    from .._monitor import DEFAULT_WEIGHTS
    from ..detectors._rules import _KEYS, DEFAULT_THRESHOLDS

    cfg_fields = attrs.fields(MonitorConfig)
    tables = [f for f in cfg_fields if attrs.has(type(_default(f)))]
    scalar = [f for f in cfg_fields if f.name in _MONITOR_KEYS]
    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated by `python -m ocad.core.tooling._config_doc > docs/config.md` from the",
        "     configuration classes; packages/ocad-core/tests/test_config_doc.py fails when it is stale. -->",
        "",
        "A Monitor is configured with a TOML file (`Monitor(\"ocad.toml\")`, `ocad ... --config ocad.toml`)",
        "or the same structure as a mapping. Every key is optional; an unknown table or key is an",
        "error that names it (exit code 2 on the command line), except `[detectors.NAME]` for a",
        "detector that is not running, which logs a warning naming the known detectors.",
        "",
        "Top-level tables: " + ", ".join(f"`[{t}]`" for t in sorted(_TOP_KEYS)) + ".",
        "",
        "## `[monitor]`",
        "",
        *_rows("monitor", scalar),
        "",
        "## `[metrics.NAME]`: a metric of your own",
        "",
        "Any name (letters, digits, `_`); the table's keys are `MetricSpec`'s (see docs/plugins.md).",
        "",
        *_rows("metrics", attrs.fields(MetricSpec), skip=("name",)),
        "",
        "## `[detectors.NAME]`",
        "",
        "For every detector (`ocad plugins` lists them):",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        f"| `enabled` | bool | {_toml(True)} | {_DESCRIPTIONS[('detectors', 'enabled')]} |",
        f"| `weight` | float | see below | {_DESCRIPTIONS[('detectors', 'weight')]} |",
        "",
        "Default weights: " + ", ".join(f"`{k}` {v:g}" for k, v in DEFAULT_WEIGHTS.items()) + ".",
        "",
        "`[detectors.rule]` also takes:",
        "",
        "| key | type | default | meaning |",
        "|---|---|---|---|",
        "| `thresholds` | table per metric | see below | "
        + _DESCRIPTIONS[("detectors.rule", "thresholds")].format(keys=", ".join(f"`{k}`" for k in sorted(_KEYS)))
        + " |",
        f"| `window` | int | `8` | {_DESCRIPTIONS[('detectors.rule', 'window')]} |",
        "",
        "Default thresholds: " + "; ".join(f"`{m}` {_toml(r).strip('`')}" for m, r in DEFAULT_THRESHOLDS.items())
        + ".",
        "",
    ]
    for f in tables:
        cls = type(_default(f))
        lines += [f"## `[{f.name}]`", "", *_rows(f.name, attrs.fields(cls)), ""]
    try:
        from ocad.detectors_ml._session import SessionConfig
    except ImportError:  # pragma: no cover - the page is generated with the ML package installed
        SessionConfig = None  # noqa: N806
    lines += ["## `[onnxruntime]` (ocad-detectors-ml)", ""]
    if SessionConfig is not None:
        lines += [*_rows("onnxruntime", attrs.fields(SessionConfig)), ""]
    undocumented = [f.name for f in cfg_fields
                    if f.name not in _MONITOR_KEYS and f.name not in _MAPPING_TABLES and f not in tables]
    if undocumented:  # a new kind of field: listed so that the page is never silently incomplete
        lines += ["## Other tables", "", *(f"- `[{n}]`" for n in undocumented), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":  # pragma: no cover
    import sys

    sys.stdout.write(render())
