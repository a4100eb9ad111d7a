"""Monitor configuration from a dict or a TOML file; every bad key or value is named.

Example TOML::

    [monitor]
    window = 32              # samples per endpoint window
    capacity = 100000        # endpoints held at once (LRU eviction beyond)
    idle_timeout_s = 3600    # evict endpoints silent this long (sample time)
    warmup_samples = 16      # samples before an endpoint may alert (default: window // 2)
    warmup_s = 1800          # ... and this much sample time (its baselines learn meanwhile; default
                             # 1800, or 0 when warmup_samples is set explicitly)
    warmup_max_samples = 360 # ... or this many samples, whichever comes first with warmup_samples
    clock_reset_s = 300      # a timestamp this far back restarts the endpoint's window
    time_budget_s = 0.5      # per detector per tick; over-budget detectors are skipped
    use_shipped_models = true

    [metrics.my_kpi]         # a user metric: any name
    unit = "ms"
    low = 0

    [detectors.rule]
    weight = 1.0
    thresholds = { udp_echo_rtt_ms = { max = 25.0 } }

    [detectors.multivariate]
    enabled = false

    [alerts]
    open_threshold = 0.5     # surprise: -log10(p) / 10

    [baselines]              # long-horizon per-endpoint baselines (ocad.core._baseline)
    level_half_life_s = 3600

    [selfcal]                # per-endpoint re-calibration of every detector (ocad.core._selfcal)
    half_life_s = 259200

    [onnxruntime]
    intra_op_num_threads = 1
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from .pipeline._alerts import AlertPolicyConfig
from .pipeline._baseline import BaselineConfig
from ._errors import OcadConfigError
from .pipeline._selfcal import SelfCalibrationConfig

__all__ = ["MonitorConfig"]

_MONITOR_KEYS = {
    "window", "capacity", "idle_timeout_s", "clock_reset_s", "time_budget_s", "use_shipped_models",
    "metrics", "calibration", "max_consecutive_failures", "warmup_samples", "warmup_s", "warmup_max_samples",
}
_TOP_KEYS = {"monitor", "metrics", "detectors", "alerts", "onnxruntime", "baselines", "selfcal"}


def _pos_int(name: str, v: Any) -> int:
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise OcadConfigError(f"monitor.{name} = {v!r}: must be an integer >= 1")
    return v


def _opt_pos_float(name: str, v: Any) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0:
        raise OcadConfigError(f"monitor.{name} = {v!r}: must be a number > 0")
    return float(v)


@attrs.frozen
class MonitorConfig:
    """Everything a :class:`~ocad.core.Monitor` is configured with."""

    window: int = 32
    capacity: int = 100_000
    idle_timeout_s: float | None = 3600.0
    clock_reset_s: float = 300.0
    time_budget_s: float | None = None
    max_consecutive_failures: int = 3
    warmup_samples: int | None = None
    #: Sample time of the warm-up; None: 1800 s, unless ``warmup_samples`` is set (then that count alone).
    warmup_s: float | None = None
    warmup_max_samples: int = 360
    use_shipped_models: bool = True
    metrics: tuple[str, ...] | None = None
    calibration: str | None = None
    user_metrics: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    detectors: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)
    alerts: AlertPolicyConfig = attrs.field(factory=AlertPolicyConfig)
    baselines: BaselineConfig = attrs.field(factory=BaselineConfig)
    selfcal: SelfCalibrationConfig = attrs.field(factory=SelfCalibrationConfig)
    onnxruntime: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def coerce(cls, cfg: MonitorConfig | Mapping[str, Any] | str | os.PathLike[str] | None) -> MonitorConfig:
        if cfg is None:
            return cls()
        if isinstance(cfg, MonitorConfig):
            return cfg
        if isinstance(cfg, (str, os.PathLike)):
            return cls.from_toml(cfg)
        if isinstance(cfg, Mapping):
            return cls.from_mapping(cfg)
        raise OcadConfigError(f"config must be a MonitorConfig, a mapping or a TOML path, not {type(cfg).__name__}")

    @classmethod
    def from_toml(cls, path: str | os.PathLike[str]) -> MonitorConfig:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise OcadConfigError(f"config file {str(p)!r} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise OcadConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
        return cls.from_mapping(data)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> MonitorConfig:
        bad = set(data) - _TOP_KEYS
        if bad:
            raise OcadConfigError(f"unknown config table(s) {sorted(bad)}; allowed: {sorted(_TOP_KEYS)}")
        mon = dict(data.get("monitor", {}))
        bad = set(mon) - _MONITOR_KEYS
        if bad:
            raise OcadConfigError(f"monitor: unknown key(s) {sorted(bad)}; allowed: {sorted(_MONITOR_KEYS)}")
        kw: dict[str, Any] = {}
        if "window" in mon:
            kw["window"] = _pos_int("window", mon["window"])
        if "capacity" in mon:
            kw["capacity"] = _pos_int("capacity", mon["capacity"])
        if "max_consecutive_failures" in mon:
            kw["max_consecutive_failures"] = _pos_int("max_consecutive_failures", mon["max_consecutive_failures"])
        if "warmup_samples" in mon:
            kw["warmup_samples"] = _pos_int("warmup_samples", mon["warmup_samples"])
        if "warmup_max_samples" in mon:
            kw["warmup_max_samples"] = _pos_int("warmup_max_samples", mon["warmup_max_samples"])
        if "warmup_s" in mon:
            v = mon["warmup_s"]
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v >= 0:
                raise OcadConfigError(f"monitor.warmup_s = {v!r}: must be a number >= 0")
            kw["warmup_s"] = float(v)
        if "idle_timeout_s" in mon:
            kw["idle_timeout_s"] = _opt_pos_float("idle_timeout_s", mon["idle_timeout_s"])
        if "clock_reset_s" in mon:
            kw["clock_reset_s"] = _opt_pos_float("clock_reset_s", mon["clock_reset_s"])
        if "time_budget_s" in mon:
            kw["time_budget_s"] = _opt_pos_float("time_budget_s", mon["time_budget_s"])
        if "use_shipped_models" in mon:
            v = mon["use_shipped_models"]
            if not isinstance(v, bool):
                raise OcadConfigError(f"monitor.use_shipped_models = {v!r}: must be true or false")
            kw["use_shipped_models"] = v
        if "metrics" in mon:
            ms = mon["metrics"]
            if not isinstance(ms, (list, tuple)) or not all(isinstance(m, str) for m in ms) or not ms:
                raise OcadConfigError(f"monitor.metrics = {ms!r}: must be a non-empty list of metric names")
            kw["metrics"] = tuple(ms)
        if "calibration" in mon:
            kw["calibration"] = str(mon["calibration"])
        um = data.get("metrics", {})
        if not isinstance(um, Mapping) or not all(isinstance(v, Mapping) for v in um.values()):
            raise OcadConfigError("metrics: expected tables like [metrics.my_kpi]")
        kw["user_metrics"] = {k: dict(v) for k, v in um.items()}
        dets = data.get("detectors", {})
        if not isinstance(dets, Mapping) or not all(isinstance(v, Mapping) for v in dets.values()):
            raise OcadConfigError("detectors: expected tables like [detectors.rule]")
        for name, d in dets.items():
            if "enabled" in d and not isinstance(d["enabled"], bool):
                raise OcadConfigError(f"detectors.{name}.enabled = {d['enabled']!r}: must be true or false")
            if "weight" in d:
                w = d["weight"]
                if isinstance(w, bool) or not isinstance(w, (int, float)) or w < 0:
                    raise OcadConfigError(f"detectors.{name}.weight = {w!r}: must be a number >= 0")
        kw["detectors"] = {k: dict(v) for k, v in dets.items()}
        kw["alerts"] = AlertPolicyConfig.from_mapping(data.get("alerts", {}))
        for key, cls_ in (("baselines", BaselineConfig), ("selfcal", SelfCalibrationConfig)):
            table = data.get(key, {})
            if not isinstance(table, Mapping):
                raise OcadConfigError(f"{key}: expected a table")
            kw[key] = cls_.from_mapping(table)
        ort = data.get("onnxruntime", {})
        if not isinstance(ort, Mapping):
            raise OcadConfigError("onnxruntime: expected a table")
        kw["onnxruntime"] = dict(ort)
        return cls(**kw)

    def enabled(self, name: str) -> bool:
        return bool(self.detectors.get(name, {}).get("enabled", True))

    def weights(self) -> dict[str, float]:
        return {n: float(d["weight"]) for n, d in self.detectors.items() if "weight" in d}
