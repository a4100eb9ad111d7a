"""Training configuration: one TOML file, every key checked.

Layout (every table and key optional; ``packages/ocad-train/configs/default.toml``
is the configuration of the shipped default models)::

    [train]
    metrics = ["udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms"]
    seed = 7                    # training seed (initialisation, shuffling, subsampling)
    version = "1.0.0"           # optional: artifact version (default: next in the store)
    core_calibration = true     # calibrate the core detectors on the data (artifact core-calibration)

    [data]                      # either a file ...
    file = "fleet.csv"          # CSV / Parquet, wide or long (see ocad.train.load_table)
    simulate = false            # ... or a synthetic fleet (ocad.core's generator)
    endpoints = 60
    hours = 6.0
    interval_s = 5.0
    seed = 0
    faults = true

    [forecaster]                # TCN per metric; see ocad.train.ForecasterConfig
    window = 32
    epochs = 8
    ...

    [multivariate]              # Isolation Forest (ocad.train._iforest); free-form options
    enabled = "auto"            # "auto"/true: when the data has >= 2 metrics and enough rows; false: never

    [tune]                      # Optuna (extra "tune"); trials = 0 disables
    trials = 0
    epochs = 3

    [mlflow]                    # MLflow tracking (extra "mlflow")
    enabled = false
    tracking_uri = ""
    experiment = "ocad"

    [metrics.my_kpi]            # specs of user metrics (as in ocad-core's config)
    unit = "ms"
    higher_is_worse = true

Unknown keys raise :class:`ocad.core.OcadConfigError` naming the key.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import attrs

from ocad.core import MetricSpec, OcadConfigError

__all__ = ["DataConfig", "ForecasterConfig", "TrainConfig", "load_config", "resolve_metric_specs"]


def _check(section: str, cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    allowed = {f.name for f in attrs.fields(cls)}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise OcadConfigError(f"[{section}]: unknown key(s) {unknown}; allowed: {sorted(allowed)}")
    return dict(data)


def _build(section: str, cls: type, data: Mapping[str, Any] | None) -> Any:
    d = _check(section, cls, data or {})
    try:
        return cls(**d)
    except (TypeError, ValueError) as exc:
        if isinstance(exc, OcadConfigError):
            raise
        raise OcadConfigError(f"[{section}]: {exc}") from exc


@attrs.frozen(kw_only=True)
class DataConfig:
    """Where the training data comes from: a file or the synthetic fleet generator."""

    file: str | None = None
    simulate: bool = False
    endpoints: int = 60
    hours: float = 6.0
    interval_s: float = 5.0
    seed: int = 0
    faults: bool = True

    def __attrs_post_init__(self) -> None:
        if self.file and self.simulate:
            raise OcadConfigError("[data]: give either file or simulate = true, not both")
        if self.endpoints < 1 or self.hours <= 0 or self.interval_s <= 0:
            raise OcadConfigError(
                f"[data]: endpoints ({self.endpoints}), hours ({self.hours}) and interval_s "
                f"({self.interval_s}) must be positive")


@attrs.frozen(kw_only=True)
class ForecasterConfig:
    """Everything the per-metric forecaster pipeline needs (datasets, model, training, export).

    ``threads = 2`` per training process by default; on a shared machine 1 thread
    is often faster (OpenMP threads spin when cores are oversubscribed). The
    thread count is part of the recorded hyperparameters because gradient
    reductions, hence bit-exact weights, can depend on it.
    """

    # datasets
    window: int = 32
    fractions: tuple[float, float, float] = attrs.field(default=(0.6, 0.2, 0.2), converter=tuple)
    gap: int | None = None
    fill_limit: int = 2
    max_train_windows: int | None = 40_000
    max_eval_windows: int | None = 20_000
    # model
    hidden: int = 24
    levels: int = 4
    kernel_size: int = 3
    # training
    lr: float = 2e-3
    weight_decay: float = 0.0
    batch_size: int = 256
    epochs: int = 8
    patience: int = 3
    min_delta: float = 1e-4
    grad_clip: float = 1.0
    threads: int = 2
    # export
    parity_n: int = 10_000
    parity_tol: float = 1e-4
    save_datasets: bool = True

    def tcn(self, seed: int) -> Any:
        from ._tcn import TCNConfig

        return TCNConfig(window=self.window, hidden=self.hidden, levels=self.levels,
                         kernel_size=self.kernel_size, lr=self.lr, weight_decay=self.weight_decay,
                         batch_size=self.batch_size, epochs=self.epochs, patience=self.patience,
                         min_delta=self.min_delta, grad_clip=self.grad_clip, seed=seed, threads=self.threads)

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["fractions"] = list(self.fractions)
        return d


@attrs.frozen(kw_only=True)
class TrainConfig:
    """A whole training run: which metrics, which data, forecaster, multivariate, tuning, tracking."""

    metrics: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    seed: int = 0
    version: str | None = None
    core_calibration: bool = True
    data: DataConfig = attrs.field(factory=DataConfig)
    forecaster: ForecasterConfig = attrs.field(factory=ForecasterConfig)
    multivariate: Mapping[str, Any] = attrs.field(factory=dict)
    tune: Mapping[str, Any] = attrs.field(factory=lambda: {"trials": 0, "epochs": 3})
    mlflow: Mapping[str, Any] = attrs.field(factory=lambda: {"enabled": False})
    metric_specs: Mapping[str, Mapping[str, Any]] = attrs.field(factory=dict)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> TrainConfig:
        known = {"train", "data", "forecaster", "multivariate", "tune", "mlflow", "metrics"}
        unknown = sorted(set(d) - known)
        if unknown:
            raise OcadConfigError(f"unknown table(s) {unknown} in training config; allowed: {sorted(known)}")
        train = dict(d.get("train", {}))
        allowed = ["core_calibration", "metrics", "seed", "version"]
        bad = sorted(set(train) - set(allowed))
        if bad:
            raise OcadConfigError(f"[train]: unknown key(s) {bad}; allowed: {allowed}")
        if not isinstance(train.get("core_calibration", True), bool):
            raise OcadConfigError(f"[train] core_calibration must be true or false, "
                                  f"not {train['core_calibration']!r}")
        metrics = train.get("metrics", [])
        if isinstance(metrics, str):
            metrics = [m.strip() for m in metrics.split(",") if m.strip()]
        tune = {"trials": 0, "epochs": 3, **dict(d.get("tune", {}))}
        bad = sorted(set(tune) - {"trials", "epochs", "timeout_s", "max_train_windows"})
        if bad:
            raise OcadConfigError(f"[tune]: unknown key(s) {bad}")
        ml = {"enabled": False, **dict(d.get("mlflow", {}))}
        bad = sorted(set(ml) - {"enabled", "tracking_uri", "experiment", "run_name"})
        if bad:
            raise OcadConfigError(f"[mlflow]: unknown key(s) {bad}")
        specs = d.get("metrics", {})
        if not isinstance(specs, Mapping):
            raise OcadConfigError("[metrics] must be tables of metric specs ([metrics.<name>]); "
                                  "put the list of metrics to train in [train] metrics = [...]")
        for name, spec in specs.items():
            MetricSpec.from_mapping(name, spec)  # validate early, with the key in the message
        return cls(metrics=metrics, seed=int(train.get("seed", 0)), version=train.get("version"),
                   core_calibration=bool(train.get("core_calibration", True)),
                   data=_build("data", DataConfig, d.get("data")),
                   forecaster=_build("forecaster", ForecasterConfig, d.get("forecaster")),
                   multivariate=dict(d.get("multivariate", {})), tune=tune, mlflow=ml,
                   metric_specs={k: dict(v) for k, v in specs.items()})

    def evolve(self, **changes: Any) -> TrainConfig:
        """A copy with top-level fields and/or ``data`` / ``forecaster`` fields changed.

        >>> TrainConfig().evolve(forecaster={"epochs": 2}).forecaster.epochs
        2
        """
        for section, cls in (("data", DataConfig), ("forecaster", ForecasterConfig)):
            if section in changes and isinstance(changes[section], Mapping):
                sub = _check(section, cls, changes[section])
                changes[section] = attrs.evolve(getattr(self, section), **sub)
        return attrs.evolve(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (the inverse of :meth:`from_mapping`)."""
        return {"train": {"metrics": list(self.metrics), "seed": self.seed,
                          "core_calibration": self.core_calibration,
                          **({"version": self.version} if self.version else {})},
                "data": attrs.asdict(self.data), "forecaster": self.forecaster.to_dict(),
                "multivariate": dict(self.multivariate), "tune": dict(self.tune), "mlflow": dict(self.mlflow),
                "metrics": {k: dict(v) for k, v in self.metric_specs.items()}}


def load_config(path: str | os.PathLike[str] | Mapping[str, Any] | TrainConfig | None) -> TrainConfig:
    """A :class:`TrainConfig` from a TOML path, a mapping, a config (returned as is) or ``None`` (defaults)."""
    if path is None:
        return TrainConfig()
    if isinstance(path, TrainConfig):
        return path
    if isinstance(path, Mapping):
        return TrainConfig.from_mapping(path)
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise OcadConfigError(f"config file {str(p)!r} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise OcadConfigError(f"config file {str(p)!r} is not valid TOML: {exc}") from exc
    return TrainConfig.from_mapping(data)


def resolve_metric_specs(metrics: Sequence[str],
                         extra: Mapping[str, Mapping[str, Any]] | None = None) -> dict[str, MetricSpec]:
    """:class:`MetricSpec` per metric: from ``[metrics.<name>]`` config, plugins, or a default gauge.

    A metric nobody declared (a column of the user's file) gets ``MetricSpec(name)``:
    unit ``""``, ``higher_is_worse = True``.
    """
    from ocad.core.plugins import ORAN_METRICS

    known: dict[str, MetricSpec] = {s.name: s for s in ORAN_METRICS}
    try:
        from ocad.core.plugins import PluginRegistry

        for spec in PluginRegistry().metrics():
            known.setdefault(spec.name, spec)
    except Exception:  # noqa: BLE001 - plugin problems are reported by `ocad plugins`, not here
        pass
    for name, data in (extra or {}).items():
        known[name] = MetricSpec.from_mapping(name, data)
    return {m: known.get(m) or MetricSpec(m) for m in metrics}
