"""Drift detection: a robust CUSUM against a per-endpoint baseline, confirmed by PELT.

Two pieces live here:

* :func:`pelt` — exact penalised change-point search (Killick, Fearnhead & Eckley
  2012) for changes in mean under the L2 cost, with the same breakpoint convention
  and the same decisions as ``ruptures.Pelt(model="l2")``; and
  :func:`pelt_last_change`, a batched form that finds the start of the last
  segment of many short windows at once.
* :class:`ChangepointDetector` — the built-in ``"drift"`` detector. Per gauge metric
  and endpoint it standardises the window against its older part (the baseline)
  and runs a one-sided CUSUM over the newer part; for the few endpoints that
  score high it asks PELT where the mean shifted, to report the means before and
  after the change as evidence.

Nothing here imports ruptures: it is only the reference the tests compare with.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterable, Mapping
from typing import Any

import attrs
import numpy as np

from ._calibration import Calibration
from ._base import CalibratedDetector, RawScores
from .._errors import OcadConfigError
from .._metrics import MetricKind, MetricSpec
from .._view import DetectorOutput, DetectorView

__all__ = ["ChangepointDetector", "pelt", "pelt_last_change"]

# Version 2: winsorised baseline and CUSUM-only raw scores; tables fitted for
# version 1 (MAD baseline, PELT-boosted raw scores) do not apply.
PARAMS_FORMAT = "ocad.changepoint/2"

# MAD → standard deviation, and mean absolute deviation → standard deviation, for Gaussian data.
_MAD_TO_SIGMA = 1.4826
_SQRT_HALF_PI = math.sqrt(math.pi / 2.0)
# A scale is never below this fraction of the baseline level: a metric that sat at
# exactly one value (MAD 0) on an endpoint and a fleet without a fitted floor would
# otherwise turn one quantisation step into a huge z-score.
_REL_SCALE_FLOOR = 1e-3
_ABS_SCALE_FLOOR = 1e-12


# ---------------------------------------------------------------------------
# PELT
# ---------------------------------------------------------------------------


def _check_pelt_args(penalty: float, min_size: int, jump: int) -> tuple[float, int, int]:
    pen = float(penalty)
    if not pen >= 0.0 or math.isinf(pen):  # also rejects NaN
        raise ValueError(f"pelt: penalty must be a finite number >= 0, got {penalty!r}")
    if int(min_size) < 1 or int(jump) < 1:
        raise ValueError(f"pelt: min_size and jump must be >= 1, got min_size={min_size}, jump={jump}")
    return pen, int(min_size), int(jump)


class _ExactObjective:
    """The objective as ruptures computes it, for the rare candidates in a near-tie.

    ruptures sums a partition's ``cost + penalty`` values from left to right, each
    cost being ``signal[t:s].var(axis=0).sum() * (s - t)``. Redoing exactly that
    arithmetic (O(segment length), so only at ties) reproduces its tie-breaking bit
    for bit, where the O(1) cumulative-sum costs would round differently.
    """

    def __init__(self, signal: np.ndarray, penalty: float, prev: np.ndarray) -> None:
        self._x = signal
        self._pen = penalty
        self._prev = prev  # filled in by pelt() as it goes
        self._best: dict[int, float] = {0: 0.0}

    def cost(self, t: int, s: int) -> float:
        return float(self._x[t:s].var(axis=0).sum() * (s - t))

    def best(self, s: int) -> float:
        """ruptures' value of the optimal partition of ``signal[:s]`` (solved already)."""
        chain = []
        u = s
        while u not in self._best:
            chain.append(u)
            u = int(self._prev[u])
        for u in reversed(chain):
            t = int(self._prev[u])
            self._best[u] = self._best[t] + (self.cost(t, u) + self._pen)
        return self._best[s]

    def value(self, t: int, s: int) -> float:
        """The best partition of ``signal[:t]`` plus the segment ``[t, s)``."""
        return self.best(t) + (self.cost(t, s) + self._pen)


def pelt(signal: np.ndarray, penalty: float, *, min_size: int = 2, jump: int = 1) -> list[int]:
    """Optimal change points in mean under the L2 cost, by PELT.

    Minimises ``sum(cost(segment)) + penalty * n_segments`` where the cost of a
    segment is its sum of squared deviations from its mean (summed over columns for
    a 2-D signal). Segment costs come from cumulative sums, so each is O(1).

    The search, the pruning rule and the tie-breaking (the earliest candidate wins)
    are those of ``ruptures.Pelt(model="l2", min_size=min_size, jump=jump)``, so
    ``pelt(x, pen)`` equals ``rpt.Pelt(model="l2", min_size=2, jump=1).fit(x).predict(pen=pen)``.
    Where two segmentations tie (integer-valued data), ruptures' pick depends on
    its own rounding; those few candidates are re-evaluated with ruptures'
    arithmetic, so the answer is the same there too. Values are taken as float64.

    Parameters
    ----------
    signal:
        ``(n,)`` or ``(n, d)`` finite values. Drop NaNs first (:func:`pelt_last_change`
        does it for you).
    penalty:
        Cost of one more segment, >= 0, in squared signal units: for unit-variance
        noise, ``2 * log(n)`` to ``3 * log(n)`` is the usual range.
    min_size:
        Minimum segment length.
    jump:
        Only every ``jump``-th index can be a change point.

    Returns
    -------
    list[int]
        Sorted end indices (exclusive) of the segments; the last is ``n``.

    Raises
    ------
    ValueError
        On non-finite values, a negative penalty, or fewer than ``min_size`` samples
        (ruptures raises ``BadSegmentationParameters`` there).

    Examples
    --------
    >>> x = np.r_[np.zeros(10), np.full(10, 5.0)] + np.tile([0.1, -0.1], 10)
    >>> pelt(x, penalty=3.0)
    [10, 20]
    """
    pen, min_size, jump = _check_pelt_args(penalty, min_size, jump)
    x = np.asarray(signal, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.ndim != 2:
        raise ValueError(f"pelt: signal must be 1-D or 2-D, got shape {np.shape(signal)}")
    n = x.shape[0]
    if n < min_size:
        raise ValueError(f"pelt: {n} samples cannot form one segment of min_size={min_size}")
    if not np.all(np.isfinite(x)):
        raise ValueError("pelt: signal has NaN or infinite values; drop them first")

    # Centring first keeps S2 - S1^2/len well conditioned (no cancellation of a
    # large level against itself).
    xc = x - x.mean(axis=0)
    c1 = np.zeros((n + 1, x.shape[1]))
    c2 = np.zeros((n + 1, x.shape[1]))
    np.cumsum(xc, axis=0, out=c1[1:])
    np.cumsum(xc * xc, axis=0, out=c2[1:])
    # Every optimum is <= cost(whole signal) + penalty, so rounding errors of the
    # cumulative sums stay far below this; two candidates closer than it are a tie.
    tol = 1e-9 * (float(c2[n].sum()) + pen) + 1e-300

    best = np.zeros(n + 1)  # best[s]: optimal penalised cost of signal[:s]
    prev = np.zeros(n + 1, dtype=np.int64)  # start of the last segment of that optimum
    solved = np.zeros(n + 1, dtype=bool)
    solved[0] = True
    exact = _ExactObjective(x, pen, prev)
    admissible: list[int] = []
    ends = [k for k in range(0, n, jump) if k >= min_size] + [n]
    for s in ends:
        # As ruptures: the newest admissible start is the last multiple of jump that
        # leaves min_size samples; starts with no solved prefix (0 < t < min_size)
        # are skipped and fall out of the set.
        admissible.append(((s - min_size) // jump) * jump)
        cand = np.array([t for t in admissible if t >= 0 and solved[t]], dtype=np.int64)
        if cand.size == 0:  # pragma: no cover - unreachable for valid arguments
            raise ValueError(f"pelt: no admissible segmentation ends at {s}")
        length = (s - cand)[:, None]
        s1 = c1[s] - c1[cand]
        seg = np.maximum(np.sum(c2[s] - c2[cand] - s1 * s1 / length, axis=1), 0.0)
        vals = best[cand] + (seg + pen)
        j = int(np.argmin(vals))  # the first minimum, as Python's min() in ruptures
        near = np.flatnonzero(vals <= vals[j] + tol)
        if near.size > 1:
            # A tie (common with integer-valued data): ruptures' choice depends on
            # the rounding of its own arithmetic, so redo it for the tied candidates.
            j = int(near[int(np.argmin([exact.value(int(cand[i]), s) for i in near]))])
        best[s] = vals[j]
        prev[s] = cand[j]
        solved[s] = True
        # Pruning (Killick et al. with K = 0): a start that is already worse than the
        # optimum by more than one penalty can never become optimal again.
        limit = best[s] + pen
        keep = vals <= limit
        for i in np.flatnonzero(np.abs(vals - limit) <= tol):  # at the edge: as ruptures
            keep[i] = exact.value(int(cand[i]), s) <= exact.best(s) + pen
        admissible = cand[keep].tolist()

    bkps = [n]
    t = int(prev[n])
    while t > 0:
        bkps.append(t)
        t = int(prev[t])
    return bkps[::-1]


def pelt_last_change(
    values: np.ndarray, penalty: float, *, min_size: int = 2, exact_ties: bool = False
) -> np.ndarray:
    """Start of the last segment found by :func:`pelt` in each row of ``values``.

    Vectorised over rows (one pass over the W time steps, every row at once), so
    it is cheap for windows of W <= 64 even for thousands of rows. The decisions are
    those of ``pelt(row, penalty, min_size=min_size, jump=1)`` except where two
    segmentations tie exactly (integer-valued data), where either optimum may be
    returned unless ``exact_ties`` is set.

    NaN handling: each row's NaNs (and infinities) are dropped, the remaining
    samples taken as consecutive, before the search; the answer is mapped back to
    the row's own positions.

    Parameters
    ----------
    values:
        ``(N, W)`` array, one window per row, oldest first.
    penalty:
        As for :func:`pelt`.
    min_size:
        Minimum segment length.
    exact_ties:
        Hand the rows that meet a tie to :func:`pelt`, which breaks ties bit for bit
        as ruptures does. Off by default: with discrete data nearly every row ties,
        and the scalar path is about 100 times slower; both answers are optimal.

    Returns
    -------
    np.ndarray
        ``(N,)`` int64: the index in ``values[i]`` of the first sample after the last
        change point, or ``-1`` where there is no change (one segment) or fewer than
        ``2 * min_size`` valid samples.

    Examples
    --------
    >>> rows = np.array([[0.0, 0.1, -0.1, 0.0, 5.0, 5.1, 4.9, 5.0],
    ...                  [0.0, 0.1, -0.1, 0.0, 0.1, 0.0, -0.1, 0.0]])
    >>> pelt_last_change(rows, penalty=3.0).tolist()
    [4, -1]
    """
    pen, min_size, _ = _check_pelt_args(penalty, min_size, 1)
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"pelt_last_change: values must be 2-D (N, W), got shape {v.shape}")
    n_rows, w = v.shape
    out = np.full(n_rows, -1, dtype=np.int64)
    if n_rows == 0 or w < 2 * min_size:
        return out
    valid = np.isfinite(v)
    length = valid.sum(axis=1)
    # Compact each row: its valid samples first, in order (a stable sort on "is NaN").
    order = np.argsort(~valid, axis=1, kind="stable")
    y = np.take_along_axis(np.where(valid, v, 0.0), order, axis=1)
    filled = np.arange(w)[None, :] < length[:, None]
    mean = np.where(length > 0, y.sum(axis=1) / np.maximum(length, 1), 0.0)
    y = np.where(filled, y - mean[:, None], 0.0)
    c1 = np.zeros((n_rows, w + 1))
    c2 = np.zeros((n_rows, w + 1))
    np.cumsum(y, axis=1, out=c1[:, 1:])
    np.cumsum(y * y, axis=1, out=c2[:, 1:])

    # The PELT recursion of `pelt` with the admissible set as a mask: every row runs
    # the same time steps. A row's answer at its own length only depends on its
    # first `length` samples, so the padding after it does not matter.
    best = np.zeros((n_rows, w + 1))
    prev = np.zeros((n_rows, w + 1), dtype=np.int64)
    admissible = np.zeros((n_rows, w + 1), dtype=bool)
    admissible[:, 0] = True
    rows = np.arange(n_rows)
    tol = (1e-9 * (c2[rows, length] + pen) + 1e-300)[:, None]  # as in pelt()
    tied = np.zeros(n_rows, dtype=bool)
    for s in range(min_size, w + 1):
        newest = s - min_size
        if newest >= min_size:
            admissible[:, newest] = True
        m = newest + 1
        seg_len = (s - np.arange(m))[None, :]
        s1 = c1[:, s, None] - c1[:, :m]
        seg = np.maximum(c2[:, s, None] - c2[:, :m] - s1 * s1 / seg_len, 0.0)
        vals = np.where(admissible[:, :m], best[:, :m] + (seg + pen), np.inf)
        j = np.argmin(vals, axis=1)
        best[:, s] = vals[rows, j]
        prev[:, s] = j
        limit = best[:, s, None] + pen
        admissible[:, :m] &= vals <= limit
        if exact_ties:
            near = np.sum(vals <= best[:, s, None] + tol, axis=1) > 1
            edge = np.any(np.abs(vals - limit) <= tol, axis=1)
            tied |= (near | edge) & (s <= length)

    ok = length >= 2 * min_size
    last = prev[rows, np.minimum(length, w)]
    # Rows that met a tie go through pelt(), which breaks ties as ruptures does.
    for i in np.flatnonzero(tied & ok):
        bkps = pelt(v[i, valid[i]], pen, min_size=min_size)
        last[i] = bkps[-2] if len(bkps) > 1 else 0
    found = ok & (last > 0)
    out[found] = order[found, last[found]]
    return out


# ---------------------------------------------------------------------------
# The detector
# ---------------------------------------------------------------------------


def _nanmedian_last(a: np.ndarray) -> np.ndarray:
    """Median over the last axis ignoring NaN, vectorised (NaN where a slice is all NaN).

    ``np.nanmedian`` falls back to slow paths for NaN-bearing inputs; sorting puts
    NaN last, so the median is read at positions given by each slice's count.
    """
    srt = np.sort(a, axis=-1)
    cnt = np.sum(~np.isnan(a), axis=-1, keepdims=True)
    lo = np.take_along_axis(srt, np.maximum((cnt - 1) // 2, 0), axis=-1)
    hi = np.take_along_axis(srt, cnt // 2, axis=-1)
    med = 0.5 * (lo + hi)
    return np.where(cnt > 0, med, np.nan)[..., 0]


_ALL = slice(None)
# Values (endpoints x metrics x window) per block of ChangepointDetector.raw.
_BLOCK_VALUES = 1 << 17


def _median_sorted(srt: np.ndarray, cnt: np.ndarray, full: bool) -> np.ndarray:
    """Median over the last axis of rows sorted with NaN last, ``cnt`` valid values each.

    NaN where a row has no valid value; ``full``: every row is complete (fixed positions).
    """
    length = srt.shape[-1]
    if full:
        return 0.5 * (srt[..., (length - 1) // 2] + srt[..., length // 2])
    flat = srt.reshape(-1, length)
    c = cnt.reshape(-1)
    r = np.arange(flat.shape[0])
    med = 0.5 * (flat[r, np.maximum((c - 1) // 2, 0)] + flat[r, c // 2 if length else 0])
    return np.where(c > 0, med, np.nan).reshape(cnt.shape)


def _masked_mean(a: np.ndarray, mask: np.ndarray, cnt: np.ndarray, full: bool) -> np.ndarray:
    """:func:`_row_mean` with the mask's counts known (``full``: the mask is all True)."""
    if full:
        return a.sum(axis=-1) / max(a.shape[-1], 1) if cnt.size else a.sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, np.where(mask, a, 0.0).sum(axis=-1) / np.maximum(cnt, 1), np.nan)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _positive(name: str) -> Any:
    def check(inst: Any, attr: Any, value: float) -> None:
        if not (_is_real(value) and value > 0):
            raise OcadConfigError(f"detectors.changepoint.{name} = {value!r}: must be a finite number > 0")

    return check


def _check_window(inst: Any, attr: Any, value: int) -> None:
    if not _is_int(value) or value < 6:
        raise OcadConfigError(f"detectors.changepoint.window = {value!r}: must be an integer >= 6")


def _check_baseline(inst: ChangepointDetector, attr: Any, value: int | None) -> None:
    if value is None:
        return
    if not _is_int(value) or not 3 <= value <= inst.window - 2:
        raise OcadConfigError(
            f"detectors.changepoint.baseline_window = {value!r}: must be an integer in "
            f"[3, window - 2] = [3, {inst.window - 2}] (or unset for window // 2)"
        )


def _check_k(inst: Any, attr: Any, value: float) -> None:
    if not (_is_real(value) and value >= 0):
        raise OcadConfigError(f"detectors.changepoint.k = {value!r}: must be a finite number >= 0")


def _check_penalty(inst: Any, attr: Any, value: float | None) -> None:
    if value is not None:
        _positive("penalty")(inst, attr, value)


def _check_level(inst: Any, attr: Any, value: float) -> None:
    if not (_is_real(value) and 0 < value <= 1):
        raise OcadConfigError(f"detectors.changepoint.pelt_level = {value!r}: must be in (0, 1]")


def _check_lower(inst: ChangepointDetector, attr: Any, value: tuple[str, ...]) -> None:
    unknown = sorted(set(value) - set(inst.metrics))
    if unknown:
        raise OcadConfigError(
            f"detectors.changepoint.lower_is_worse names {unknown}, which are not in metrics "
            f"{list(inst.metrics)}"
        )


def _str_tuple(v: Iterable[str]) -> tuple[str, ...]:
    if isinstance(v, str):  # a lone name, not its characters
        return (v,)
    return tuple(str(m) for m in v)


def _row_mean(a: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Mean over the last axis of ``a`` where ``mask``; NaN where the mask is empty."""
    cnt = mask.sum(axis=-1)
    total = np.where(mask, a, 0.0).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(cnt > 0, total / np.maximum(cnt, 1), np.nan)


@attrs.define
class ChangepointDetector(CalibratedDetector):
    """Sustained shifts and drifts of gauge metrics (kind ``"drift"``).

    For each metric and endpoint, on the last ``window`` samples (oldest first):

    1. **Baseline.** The oldest ``baseline_window`` samples give a level and a
       scale. Both are winsorised at 3 robust sigmas (MAD x 1.4826) around the
       median: the level is the mean of the winsorised samples and the scale
       1.2533 x their mean absolute deviation. They resist a few outliers like the
       median and MAD do, but are about twice as efficient on 16 samples, and the
       noise of a 16-sample baseline is what dominates the CUSUM's false alarms: on
       synthetic Gaussian fleets this raised the detection of a 2-sigma shift over
       the last third of the window from 65 % to 84 % at the same false-alarm rate.
       The scale is at least ``scale_floor_[metric]`` (fitted: a fraction of the
       fleet's typical scale), so an endpoint that happened to be flat does not
       turn tiny wiggles into huge z-scores.
    2. **CUSUM.** ``z = (x - level) / scale``, sign flipped for ``lower_is_worse``
       metrics, clipped to ``±clip``: one spike is the spike detector's evidence,
       and as an alert needs two kinds of evidence, the drift detector must not
       count it again. A one-sided CUSUM ``S = max(0, S + z - k)`` runs over the
       recent samples; the raw score is the final ``S`` (robust sigmas accumulated
       beyond ``k``), high while a shift or a ramp lasts and decaying once it is
       over. Its null distribution hardly depends on how many recent samples
       there are, so it is not normalised by their number.
    3. **PELT for the evidence.** In :meth:`score`, only for the (endpoint, metric)
       pairs whose calibrated score reaches ``pelt_level`` (about 1 % of normal
       ones, plus the anomalous), :func:`pelt_last_change` finds the last mean
       shift of the standardised window. When the last segment is worse than what
       came before it, the evidence becomes ``expected`` = mean before the change,
       ``observed`` = mean after it, which measures a step better than the
       window halves do. PELT does not change the score: letting its two-sample
       statistic raise the raw score made the null tail heavier (the 0.999
       quantile of the raw score went from 18 to 34) and halved the detection of
       2-sigma shifts, while the CUSUM already peaks on the same segments.

    Evidence otherwise: ``observed`` is the mean of the recent samples and
    ``expected`` the baseline level, in the metric's unit. Time is counted in
    samples, not seconds (the window store holds one sample per probe interval);
    a slope term adds nothing that the CUSUM does not already see in a ramp.

    NaN (cannot judge): a metric the endpoint does not report; fewer than
    ``window // 2`` valid samples in the window, fewer than 3 in the baseline or 2
    in the recent part.

    Parameters
    ----------
    metrics:
        Gauge metrics (:attr:`MetricKind.GAUGE`) to watch. :meth:`from_specs` picks
        them, and their directions, from metric specs.
    window:
        Samples used (the last ``window`` of the view), >= 6.
    baseline_window:
        The oldest samples of the window that form the baseline; default
        ``window // 2``.
    k:
        CUSUM slack in robust sigmas: drifts smaller than ``k`` are ignored; the CUSUM
        is most sensitive to shifts of about ``2 k``.
    penalty:
        PELT penalty on the standardised window; default ``3 * log(window)``, a little
        above BIC's ``2 log n``: the endpoints it runs on were picked for a high
        CUSUM, so a spurious split is likelier among them than in general.
    pelt_level:
        Calibrated metric score at or above which PELT locates the change.
    clip:
        Standardised samples are clipped to ``[-clip, clip]``.
    floor_fraction:
        ``scale_floor_`` = this fraction x the median baseline scale of the endpoints
        seen by :meth:`fit`.
    lower_is_worse:
        Metrics (among ``metrics``) whose fault is a *decrease* (a gauge whose
        :attr:`MetricSpec.higher_is_worse` is False): they get a lower CUSUM.

    Fitted attributes: ``scale_floor_`` (metric → scale floor, in the metric's
    unit), ``calibrations_`` and ``overall_`` (see :class:`CalibratedDetector`).

    Examples
    --------
    >>> det = ChangepointDetector(("udp_echo_rtt_ms",), window=32)
    >>> det.name, det.kind, det.baseline
    ('changepoint', 'drift', 16)
    """

    metrics: tuple[str, ...] = attrs.field(
        default=("udp_echo_rtt_ms", "ecpri_delay_us", "lbm_rtt_ms"), converter=_str_tuple
    )
    window: int = attrs.field(default=32, kw_only=True, validator=_check_window)
    baseline_window: int | None = attrs.field(default=None, kw_only=True, validator=_check_baseline)
    k: float = attrs.field(default=0.5, kw_only=True, validator=_check_k)
    penalty: float | None = attrs.field(default=None, kw_only=True, validator=_check_penalty)
    pelt_level: float = attrs.field(default=0.99, kw_only=True, validator=_check_level)
    clip: float = attrs.field(default=3.0, kw_only=True, validator=_positive("clip"))
    floor_fraction: float = attrs.field(default=0.25, kw_only=True, validator=_positive("floor_fraction"))
    lower_is_worse: tuple[str, ...] = attrs.field(
        default=(), kw_only=True, converter=_str_tuple, validator=_check_lower
    )
    #: Metrics with no declared bad direction: both CUSUMs run and the larger counts.
    two_sided: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=_str_tuple)
    name: str = attrs.field(default="changepoint", kw_only=True)
    kind: str = attrs.field(default="drift", kw_only=True)
    scale_floor_: dict[str, float] = attrs.field(factory=dict, init=False)
    calibrations_: dict[str, Calibration] = attrs.field(factory=dict, init=False)
    overall_: Calibration | None = attrs.field(default=None, init=False)

    @classmethod
    def from_specs(cls, specs: Iterable[MetricSpec], **options: Any) -> ChangepointDetector:
        """A detector on the gauge metrics among ``specs`` (e.g. a :class:`MetricRegistry`).

        Directions come from :attr:`MetricSpec.higher_is_worse`; ``options`` are the
        other constructor arguments (``window``, ``k``, ...).

        >>> from ocad.core._metrics import ORAN_METRICS
        >>> ChangepointDetector.from_specs(ORAN_METRICS).metrics
        ('udp_echo_rtt_ms', 'ecpri_delay_us', 'lbm_rtt_ms')
        """
        gauges = [s for s in specs if s.kind == MetricKind.GAUGE]
        return cls(
            tuple(s.name for s in gauges),
            lower_is_worse=tuple(s.name for s in gauges if s.higher_is_worse is False),
            two_sided=tuple(s.name for s in gauges if s.higher_is_worse is None),
            **options,
        )

    # -- configuration ------------------------------------------------------
    @property
    def baseline(self) -> int:
        """Length of the baseline part of the window."""
        return self.baseline_window if self.baseline_window is not None else self.window // 2

    @property
    def pelt_penalty(self) -> float:
        """The PELT penalty in use (``penalty`` or its default ``3 log(window)``)."""
        return float(self.penalty) if self.penalty is not None else 3.0 * math.log(self.window)

    def config(self) -> dict[str, Any]:
        """The constructor arguments, JSON-ready."""
        return {
            "metrics": list(self.metrics), "window": self.window,
            "baseline_window": self.baseline_window, "k": self.k, "penalty": self.penalty,
            "pelt_level": self.pelt_level, "clip": self.clip, "floor_fraction": self.floor_fraction,
            "lower_is_worse": list(self.lower_is_worse), "two_sided": list(self.two_sided),
            "name": self.name, "kind": self.kind,
        }

    # -- the window and its baseline ------------------------------------------
    def _window(self, view: DetectorView, rows: slice | np.ndarray = _ALL) -> np.ndarray:
        """(n, K, window) float64 of the configured metrics for ``rows`` of the view.

        NaN where not reported. Time is the last axis, so the reductions over it run on
        contiguous memory (and a window from the WindowStore is read without a transpose).
        """
        w = self.window
        vals = view.values[rows]  # (n, W, M): a view for a slice
        n = vals.shape[0]
        pairs = [(k, j) for k, j in enumerate(view.metric_index(m) for m in self.metrics) if j is not None]
        ks = [k for k, _ in pairs]
        js = [j for _, j in pairs]
        ww = min(w, vals.shape[1])  # a view shorter than the window: the older part is not filled yet
        src = np.transpose(vals[:, -ww:], (0, 2, 1))[:, js]  # (n, K', ww)
        if len(ks) == len(self.metrics) and ww == w:
            x = src.astype(np.float64)
        else:
            x = np.full((n, len(self.metrics), w), np.nan)
            x[:, ks, w - ww:] = src
        caps = view.capabilities[rows][:, js]
        if not caps.all():
            x[:, ks] = np.where(caps[..., None], x[:, ks], np.nan)
        return x

    def _baseline(self, x: np.ndarray, floor: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per (endpoint, metric): baseline level, spread (unfloored) and the scale in use."""
        level, spread, scale, _ = self._baseline_stats(x, floor)
        return level, spread, scale

    def _baseline_stats(self, x: np.ndarray, floor: np.ndarray
                        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """:meth:`_baseline` plus the number of valid baseline samples."""
        base = x[..., : self.baseline]
        valid = base == base  # not NaN
        cnt = valid.sum(axis=-1)
        full = bool(cnt.size == 0 or cnt.min() == base.shape[-1])
        med = _median_sorted(np.sort(base, axis=-1), cnt, full)
        dev = np.abs(base - med[..., None])
        mad = _median_sorted(np.sort(dev, axis=-1), cnt, full) * _MAD_TO_SIGMA
        cap = 3.0 * _floored(mad, floor, med)
        spread = _SQRT_HALF_PI * _masked_mean(np.minimum(dev, cap[..., None]), valid, cnt, full)
        level = _masked_mean(np.minimum(np.maximum(base, (med - cap)[..., None]), (med + cap)[..., None]),
                             valid, cnt, full)
        return level, spread, _floored(spread, floor, level), cnt

    def _signs_floors(self) -> tuple[np.ndarray, np.ndarray]:
        floor = np.array([self.scale_floor_.get(m, 0.0) for m in self.metrics])
        sign = np.array([-1.0 if m in self.lower_is_worse else 1.0 for m in self.metrics])
        return sign, floor

    def _standardise(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Baseline level and clipped, direction-signed z-scores of the whole window."""
        sign, floor = self._signs_floors()
        level, _, scale = self._baseline(x, floor)
        with np.errstate(invalid="ignore"):
            z = (x - level[..., None]) * (sign[:, None] / scale[..., None])
            np.clip(z, -self.clip, self.clip, out=z)
        return level, z

    # -- scoring ----------------------------------------------------------------
    def raw(self, view: DetectorView) -> RawScores:
        """Raw CUSUM scores (robust sigmas) and window-half evidence; see the class doc."""
        n, n_metrics, w, b = view.n, len(self.metrics), self.window, self.baseline
        raw = np.empty((n, n_metrics))
        observed = np.empty((n, n_metrics))
        expected = np.empty((n, n_metrics))
        sign, floor = self._signs_floors()
        # Blocks of endpoints small enough for the CPU cache (see FeatureEngine.compute).
        step = max(1, _BLOCK_VALUES // (n_metrics * w))
        with np.errstate(invalid="ignore", divide="ignore"):
            for lo in range(0, max(n, 1), step):
                rows = slice(lo, min(n, lo + step))
                x = self._window(view, rows)
                level, _, scale, n_base = self._baseline_stats(x, floor)
                recent = x[..., b:]
                z = (recent - level[..., None]) * (sign / scale)[..., None]
                np.minimum(np.maximum(z, -self.clip, out=z), self.clip, out=z)
                # One-sided CUSUM over the recent samples, S = max(0, S + z - k), in its closed
                # (Lindley) form; a missing sample leaves S as it is.
                valid = recent == recent
                y = np.cumsum(np.where(valid, z - self.k, 0.0), axis=-1)
                cusum = y[..., -1] - np.minimum(0.0, y.min(axis=-1))
                if self.two_sided:
                    both = np.array([m in self.two_sided for m in self.metrics])
                    y2 = np.cumsum(np.where(valid, -z - self.k, 0.0), axis=-1)
                    cusum = np.where(both, np.maximum(cusum, y2[..., -1] - np.minimum(0.0, y2.min(axis=-1))), cusum)
                n_recent = valid.sum(axis=-1)
                ok = (n_base + n_recent >= w // 2) & (n_base >= 3) & (n_recent >= 2)
                obs = np.where(valid, recent, 0.0).sum(axis=-1) / np.maximum(n_recent, 1)
                raw[rows] = np.where(ok, cusum, np.nan)
                observed[rows] = np.where(ok, obs, np.nan)
                expected[rows] = np.where(ok, level, np.nan)
        return RawScores(metrics=self.metrics, raw=raw, observed=observed, expected=expected)

    def score(self, view: DetectorView) -> DetectorOutput:
        """Calibrated scores (see :class:`CalibratedDetector`), with PELT evidence for the high ones."""
        out = super().score(view)
        ms = out.metric_scores
        if ms is None or ms.size == 0:
            return out
        with np.errstate(invalid="ignore"):
            e, m = np.nonzero(ms >= self.pelt_level)
        if e.size == 0:
            return out
        # Standardise again, for the few selected endpoints only: keeping z from raw()
        # would mean another (N, W, K) array alive for every tick.
        rows, pos = np.unique(e, return_inverse=True)
        x = self._window(view.take(rows))
        _, z = self._standardise(x)
        xs, zs = x[pos, m], z[pos, m]  # (P, window)
        change = pelt_last_change(zs, self.pelt_penalty, min_size=2)
        valid = ~np.isnan(zs)
        after = (np.arange(zs.shape[1])[None, :] >= change[:, None]) & valid
        before = valid & ~after
        worse = (change >= 0) & (_row_mean(zs, after) > _row_mean(zs, before))
        observed = np.array(out.observed, dtype=np.float64, copy=True)
        expected = np.array(out.expected, dtype=np.float64, copy=True)
        observed[e[worse], m[worse]] = _row_mean(xs[worse], after[worse])
        expected[e[worse], m[worse]] = _row_mean(xs[worse], before[worse])
        return DetectorOutput(scores=out.scores, metrics=out.metrics, metric_scores=ms,
                              observed=observed, expected=expected)

    def fallback(self, metric: str) -> Calibration:
        """Calibration for a metric without a fitted table: an exponential tail.

        For a standardised sequence with mean 0 and unit variance, the CUSUM with
        slack ``k`` has a stationary upper tail ``P(S > s) ~ exp(-2 k s)``. The
        baseline's own estimation error makes the real tail heavier, so the rate is
        halved: ``P(S > s) = exp(-k s)``. An unfitted detector therefore gives
        usable scores in [0, 1], but only :meth:`fit` makes them calibrated.
        """
        return _exp_tail_calibration(max(self.k, 0.05))

    # -- fitting ----------------------------------------------------------------
    def fit(self, views: Iterable[DetectorView]) -> ChangepointDetector:
        """Fit ``scale_floor_``, then the calibration tables, on views of normal data.

        The floor of each metric is ``floor_fraction`` x the median, over the
        endpoints (of all views) whose baseline is not flat, of the baseline
        spread; a metric flat everywhere gets no floor. Raises ``ValueError`` on no
        views or too little data (see :meth:`CalibratedDetector.fit`).
        """
        views = list(views)
        no_floor = np.zeros(len(self.metrics))
        spreads = [self._baseline(self._window(v), no_floor)[1] for v in views]
        floors: dict[str, float] = {}
        if spreads:
            stacked = np.concatenate(spreads, axis=0)
            for k, metric in enumerate(self.metrics):
                col = stacked[:, k]
                col = col[np.isfinite(col) & (col > 0)]
                if col.size:
                    floors[metric] = float(self.floor_fraction * np.median(col))
        # The floors change the raw scores, so they are set before the calibration sees them.
        self.scale_floor_ = floors
        super().fit(views)
        return self

    # -- persistence --------------------------------------------------------------
    def params_to_dict(self) -> dict[str, Any]:
        """Configuration and fitted parameters, JSON-ready (no pickle)."""
        return {
            "format": PARAMS_FORMAT,
            "config": self.config(),
            "scale_floor": dict(self.scale_floor_),
            "calibration": self.calibration_to_dict(),
        }

    def load_params(self, d: Mapping[str, Any]) -> ChangepointDetector:
        """Load fitted parameters from :meth:`params_to_dict` output; returns ``self``.

        Raises :class:`OcadConfigError` when they were fitted with another
        configuration (window, metrics, k, ...): the calibration would not apply.
        """
        if d.get("format") != PARAMS_FORMAT:
            raise OcadConfigError(
                f"changepoint params have format {d.get('format')!r}, expected {PARAMS_FORMAT!r}"
            )
        theirs = dict(d.get("config", {}))
        theirs.setdefault("two_sided", [])  # params from before two-sided metrics existed
        mine = self.config()
        # Another metric set is fine (a plugin added a gauge after calibration): the tables of
        # the shared metrics apply, a new metric uses the fallback table until refitted.
        shared = set(theirs.get("metrics", [])) & set(mine["metrics"])

        def same(key: str) -> bool:
            if key in ("lower_is_worse", "two_sided"):  # directions matter for the shared metrics only
                return {m for m in theirs.get(key, []) if m in shared} == {m for m in mine[key] if m in shared}
            return bool(theirs.get(key) == mine[key])

        differ = sorted(key for key in mine if key not in ("name", "kind", "metrics") and not same(key))
        if differ:
            raise OcadConfigError(
                "changepoint params were fitted with a different configuration: "
                + ", ".join(f"{key}={theirs.get(key)!r} (this detector: {mine[key]!r})" for key in differ)
                + "; build the detector with ChangepointDetector.from_params() or refit it"
            )
        self.scale_floor_ = {str(m): float(v) for m, v in d.get("scale_floor", {}).items()}
        self.load_calibration(d.get("calibration", {}))
        return self

    @classmethod
    def from_params(cls, d: Mapping[str, Any]) -> ChangepointDetector:
        """A fitted detector rebuilt from :meth:`params_to_dict` output."""
        cfg = dict(d.get("config", {}))
        try:
            det = cls(cfg.pop("metrics"), **cfg)
        except (KeyError, TypeError) as exc:
            raise OcadConfigError(f"changepoint params have an invalid config: {exc}") from exc
        return det.load_params(d)


@functools.lru_cache(maxsize=16)
def _exp_tail_calibration(rate: float) -> Calibration:
    """Built once per rate: ``fallback`` runs on every tick for metrics without a table."""
    probs = (0.0, 0.5, 0.9, 0.99, 0.999, 0.9999)
    quantiles = tuple(-math.log(1.0 - p) / rate for p in probs)
    return Calibration(probs=probs, quantiles=quantiles, n=0, tail_scale=1.0 / rate)


def _floored(scale: np.ndarray, floor: np.ndarray, level: np.ndarray) -> np.ndarray:
    """``scale`` raised to the metric's floor and to a tiny fraction of the level."""
    out = np.maximum(scale, floor[None, :])
    out = np.maximum(out, _REL_SCALE_FLOOR * np.abs(level))
    return np.maximum(out, _ABS_SCALE_FLOOR)  # NaN stays NaN
