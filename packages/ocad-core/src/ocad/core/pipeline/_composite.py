"""CompositeDetector: runs every detector on a view, isolates failures, combines evidence.

Every detector returns calibrated scores ``s`` (``1 - s`` is the chance of a value
this extreme on normal data, by the detector's own table). The composite turns
them into tail probabilities ``p`` (re-calibrated per endpoint when the Monitor
passes its :class:`~ocad.core._selfcal.SelfCalibration`), combines them with the
weighted Cauchy combination (:func:`~ocad.core._selfcal.cauchy_combine`: one
decisive detector is not averaged away, several weak ones add up, valid however
the detectors depend on each other), and reports **surprise**:
``score = min(1, -log10(p) / SURPRISE_FULL_SCALE)``, about 0 when nothing is
unusual (normal data: mean about 0.04) and 1 at ``p = 1e-10``. The same scale
is used for each detector's own score in the output (``detector_scores``).

A detector returning NaN (the endpoint lacks its metrics, or the detector
failed) is left out and the weights renormalise, so a missing capability never
counts as "normal" nor as "anomalous". ``contributions[i, d]`` is detector
``d``'s share of the combined statistic times the composite score; they sum to
the composite score and are the alert's evidence weights.

Isolation: a detector that raises, returns the wrong shape or scores outside
[0, 1], or takes longer than its time budget, yields NaN for that tick; it is
counted in :attr:`CompositeDetector.health` and logged. After
``max_consecutive_failures`` failures in a row it is disabled (reported, not
silently dropped); an over-budget detector is skipped for ``budget_cooldown_ticks``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from .._errors import OcadConfigError
from ..plugins._protocols import Detector
from ._selfcal import P_MIN, cauchy_combine, prior_surprise
from .._view import DetectorOutput, DetectorView

__all__ = ["SURPRISE_FULL_SCALE", "CompositeDetector", "CompositeOutput", "DetectorHealth", "surprise_score"]

#: -log10(p) at which a surprise score reaches 1.
SURPRISE_FULL_SCALE = 10.0


def surprise_score(p: np.ndarray) -> np.ndarray:
    """Tail probabilities -> surprise scores in [0, 1]; NaN stays NaN."""
    p = np.asarray(p, dtype=np.float64)
    return np.minimum(-np.log10(np.clip(p, P_MIN, 1.0)) / SURPRISE_FULL_SCALE, 1.0) + 0.0  # no -0.0

log = logging.getLogger("ocad.detectors")


@attrs.define
class DetectorHealth:
    """Counters of one detector inside a composite."""

    name: str
    calls: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    over_budget: int = 0
    skipped: int = 0
    last_error: str | None = None
    disabled_reason: str | None = None
    cooldown: int = 0
    total_time_s: float = 0.0

    @property
    def disabled(self) -> bool:
        return self.disabled_reason is not None

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self)
        d["disabled"] = self.disabled
        return d


@attrs.frozen(eq=False)
class CompositeOutput:
    """Composite and per-detector scores of one tick.

    ``scores`` and ``detector_scores`` are surprise scores (see the module docs);
    ``pvalues`` the per-detector tail probabilities they come from (after per-endpoint
    calibration) and ``calibrated`` the detectors' own scores, as they returned them.
    """

    scores: np.ndarray  # (N,)
    detectors: tuple[str, ...]
    kinds: tuple[str, ...]
    weights: np.ndarray  # (D,)
    detector_scores: np.ndarray  # (N, D)
    contributions: np.ndarray  # (N, D)
    outputs: tuple[DetectorOutput, ...]
    pvalues: np.ndarray | None = attrs.field(default=None, kw_only=True)  # (N, D)
    calibrated: np.ndarray | None = attrs.field(default=None, kw_only=True)  # (N, D)


class CompositeDetector:
    """Weighted, capability-aware combination of detectors.

    Parameters
    ----------
    detectors:
        Objects satisfying :class:`~ocad.core.Detector`.
    weights:
        ``{name: weight}``; detectors not named get ``default_weight``.
    time_budget_s:
        Per-detector, per-tick budget; ``None`` for no budget.
    """

    def __init__(self, detectors: Sequence[Detector], weights: Mapping[str, float] | None = None, *,
                 default_weight: float = 1.0, time_budget_s: float | None = None,
                 max_consecutive_failures: int = 3, budget_cooldown_ticks: int = 10) -> None:
        names = [d.name for d in detectors]
        if len(set(names)) != len(names):
            raise OcadConfigError(f"detector names must be unique, got {names}")
        weights = dict(weights or {})
        for n, w in weights.items():
            if not isinstance(w, (int, float)) or isinstance(w, bool) or not np.isfinite(w) or w < 0:
                raise OcadConfigError(f"detectors.{n}.weight = {w!r}: must be a number >= 0")
        self.detectors: tuple[Detector, ...] = tuple(detectors)
        self.names: tuple[str, ...] = tuple(names)
        self.kinds: tuple[str, ...] = tuple(str(getattr(d, "kind", d.name)) for d in detectors)
        self.weights = np.array([float(weights.get(n, default_weight)) for n in names])
        self.time_budget_s = time_budget_s
        self.max_consecutive_failures = int(max_consecutive_failures)
        self.budget_cooldown_ticks = int(budget_cooldown_ticks)
        self.health: dict[str, DetectorHealth] = {n: DetectorHealth(n) for n in names}

    @property
    def window(self) -> int:
        return max((int(d.window) for d in self.detectors), default=1)

    def _run(self, det: Detector, view: DetectorView) -> DetectorOutput:
        h = self.health[det.name]
        n = view.n
        if h.disabled:
            h.skipped += 1
            return DetectorOutput.empty(n)
        if h.cooldown > 0:
            h.cooldown -= 1
            h.skipped += 1
            return DetectorOutput.empty(n)
        h.calls += 1
        t0 = time.perf_counter()
        try:
            out = det.score(view).check(n, det.name)
        except (KeyboardInterrupt, SystemExit):
            raise  # the process is being stopped: not the detector's failure
        except BaseException as exc:  # noqa: BLE001 - one detector must never stop the others
            h.failures += 1
            h.consecutive_failures += 1
            h.last_error = f"{type(exc).__name__}: {exc}"
            if h.failures == 1 or h.failures % 100 == 0:
                log.warning("detector %r failed (%d so far): %s", det.name, h.failures, h.last_error)
            if h.consecutive_failures >= self.max_consecutive_failures:
                h.disabled_reason = (f"disabled after {h.consecutive_failures} consecutive failures; "
                                     f"last: {h.last_error}")
                log.error("detector %r %s", det.name, h.disabled_reason)
            return DetectorOutput.empty(n)
        finally:
            h.total_time_s += time.perf_counter() - t0
        dt = time.perf_counter() - t0
        h.consecutive_failures = 0
        if self.time_budget_s is not None and dt > self.time_budget_s:
            h.over_budget += 1
            h.cooldown = self.budget_cooldown_ticks
            h.last_error = (f"took {dt * 1e3:.1f} ms > budget {self.time_budget_s * 1e3:.1f} ms; "
                            f"result dropped, skipped for {self.budget_cooldown_ticks} ticks")
            log.warning("detector %r %s", det.name, h.last_error)
            return DetectorOutput.empty(n)
        return out

    def score(self, view: DetectorView, pvalues: Callable[[np.ndarray], np.ndarray] | None = None
              ) -> CompositeOutput:
        """Run every detector on ``view`` and combine their evidence.

        ``pvalues`` maps the detectors' prior surprises ``-log10(1 - s)`` (N, D) to tail
        probabilities (the Monitor's per-endpoint self-calibration); default ``1 - s``.
        """
        outs = tuple(self._run(d, view) for d in self.detectors)
        n = view.n
        s = np.stack([o.scores for o in outs], axis=1) if outs else np.empty((n, 0))
        u = prior_surprise(s)
        p = pvalues(u) if pvalues is not None else np.where(np.isnan(u), np.nan, 10.0 ** -u)
        return self.combine(outs, s, p)

    def combine(self, outs: tuple[DetectorOutput, ...], calibrated: np.ndarray, p: np.ndarray) -> CompositeOutput:
        """The composite of per-detector tail probabilities ``p`` (N, D)."""
        comb, share = cauchy_combine(p, self.weights) if p.shape[1] else \
            (np.full(p.shape[0], np.nan), np.zeros(p.shape))
        comp = surprise_score(comb)
        contrib = share * np.where(np.isnan(comp), 0.0, comp)[:, None]
        return CompositeOutput(scores=comp, detectors=self.names, kinds=self.kinds, weights=self.weights,
                               detector_scores=surprise_score(p), contributions=contrib, outputs=outs,
                               pvalues=p, calibrated=calibrated)

    def health_report(self) -> dict[str, dict[str, Any]]:
        return {n: h.to_dict() for n, h in self.health.items()}
