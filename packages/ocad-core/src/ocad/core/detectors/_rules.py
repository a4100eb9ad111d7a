"""RuleDetector: per-metric thresholds from config, the operator's explicit knowledge.

Default thresholds and why (override any of them under ``[detectors.rule.thresholds]``):

==================  ==================  =============================================
metric              default             reasoning
==================  ==================  =============================================
udp_echo_rtt_ms     max 30 ms           healthy fronthaul management RTTs sit at
                                        2–15 ms; 30 ms is twice the slowest healthy
                                        baseline and already hurts O-DU/O-RU timing
lbm_rtt_ms          max 30 ms           same path as the UDP echo, same reasoning
ecpri_delay_us      max 250 µs          O-RAN split-7.2 transport budgets one-way
                                        delay on the order of 100 µs (≈ 20 km of
                                        fibre); 250 µs is beyond any healthy link
lbm_success         fail_run >= 3       three loopbacks in a row without reply:
                                        the usual CFM loss criterion, not one lost
                                        frame
ccm_miss_count      nonzero_run >= 3    IEEE 802.1ag declares loss of continuity
                                        after 3.5 CCM intervals without a CCM
==================  ==================  =============================================

User metrics get no rule unless configured, e.g.
``thresholds = { my_kpi = { max = 80.0 } }``; keys: ``max``, ``min``,
``fail_run`` (boolean metrics), ``nonzero_run`` (count metrics).

Score: with ``r`` = observed / threshold (for ``min``: threshold / observed),
``s = 1 - 10**-(6 + 3 (r - 1))`` once a threshold is crossed (``r >= 1``) and
``s = 0.9 * r**8`` below it. Crossing the operator's threshold is decisive
evidence (a tail probability of 1e-6, falling further the farther it is crossed),
whatever the metric. A *default* threshold is an assumption about the network:
on an endpoint whose normal level already crosses it (a 100 ms network), the
Monitor's per-endpoint self-calibration learns during the warm-up that crossing
it is ordinary there, and the rule stops counting as evidence for that endpoint.
``fit()`` measures how often normal data crosses each threshold
(``false_alarm_rate_``) so a badly chosen threshold shows up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from .._errors import OcadConfigError
from .._metrics import MetricRegistry
from ._base import feature_matrix
from .._view import DetectorOutput, DetectorView

__all__ = ["DEFAULT_THRESHOLDS", "RuleDetector"]

DEFAULT_THRESHOLDS: dict[str, dict[str, float]] = {
    "udp_echo_rtt_ms": {"max": 30.0},
    "lbm_rtt_ms": {"max": 30.0},
    "ecpri_delay_us": {"max": 250.0},
    "lbm_success": {"fail_run": 3.0},
    "ccm_miss_count": {"nonzero_run": 3.0},
}
_KEYS = {"max", "min", "fail_run", "nonzero_run"}


def rule_score(r: np.ndarray) -> np.ndarray:
    """Map threshold ratios to scores (see module docstring); NaN stays NaN."""
    r = np.asarray(r, dtype=np.float64)
    # Surprise 6 at the threshold, +3 per threshold crossed again; capped where float64 ends.
    above = 1.0 - 10.0 ** -np.minimum(6.0 + 3.0 * (np.fmax(r, 1.0) - 1.0), 15.0)
    below = 0.9 * np.minimum(np.maximum(r, 0.0), 1.0) ** 8  # NaN propagates
    return np.where(r >= 1.0, above, below)


@attrs.define
class RuleDetector:
    """Thresholds on the newest value (``max`` / ``min``) or on failure run lengths."""

    thresholds: dict[str, dict[str, float]] = attrs.field(factory=lambda: dict(DEFAULT_THRESHOLDS))
    name: str = "rule"
    kind: str = "rule"
    window: int = 8
    false_alarm_rate_: dict[str, float] = attrs.field(factory=dict)
    metrics: tuple[str, ...] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        for m, rule in self.thresholds.items():
            if not isinstance(rule, Mapping) or not rule:
                raise OcadConfigError(f"detectors.rule.thresholds.{m}: expected a table like {{max = 30.0}}")
            bad = set(rule) - _KEYS
            if bad:
                raise OcadConfigError(f"detectors.rule.thresholds.{m}: unknown key(s) {sorted(bad)}; "
                                      f"use {sorted(_KEYS)}")
            for k, v in rule.items():
                if not isinstance(v, (int, float)) or isinstance(v, bool) or not np.isfinite(v) or v <= 0:
                    raise OcadConfigError(f"detectors.rule.thresholds.{m}.{k} = {v!r}: must be a number > 0")
        self.metrics = tuple(self.thresholds)

    @classmethod
    def from_options(cls, metrics: MetricRegistry, options: Mapping[str, Any]) -> RuleDetector:
        th = {m: dict(r) for m, r in DEFAULT_THRESHOLDS.items() if m in metrics}
        for m, r in dict(options.get("thresholds", {})).items():
            if m not in metrics:
                raise OcadConfigError(f"detectors.rule.thresholds.{m}: unknown metric {m!r}")
            th[m] = dict(r)
        extra = set(options) - {"thresholds", "window"}
        if extra:
            raise OcadConfigError(f"detectors.rule: unknown option(s) {sorted(extra)}")
        return cls(thresholds=th, window=int(options.get("window", 8)))

    def _plan(self) -> tuple[tuple[str, ...], np.ndarray, np.ndarray] | None:
        """Feature name, threshold and "is a min rule" per metric, when each has one rule."""
        if any(len(rule) != 1 for rule in self.thresholds.values()):
            return None
        cols, thr, is_min = [], [], []
        for m in self.metrics:
            ((key, t),) = self.thresholds[m].items()
            cols.append(f"{m}:last" if key in ("max", "min") else f"{m}:{key}")
            thr.append(float(t))
            is_min.append(key == "min")
        return tuple(cols), np.array(thr), np.array(is_min)

    def _ratios(self, view: DetectorView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        plan = self._plan()
        if plan is None:
            return self._ratios_each(view)
        cols, thr, is_min = plan
        v = feature_matrix(view.features, cols)
        with np.errstate(divide="ignore", invalid="ignore"):
            if is_min.any():
                r = np.where(is_min, np.where(v <= 0, np.inf, thr / v), v / thr)
            else:
                r = v / thr
        judged = ~np.isnan(r)
        return r, np.where(judged, v, np.nan), np.where(judged, thr, np.nan)

    def _ratios_each(self, view: DetectorView) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Several rules on one metric: the one with the highest ratio wins (the first on a tie)."""
        n, k = view.n, len(self.metrics)
        r = np.full((n, k), np.nan)
        obs = np.full((n, k), np.nan)
        exp = np.full((n, k), np.nan)
        f = view.features
        for j, m in enumerate(self.metrics):
            rule = self.thresholds[m]
            for key, thr in rule.items():
                if key in ("max", "min"):
                    col = f"{m}:last"
                else:
                    col = f"{m}:{key}"
                if col not in f:
                    continue
                v = f[col]
                with np.errstate(divide="ignore", invalid="ignore"):
                    ratio = thr / v if key == "min" else v / thr
                if key == "min":
                    ratio = np.where(v <= 0, np.inf, ratio)
                better = np.isnan(r[:, j]) | (ratio > r[:, j])
                upd = better & ~np.isnan(ratio)
                r[:, j] = np.where(upd, ratio, r[:, j])
                obs[:, j] = np.where(upd, v, obs[:, j])
                exp[:, j] = np.where(upd, thr, exp[:, j])
        return r, obs, exp

    def score(self, view: DetectorView) -> DetectorOutput:
        r, obs, exp = self._ratios(view)
        ms = rule_score(r)
        scores = np.fmax.reduce(ms, axis=1) if ms.shape[1] else np.full(view.n, np.nan)
        return DetectorOutput(scores=scores, metrics=self.metrics, metric_scores=ms, observed=obs, expected=exp)

    def fit(self, views: Iterable[DetectorView]) -> RuleDetector:
        """Measure each rule's firing rate on normal data (``false_alarm_rate_``)."""
        fired = np.zeros(len(self.metrics))
        total = np.zeros(len(self.metrics))
        for v in views:
            r, _, _ = self._ratios(v)
            ok = ~np.isnan(r)
            total += ok.sum(axis=0)
            fired += (ok & (r >= 1.0)).sum(axis=0)
        self.false_alarm_rate_ = {m: float(fired[j] / total[j]) if total[j] else float("nan")
                                  for j, m in enumerate(self.metrics)}
        return self

    def params_to_dict(self) -> dict[str, Any]:
        return {"thresholds": self.thresholds, "false_alarm_rate": self.false_alarm_rate_}

    def load_params(self, d: Mapping[str, Any]) -> None:
        self.false_alarm_rate_ = dict(d.get("false_alarm_rate", {}))
