"""Baselines: what normal looks like for each endpoint and metric, learned online.

The window (32 samples) tells what happened in the last minutes; a baseline tells
what is normal *here*, over hours and days. Per endpoint and gauge metric, in
bounded state kept in the :class:`~ocad.core.WindowStore` rows (so it is
evicted, reset and snapshotted with the endpoint):

* ``level`` / ``scale``: a robust exponentially weighted level and spread in
  *sample time* (half-life ``level_half_life_s``); a residual is clipped at
  ``clip`` spreads before it moves them, so a blip barely does. Until the
  endpoint has enough samples the weights are those of a running mean.
* ``history``: the means of the last ``history`` quarter-hours (what the level
  was 15 min, 30 min, ... 3 h ago; samples under an alert left out), so a drift
  over hours shows against the level before it began rather than against a
  baseline that follows it.
* ``profile``: a daily profile of the deviation from the level, one bin per hour
  of the day, learned across days; once the endpoint has a day of history it
  makes a regular daily pattern part of what is expected.

**Contamination guard**: while an endpoint has an alert open or pending, or its
newest sample is suspect (composite surprise at or above the alert policy's
``clear_threshold``), its level, spread, profile and self-calibration are frozen,
so a fault is not learned as normal, nor is evidence that is still building up.
A persistent change (a planned re-route) must still become the new normal: once
the guard has held for ``accept_after_s`` the baseline learns again, the evidence
fades as it catches up, and the alert resolves.

Detectors read the baseline through :class:`BaselineFrame` in their
:class:`~ocad.core.DetectorView` (``view.baseline``), the values *before* the
newest sample was learned.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import attrs
import numpy as np

from .._errors import OcadConfigError
from ._window import WindowStore

__all__ = ["BaselineConfig", "BaselineFrame", "Baselines"]

_LN2 = math.log(2.0)
_DAY = 86_400.0
#: The excursion level is the 99.5 % quantile of |z| on normal data, learned by stochastic
#: approximation (a step up on an excursion, 199 times smaller steps down otherwise).
EXCURSION_QUANTILE = 0.995
_EXQ_STEP = 0.02
INITIAL_EXCURSION = 5.0
MIN_EXCURSION = 4.0


def _positive(inst: Any, attr: attrs.Attribute, v: float) -> None:  # type: ignore[type-arg]
    if not (isinstance(v, (int, float)) and v > 0 and math.isfinite(v)):
        raise OcadConfigError(f"baselines.{attr.name} = {v!r}: must be a finite number > 0")


@attrs.frozen
class BaselineConfig:
    """The ``[baselines]`` config table."""

    level_half_life_s: float = attrs.field(default=3600.0, converter=float, validator=_positive)
    clip: float = attrs.field(default=3.0, converter=float, validator=_positive)
    quarter_s: float = attrs.field(default=900.0, converter=float, validator=_positive)
    history: int = attrs.field(default=12, converter=int, validator=_positive)
    profile_bins: int = attrs.field(default=24, converter=int, validator=_positive)
    profile_days: float = attrs.field(default=3.0, converter=float, validator=_positive)
    accept_after_s: float = attrs.field(default=1800.0, converter=float, validator=_positive)
    rel_scale_floor: float = attrs.field(default=2e-3, converter=float, validator=_positive)

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> BaselineConfig:
        allowed = {f.name for f in attrs.fields(cls)}
        bad = set(d) - allowed
        if bad:
            raise OcadConfigError(f"baselines: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        try:
            return cls(**dict(d))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, OcadConfigError):
                raise
            raise OcadConfigError(f"baselines: {exc}") from exc


@attrs.frozen(eq=False)
class BaselineFrame:
    """The baselines of N endpoints at one tick, before its samples were learned.

    Arrays are ``(N, M)`` over the view's metrics (``history``: ``(N, M, H)``, oldest
    quarter-hour first); NaN where nothing is known yet.

    ``expected``: the normal level now (level plus the daily profile where learned);
    ``scale``: the normal spread of one sample around it; ``weight``: the effective
    number of samples behind the level; ``season``: the daily-profile offset now (0
    until learned); ``history``: de-seasonalised quarter-hour means, ``season``
    removed, so ``history - (value - season)`` is a change free of the daily pattern.
    """

    expected: np.ndarray
    scale: np.ndarray
    weight: np.ndarray
    season: np.ndarray
    history: np.ndarray
    #: The endpoint's excursion level: the ``excursion_quantile`` of ``|value - expected| / scale``
    #: on its normal data (at least ``MIN_EXCURSION``); beyond it a sample is an excursion.
    excursion: np.ndarray = attrs.field(default=None)

    def take(self, rows: np.ndarray) -> BaselineFrame:
        return BaselineFrame(self.expected[rows], self.scale[rows], self.weight[rows], self.season[rows],
                             self.history[rows], None if self.excursion is None else self.excursion[rows])


class Baselines:
    """The baseline stage: per-endpoint state in a WindowStore's rows, read before and learned after each tick."""

    def __init__(self, n_metrics: int, config: BaselineConfig | None = None) -> None:
        self.config = config or BaselineConfig()
        self.n_metrics = int(n_metrics)

    def register(self, store: WindowStore) -> None:
        """Add this stage's per-row state to ``store`` (once per store)."""
        cfg = self.config
        m, h, b = self.n_metrics, cfg.history, cfg.profile_bins
        for name, shape, fill in (
            ("bl_level", (m,), np.nan), ("bl_abs", (m,), np.nan), ("bl_weight", (m,), 0.0),
            ("bl_tupd", (m,), np.nan), ("bl_hist", (m, h), np.nan), ("bl_qsum", (m,), 0.0),
            ("bl_qcnt", (m,), 0.0), ("bl_prof", (m, b), 0.0), ("bl_profw", (m, b), 0.0),
            ("bl_exq", (m,), np.nan),
        ):
            store.add_state(name, shape, np.float32 if name not in ("bl_tupd",) else np.float64, fill)
        store.add_state("bl_t0", (), np.float64, np.nan)  # first sample time: the endpoint's age
        store.add_state("bl_qslot", (), np.float64, np.nan)  # quarter-hour being accumulated
        store.add_state("bl_guard_since", (), np.float64, np.nan)  # alert-guard start, NaN = none

    # -- reading ----------------------------------------------------------------
    def _season(self, prof: np.ndarray, pw: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Daily-profile offsets at times ``t`` (n, T) from profiles ``prof``/``pw`` (n, M, B): (n, M, T).

        0 where the two profile bins around a time are not learned yet.
        """
        nb = self.config.profile_bins
        width = _DAY / nb
        pos = (np.mod(t, _DAY) / width) - 0.5  # bin centres at (k + 0.5) * width
        lo = np.floor(pos).astype(np.int64)
        frac = (pos - lo)[:, None, :]
        lo %= nb
        hi = (lo + 1) % nb
        lo_i = np.broadcast_to(lo[:, None, :], (prof.shape[0], prof.shape[1], lo.shape[1]))
        hi_i = np.broadcast_to(hi[:, None, :], lo_i.shape)
        v_lo, v_hi = np.take_along_axis(prof, lo_i, axis=2), np.take_along_axis(prof, hi_i, axis=2)
        known = (np.take_along_axis(pw, lo_i, axis=2) >= 0.5 * width) & (np.take_along_axis(pw, hi_i, axis=2) >= 0.5 * width)
        return np.where(known, (1.0 - frac) * v_lo + frac * v_hi, 0.0)

    def frame(self, store: WindowStore, rows: np.ndarray, ts: np.ndarray) -> BaselineFrame:
        """Baselines of ``rows`` at their sample times ``ts`` (before learning them)."""
        cfg, x = self.config, store.extra
        rows = np.asarray(rows, dtype=np.int64)
        t = np.asarray(ts, dtype=np.float64)
        age = t - x["bl_t0"][rows]
        age = np.where(np.isfinite(age), age, 0.0)
        level = x["bl_level"][rows].astype(np.float64)
        scale = self._scale(level, x["bl_abs"][rows].astype(np.float64))
        hist = x["bl_hist"][rows].astype(np.float64)  # (n, M, H), newest quarter last
        season = np.zeros(level.shape)
        # The profile counts once an endpoint has most of a day of history (most ticks: none has).
        seasonal = age >= 0.8 * _DAY
        if seasonal.any():
            h, qs = cfg.history, cfg.quarter_s
            sr = rows[seasonal]
            slot = x["bl_qslot"][sr]
            # Now, and each stored quarter-hour at its own time of day (its middle).
            times = np.concatenate([t[seasonal, None], (slot[:, None] - np.arange(h - 1, -1, -1)) * qs + 0.5 * qs],
                                   axis=1)
            times = np.where(np.isfinite(times), times, t[seasonal, None])
            off = self._season(x["bl_prof"][sr].astype(np.float64), x["bl_profw"][sr], times)
            season[seasonal] = off[:, :, 0]
            hist[seasonal] -= off[:, :, 1:]
        hist_dev = hist
        exq = x["bl_exq"][rows].astype(np.float64)
        excursion = np.maximum(np.where(np.isnan(exq), INITIAL_EXCURSION, exq), MIN_EXCURSION)
        return BaselineFrame(expected=level + season, scale=scale, weight=x["bl_weight"][rows].astype(np.float64),
                             season=season, history=hist_dev, excursion=excursion)

    def _scale(self, level: np.ndarray, mean_abs: np.ndarray) -> np.ndarray:
        # Mean absolute deviation -> standard deviation for Gaussian data; floored relative to the level.
        return np.maximum(mean_abs * math.sqrt(math.pi / 2.0),
                          np.maximum(self.config.rel_scale_floor * np.abs(level), 1e-12))

    def age(self, store: WindowStore, rows: np.ndarray, ts: np.ndarray) -> np.ndarray:
        """Seconds of sample time since each row's first sample (0 for new rows)."""
        a = np.asarray(ts, dtype=np.float64) - store.extra["bl_t0"][rows]
        return np.where(np.isfinite(a), a, 0.0)

    # -- learning -----------------------------------------------------------
    def set_guard(self, store: WindowStore, rows: np.ndarray, ts: np.ndarray, guarded: np.ndarray) -> np.ndarray:
        """Record which rows are under an alert (open or pending); returns rows still frozen.

        A row stays frozen from the first guarded sample until ``accept_after_s`` later;
        after that a persistent change is learned as the new normal.
        """
        x = store.extra
        since = x["bl_guard_since"]
        t = np.asarray(ts, dtype=np.float64)
        g = np.asarray(guarded, dtype=bool)
        start = g & np.isnan(since[rows])
        since[rows[start]] = t[start]
        since[rows[~g]] = np.nan
        return g & (t - since[rows] < self.config.accept_after_s)

    def update(self, store: WindowStore, rows: np.ndarray, ts: np.ndarray, values: np.ndarray, frozen: np.ndarray) -> None:
        """Learn the newest samples ``values`` (n, M) at ``ts`` (n,); ``frozen`` rows (n,) learn nothing.

        A quarter-hour with no sample learned (all under an alert) stays empty in the history.
        """
        cfg, x = self.config, store.extra
        rows = np.asarray(rows, dtype=np.int64)
        t = np.asarray(ts, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        t0 = x["bl_t0"]
        t0[rows] = np.where(np.isnan(t0[rows]), t, t0[rows])
        learn = ~np.asarray(frozen, dtype=bool)
        self._update_history(store, rows, t, np.where(learn[:, None], v, np.nan))
        if not learn.any():
            return
        r, t, v = rows[learn], t[learn], v[learn]
        ok = np.isfinite(v)
        level = x["bl_level"][r].astype(np.float64)
        mabs = x["bl_abs"][r].astype(np.float64)
        w = x["bl_weight"][r].astype(np.float64)
        tupd = x["bl_tupd"][r]
        dt = t[:, None] - tupd
        # The sampling interval the weights assume; a gap (maintenance) counts as one interval.
        dt = np.where(np.isfinite(dt) & (dt > 0), dt, 0.0)
        dt = np.minimum(dt, 0.05 * cfg.level_half_life_s)
        alpha = 1.0 - np.exp(-_LN2 * dt / cfg.level_half_life_s)
        # A running mean while the level has few samples behind it, the EWMA afterwards.
        alpha = np.maximum(alpha, 1.0 / (w + 1.0))
        first = np.isnan(level)
        scale = self._scale(np.where(first, v, level), np.where(np.isnan(mabs), 0.0, mabs))
        res = v - np.where(first, v, level)
        known_scale = np.isfinite(mabs) & (w >= 8)
        lim = cfg.clip * scale
        clipped = np.where(known_scale, np.clip(res, -lim, lim), res)
        new_level = np.where(first, v, level + alpha * clipped)
        dev = np.abs(res)
        dev = np.where(known_scale, np.minimum(dev, lim), dev)
        new_abs = np.where(first, np.nan, np.where(np.isnan(mabs), dev, mabs + alpha * (dev - mabs)))
        # The excursion level: |z| against the level and scale before this sample.
        exq = x["bl_exq"][r].astype(np.float64)
        exq = np.where(np.isnan(exq), INITIAL_EXCURSION, exq)
        z = np.abs(res) / scale
        step = np.where(z > exq, _EXQ_STEP, -_EXQ_STEP * (1.0 - EXCURSION_QUANTILE) / EXCURSION_QUANTILE)
        new_exq = np.clip(exq + step, MIN_EXCURSION - 1.0, 100.0)
        x["bl_exq"][r] = np.where(ok & known_scale, new_exq, x["bl_exq"][r])
        # The profile learns the deviation from the level at this time of day, across days.
        self._update_profile(store, r, t, np.where(first, 0.0, res), ok & ~first, dt)
        x["bl_level"][r] = np.where(ok, new_level, level)
        x["bl_abs"][r] = np.where(ok, new_abs, mabs)
        x["bl_weight"][r] = np.where(ok, w + 1.0, w)
        x["bl_tupd"][r] = np.where(ok, t[:, None], tupd)

    def _update_history(self, store: WindowStore, rows: np.ndarray, t: np.ndarray, v: np.ndarray) -> None:
        x = store.extra
        qs = self.config.quarter_s
        slot = np.floor(t / qs)
        cur = x["bl_qslot"][rows]
        moved = np.isfinite(cur) & (slot > cur)
        if moved.any():
            rm = rows[moved]
            steps = np.minimum(slot[moved] - cur[moved], self.config.history).astype(np.int64)
            cnt = x["bl_qcnt"][rm]
            mean = np.where(cnt > 0, x["bl_qsum"][rm] / np.maximum(cnt, 1), np.nan)
            hist = x["bl_hist"][rm]
            # Shift by the quarters that passed: the finished one, then empty ones for a gap.
            for k in np.unique(steps).tolist():
                sel = steps == k
                hh = hist[sel]
                hh = np.concatenate([hh[:, :, k:], np.full(hh.shape[:2] + (k,), np.nan, np.float32)], axis=2)
                hh[:, :, -k] = mean[sel]
                hist[sel] = hh
            x["bl_hist"][rm] = hist
            x["bl_qsum"][rm] = 0.0
            x["bl_qcnt"][rm] = 0.0
        x["bl_qslot"][rows] = np.where(np.isfinite(cur), np.maximum(cur, slot), slot)
        ok = np.isfinite(v)
        x["bl_qsum"][rows] += np.where(ok, v, 0.0).astype(np.float32)
        x["bl_qcnt"][rows] += ok.astype(np.float32)

    def _update_profile(self, store: WindowStore, rows: np.ndarray, t: np.ndarray, res: np.ndarray, ok: np.ndarray,
                        dt: np.ndarray) -> None:
        cfg, x = self.config, store.extra
        nb = cfg.profile_bins
        width = _DAY / nb
        b = (np.mod(t, _DAY) // width).astype(np.int64) % nb
        r = np.arange(rows.shape[0])
        prof, pw = x["bl_prof"][rows], x["bl_profw"][rows]
        pb, wb = prof[r, :, b].astype(np.float64), pw[r, :, b].astype(np.float64)
        # A running mean over the first day of a bin, then a memory of ``profile_days`` days.
        wnew = np.minimum(wb + dt, cfg.profile_days * width)
        a = np.where(wnew > 0, dt / np.maximum(wnew, 1e-9), 0.0)
        pb = np.where(ok, pb + a * (res - pb), pb)
        prof[r, :, b] = pb
        pw[r, :, b] = np.where(ok, wnew, wb)
        x["bl_prof"][rows] = prof
        x["bl_profw"][rows] = pw
