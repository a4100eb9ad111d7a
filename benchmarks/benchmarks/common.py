"""Shared helpers of the asv suites and of ``benchmarks/compare.py``.

Nothing here imports torch or scikit-learn: the runtime measurements must run in
processes without them (``pip install "ocad-core[ml]"`` has neither).

Data: a seeded synthetic fleet without faults (``generate_fleet``) of at most
:data:`BASE_ENDPOINTS` endpoints, tiled under distinct endpoint ids up to N. The values repeat
every :data:`PERIOD` ticks; timestamps keep advancing, so every call of
:meth:`TickSource.next` is a new tick for the Monitor (a repeated timestamp would
be dropped as a duplicate and measure nothing).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import numpy as np

PERIOD = 64  # distinct ticks of values before they repeat
INTERVAL_S = 5.0
BASE_ENDPOINTS = 250  # distinct synthetic endpoints, tiled under new ids up to N
START_TS = 1_767_225_600.0


def has_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def shipped_models() -> list[str]:
    """Names of the ML artifacts shipped with ocad-detectors-ml (empty when none / not installed)."""
    if not has_module("ocad.detectors_ml"):
        return []
    from ocad.detectors_ml import models_dir

    root = models_dir()
    return sorted(p.name for p in root.iterdir() if (p / "manifest.json").is_file()) if root.is_dir() else []


def registry(ml: bool = True) -> Any:
    """The detector stack of ``pip install "ocad-core[ml]"``: built-ins plus the ``ml`` plugin.

    Explicit instead of entry-point autoload, so that other installed plugins (the
    example plugin of the test suite) do not change what is measured.
    """
    from ocad.core.plugins import PluginRegistry

    plugins = []
    if ml and has_module("ocad.detectors_ml"):
        from ocad.detectors_ml import _plugin

        plugins.append(_plugin)
    return PluginRegistry(autoload=False, plugins=plugins)


def make_monitor(ml: bool = True, **monitor: Any) -> Any:
    """A Monitor with every detector (the ML ones when their shipped models exist)."""
    from ocad.core import Monitor

    cfg = {"monitor": {"use_shipped_models": ml, **monitor}}
    return Monitor(cfg, registry=registry(ml))


class TickSource:
    """Successive ticks of ``n`` endpoints: ``(endpoint_ids, ts, {metric: values})``."""

    def __init__(self, n: int, *, seed: int = 0) -> None:
        from ocad.core.tooling import generate_fleet

        base = min(n, BASE_ENDPOINTS)
        fleet = generate_fleet(n_endpoints=base, duration_s=PERIOD * INTERVAL_S, interval_s=INTERVAL_S,
                               seed=seed, faults=False, start_ts=START_TS)
        self._reps = -(-n // base)
        self.n = n
        self.metrics = tuple(fleet.metrics)
        self.ids = np.array([f"ep{i:06d}" for i in range(n)], dtype=object)
        # (PERIOD, base, M) float32 (as generated); tiled to n endpoints per tick, so the source
        # itself holds ~0.5 MB at any N (a pre-tiled (PERIOD, 100 000, M) array was 200 MB of the
        # benchmark process's RSS)
        self._values = np.ascontiguousarray(fleet.values.transpose(1, 0, 2))
        del fleet
        self._int = [m in ("lbm_success", "ccm_miss_count") for m in self.metrics]
        self.k = 0

    def next(self) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
        k = self.k
        self.k += 1
        base = self._values[k % PERIOD]
        block = (np.tile(base, (self._reps, 1))[:self.n] if self._reps > 1 else base).astype(np.float64)
        ts = np.full(self.n, START_TS + INTERVAL_S * k)
        return self.ids, ts, {m: block[:, j] for j, m in enumerate(self.metrics)}

    def next_records(self) -> list[dict[str, Any]]:
        """The next tick as one record per endpoint (missing values left out), as a collector sends."""
        ids, ts, cols = self.next()
        rows = np.column_stack([cols[m] for m in self.metrics]).tolist()
        out = []
        for e, t, row in zip(ids.tolist(), ts.tolist(), rows):
            rec: dict[str, Any] = {"endpoint_id": e, "ts": t}
            for m, v, as_int in zip(self.metrics, row, self._int):
                if v == v:
                    rec[m] = int(v) if as_int else v
            out.append(rec)
        return out


def prefill(monitor: Any, source: TickSource, ticks: int | None = None) -> None:
    """Fill the Monitor's windows with ``ticks`` (default: its window) ticks, without scoring.

    What ``Monitor.calibrate`` does to collect windows: validated samples go straight
    into the WindowStore, so a fleet of 100 000 endpoints is warm in seconds instead
    of a window's worth of full ticks. The next ``observe_columns`` is a steady-state tick.
    """
    from ocad.core.pipeline import ValidationStats

    for _ in range(monitor.window if ticks is None else ticks):
        b = monitor.validator.from_columns(*source.next(), ValidationStats())
        rows = monitor.store.rows(b.endpoint_id)
        monitor.store.append(rows, b.ts, b.values)


def warm_monitor(n: int, ml: bool = True, *, observe: bool | None = None) -> tuple[Any, TickSource]:
    """A Monitor over ``n`` endpoints whose windows are full, and the source of its next ticks.

    ``observe``: warm up with real ticks (default for small fleets) rather than :func:`prefill`.
    """
    mon = make_monitor(ml)
    src = TickSource(n)
    if observe if observe is not None else n <= 1_000:
        for _ in range(mon.window):
            mon.observe_columns(*src.next())
    else:
        prefill(mon, src)
    return mon, src


def view_of(monitor: Any, source: TickSource) -> Any:
    """The DetectorView of the Monitor's next tick (appended to its windows, not scored)."""
    from ocad.core.pipeline import ValidationStats

    b = monitor.validator.from_columns(*source.next(), ValidationStats())
    rows = monitor.store.rows(b.endpoint_id)
    monitor.store.append(rows, b.ts, b.values)
    return monitor._view(rows, b)
