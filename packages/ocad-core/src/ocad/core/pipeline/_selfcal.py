"""Self-calibration: each detector's tail probabilities re-learned per endpoint, online.

A detector's calibration table is fitted once, on some fleet's normal data (the
shipped tables, or ``Monitor.calibrate`` on the user's). On an endpoint whose
noise has heavier tails, or another shape, the same table calls ordinary values
rare, and the alerts flood. Here every endpoint learns, for every detector, how
often it really crosses each level of the detector's own (prior) surprise
``u = -log10(1 - score)``:

* state per endpoint and detector: a decayed sample count ``n`` and decayed
  exceedance counts ``e_g`` of the levels ``u_g`` in :data:`GRID` (bounded:
  ``len(GRID) + 1`` floats);
* the re-calibrated tail probability at ``u_g`` is the Bayesian blend
  ``(e_g + a * 10**-u_g) / (n + a)``: the prior table counts as ``a`` samples
  (``prior_weight``), so a new endpoint starts from the prior and an endpoint
  with a long history from its own experience;
* above the highest level the endpoint has crossed ``MIN_EXCEEDANCES`` times,
  the prior's tail (one decade of p per unit of ``u``) continues from the
  endpoint's *measured* rate there, where that gives a larger p than the blend
  (heavy-tailed noise: the prior alone would make every new record look
  decisive); between the levels ``log p`` is interpolated (below the first level
  p = 1), beyond the last it falls by one decade per unit of ``u``;
* counts decay with a half-life of ``half_life_s`` of sample time, so the
  calibration follows slow changes of an endpoint's noise;
* rows with an alert open or pending learn nothing (contamination guard).

The output is a p-value per endpoint and detector, which the composite combines.
"""

from __future__ import annotations

import math
from typing import Any

import attrs
import numpy as np

from .._errors import OcadConfigError
from ._window import WindowStore

__all__ = ["GRID", "SelfCalibration", "SelfCalibrationConfig"]

#: Levels of prior surprise (-log10 p) whose exceedance rates each endpoint learns.
GRID = np.array([0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0, 5.0, 6.0, 7.0, 8.0, 10.0, 12.0])
_LN2 = math.log(2.0)
#: Smallest p-value handled: 1e-15 keeps tan() and log10() exact in float64.
P_MIN = 1e-15
#: Exceedances (decayed) of a level before its rate counts as measured on this endpoint.
MIN_EXCEEDANCES = 3.0
#: Prior surprise up to which an endpoint's own exceedance rates are learned.
LEARN_MAX = 4.0


def _positive(inst: Any, attr: attrs.Attribute, v: float) -> None:  # type: ignore[type-arg]
    if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
        raise OcadConfigError(f"selfcal.{attr.name} = {v!r}: must be a finite number > 0")


@attrs.frozen
class SelfCalibrationConfig:
    """The ``[selfcal]`` config table."""

    enabled: bool = True
    half_life_s: float = attrs.field(default=3 * 86_400.0, converter=float, validator=_positive)
    prior_weight: float = attrs.field(default=30.0, converter=float, validator=_positive)

    @classmethod
    def from_mapping(cls, d: Any) -> SelfCalibrationConfig:
        allowed = {f.name for f in attrs.fields(cls)}
        bad = set(d) - allowed
        if bad:
            raise OcadConfigError(f"selfcal: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        if "enabled" in d and not isinstance(d["enabled"], bool):
            raise OcadConfigError(f"selfcal.enabled = {d['enabled']!r}: must be true or false")
        try:
            return cls(**dict(d))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, OcadConfigError):
                raise
            raise OcadConfigError(f"selfcal: {exc}") from exc


def prior_surprise(scores: np.ndarray) -> np.ndarray:
    """``-log10(1 - s)`` of calibrated scores; NaN stays NaN."""
    s = np.asarray(scores, dtype=np.float64)
    return -np.log10(np.clip(1.0 - s, P_MIN, 1.0))


class SelfCalibration:
    """Per-endpoint, per-detector tail re-calibration (state in ``store`` rows)."""

    def __init__(self, n_detectors: int, config: SelfCalibrationConfig | None = None) -> None:
        self.config = config or SelfCalibrationConfig()
        self.n_detectors = int(n_detectors)
        self._prior_p = 10.0 ** -GRID

    def register(self, store: WindowStore) -> None:
        """Add this stage's per-row state to ``store`` (once per store)."""
        d = self.n_detectors
        store.add_state("sc_n", (d,), np.float32, 0.0)
        store.add_state("sc_exc", (d, GRID.size), np.float32, 0.0)
        store.add_state("sc_tupd", (), np.float64, np.nan)


    def pvalues(self, store: WindowStore, rows: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Re-calibrated tail probabilities (n, D) of prior surprises ``u`` (n, D); NaN stays NaN."""
        u = np.asarray(u, dtype=np.float64)
        if not self.config.enabled or u.size == 0:
            return np.clip(10.0 ** -u, P_MIN, 1.0)
        p = np.where(np.isnan(u), np.nan, 1.0)
        # Below the first level nothing is unusual (p = 1): usually most pairs, skipped here.
        ri, di = np.nonzero(u >= GRID[0])
        if ri.size:
            p[ri, di] = 10.0 ** self._log_p(store.extra, np.asarray(rows)[ri], di, u[ri, di])
        return p

    def _log_p(self, x: Any, rows: np.ndarray, det: np.ndarray, u: np.ndarray) -> np.ndarray:
        """log10 p of prior surprises ``u`` (m,) >= GRID[0] of detector ``det`` (m,) on ``rows`` (m,)."""
        a = self.config.prior_weight
        n = x["sc_n"][rows, det].astype(np.float64)[:, None]  # (m, 1)
        exc = x["sc_exc"][rows, det].astype(np.float64)  # (m, G)
        with np.errstate(divide="ignore"):
            lp_grid = np.log10((exc + a * self._prior_p) / (n + a))
            # Above the highest level this endpoint has crossed often enough to measure, the blend
            # trusts the prior's tail; where the endpoint's measured rate there is higher than the
            # prior's (heavy-tailed noise), the prior's slope continues from the measured rate instead,
            # whichever gives the larger p: a value never seen on a short history is not proof of a fault.
            top = (exc >= MIN_EXCEEDANCES).sum(axis=1) - 1  # counts fall with the level: a prefix
            has = top >= 0
            ts_ = np.maximum(top, 0)
            m = np.arange(u.shape[0])
            e_top = np.log10(np.maximum(exc[m, ts_] / np.maximum(n[:, 0], 1e-12), P_MIN))
        ext = e_top[:, None] - (GRID - GRID[ts_][:, None])
        above = has[:, None] & (np.arange(GRID.size) > ts_[:, None])
        lp_grid = np.where(above, np.maximum(lp_grid, ext), lp_grid)
        # Tail probabilities must fall with the level; decayed counts keep that up to rounding.
        lp_grid = np.minimum.accumulate(np.maximum(lp_grid, math.log10(P_MIN)), axis=1)
        k = np.searchsorted(GRID, u, side="right")  # in [1, G]: u >= GRID[0]
        ks = np.minimum(k, GRID.size - 1)
        lo_i = ks - 1
        lo_lp, hi_lp = lp_grid[m, lo_i], lp_grid[m, ks]
        frac = np.clip((u - GRID[lo_i]) / (GRID[ks] - GRID[lo_i]), 0.0, 1.0)
        inner = lo_lp + frac * (hi_lp - lo_lp)
        beyond = lp_grid[:, -1] - (u - GRID[-1])  # past the last level: one decade per unit of u
        lp = np.where(k >= GRID.size, beyond, inner)
        return np.clip(lp, math.log10(P_MIN), 0.0)

    def update(self, store: WindowStore, rows: np.ndarray, ts: np.ndarray, u: np.ndarray, frozen: np.ndarray) -> None:
        """Learn prior surprises ``u`` (n, D) at ``ts`` (n,); ``frozen`` rows learn nothing."""
        if not self.config.enabled:
            return
        learn = ~np.asarray(frozen, dtype=bool)
        if not learn.any():
            return
        x = store.extra
        r = np.asarray(rows, dtype=np.int64)[learn]
        t = np.asarray(ts, dtype=np.float64)[learn]
        uu = np.asarray(u, dtype=np.float64)[learn]
        dt = t - x["sc_tupd"][r]
        dt = np.where(np.isfinite(dt) & (dt > 0), dt, 0.0)
        decay = np.exp(-_LN2 * dt / self.config.half_life_s)[:, None]
        ok = np.isfinite(uu)
        # Levels above LEARN_MAX are never learned from data, only extrapolated from the endpoint's
        # measured rate below it: sustained evidence (a slow drift that has not opened an alert yet)
        # must not teach the endpoint that strong evidence is ordinary and silence itself.
        uu = np.minimum(uu, LEARN_MAX)
        n = x["sc_n"][r] * decay + ok
        exc = x["sc_exc"][r] * decay[:, :, None] + (ok[:, :, None] & (uu[:, :, None] >= GRID))
        x["sc_n"][r] = n
        x["sc_exc"][r] = exc
        x["sc_tupd"][r] = t

    def count(self, store: WindowStore, rows: np.ndarray) -> np.ndarray:
        """Samples (decayed) behind each row's calibration, the most of any detector: (n,)."""
        return store.extra["sc_n"][rows].max(axis=1, initial=0.0)


def cauchy_combine(p: np.ndarray, weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Cauchy combination of p-values (Liu & Xie 2020) over axis 1.

    ``T = sum_d w_d tan((1/2 - min(p_d, 1/2)) pi) / sum w`` and ``p = 1/2 - arctan(T) / pi``:
    valid under any dependence between the detectors (they all look at the same
    samples), dominated by the smallest p-values, so one decisive detector is
    not averaged away, while several moderately small ones add up. NaN p-values
    (the detector cannot judge) drop out and the weights renormalise.

    Returns the combined p-values (n,) (NaN where no detector judged) and each
    detector's share of the statistic (n, D), >= 0, summing to 1 where judged.
    """
    p = np.asarray(p, dtype=np.float64)
    ok = np.isfinite(p)
    w = np.where(ok, np.asarray(weights, dtype=np.float64), 0.0)
    wsum = w.sum(axis=1)
    # p-values above 1/2 count as 1/2 (no evidence): a p near 1 would give a huge negative
    # term that cancels a decisive one (a known weakness of the plain Cauchy combination).
    # The tail of the statistic, where alerts live, is the smallest p-values' and unchanged.
    pc = np.clip(np.where(ok, p, 0.5), P_MIN, 0.5)
    # tan((1/2 - p) pi) = 1 / tan(p pi): exact for tiny p, where the other form loses digits.
    with np.errstate(divide="ignore", over="ignore"):
        terms = np.where(pc < 0.5, 1.0 / np.tan(pc * np.pi), 0.0)
    stat = (w * terms).sum(axis=1) / np.where(wsum > 0, wsum, 1.0)
    # p = 1/2 - arctan(T)/pi = arctan(1/T)/pi for T > 0, without cancellation.
    with np.errstate(divide="ignore"):
        comb = np.where(stat > 0, np.arctan(1.0 / np.where(stat > 0, stat, 1.0)) / np.pi,
                        0.5 - np.arctan(stat) / np.pi)
    comb = np.where(wsum > 0, np.clip(comb, P_MIN, 1.0), np.nan)
    pos = np.maximum(w * terms, 0.0)
    tot = pos.sum(axis=1, keepdims=True)
    share = np.where(tot > 0, pos / np.where(tot > 0, tot, 1.0), np.where(ok, w / np.maximum(wsum, 1e-300)[:, None], 0.0))
    return comb, share
