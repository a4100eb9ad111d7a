"""Scoring alerts against labelled faults (used by ``ocad demo`` and ``ocad evaluate``).

Event level
-----------
Matching rules:

* an alert *overlaps* a labelled fault event of the same endpoint when its open
  interval ``[opened_ts, resolved_ts or end of data]`` intersects
  ``[start_ts, end_ts + grace_s]`` (the grace covers the hold-down after the fault);
* a fault event is *detected* when at least one alert overlaps it; each event
  counts once however many alerts overlap it;
* an alert that overlaps no event is a *false alert*;
* time to detect = first overlapping alert's ``opened_ts - start_ts`` (0 when the
  alert was already open at the start);
* lead time (faults with a hard-failure point, i.e. drift) =
  ``failure_ts - opened_ts`` of the first overlapping alert; positive = before the failure;
* an *optional* event (``optional=True``, e.g. a planned level shift of the generalization
  families) may be alerted on once but need not be: the first alert overlapping it, not
  already matched to a fault, that has resolved by ``quiet_by_ts + grace_s`` is a true
  alert; any other alert there (a second one, or one still open) stays false. Optional
  events are left out of event recall; their per-type row counts how many were alerted.

Point level
-----------
A sample ``(endpoint, ts)`` is *predicted anomalous* while an alert of that endpoint
is open (``opened_ts <= ts < resolved_ts``, see :func:`alert_open_mask`) and
*actually anomalous* when it is labelled with a fault. :func:`point_metrics` counts
the confusion matrix; :func:`roc_auc` and :func:`pr_auc` rank the composite scores.
All of it is plain numpy: no scikit-learn in an inference install.

Forecasts
---------
:func:`forecast_errors` gives MSE, MAE, RMSE and R² of a forecast; run it on the
model's forecast and on the naive last-value forecast to see whether the model helps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs
import numpy as np

from ..pipeline._alerts import Alert, AlertEvent

__all__ = [
    "EventMatch",
    "LabelledEvent",
    "alert_open_mask",
    "alerts_from_events",
    "event_f1",
    "events_from_labels",
    "forecast_errors",
    "match_events",
    "point_metrics",
    "pr_auc",
    "roc_auc",
    "summarize_matches",
]


def alerts_from_events(events: Iterable[AlertEvent]) -> list[Alert]:
    """The final state of every alert in an event stream (still-open ones have ``resolved_ts=None``)."""
    last: dict[str, Alert] = {}
    for ev in events:
        last[ev.alert.alert_id] = ev.alert
    return sorted(last.values(), key=lambda a: (a.opened_ts, a.endpoint_id))


@attrs.frozen
class EventMatch:
    """One labelled fault event and the alert that detected it (if any)."""

    endpoint_id: str
    fault_type: str
    start_ts: float
    end_ts: float
    failure_ts: float | None
    detected: bool
    ttd_s: float | None
    lead_time_s: float | None
    alert_id: str | None
    optional: bool = False


def match_events(alerts: Sequence[Alert], events: Sequence[Any], *, end_ts: float,
                 grace_s: float = 120.0) -> tuple[list[EventMatch], list[Alert]]:
    """Match alerts to fault events; returns (one EventMatch per event, the false alerts).

    ``events`` are objects with ``endpoint_id, fault_type, start_ts, end_ts, failure_ts``
    (e.g. :class:`ocad.core.synthetic.FaultEvent`).
    """
    by_ep: dict[str, list[Alert]] = defaultdict(list)
    for a in alerts:
        by_ep[a.endpoint_id].append(a)
    used: set[str] = set()
    matches: list[EventMatch | None] = []
    optional = []
    for ev in events:
        if getattr(ev, "optional", False):
            optional.append((len(matches), ev))
            matches.append(None)
            continue
        first = None
        for a in by_ep.get(ev.endpoint_id, ()):
            a_end = a.resolved_ts if a.resolved_ts is not None else end_ts
            if a.opened_ts <= ev.end_ts + grace_s and a_end >= ev.start_ts:
                used.add(a.alert_id)
                if first is None or a.opened_ts < first.opened_ts:
                    first = a
        matches.append(_match(ev, first))
    # Optional events after the faults: an alert that also covers a fault stays a true alert.
    for k, ev in optional:
        quiet = ev.end_ts if getattr(ev, "quiet_by_ts", None) is None else ev.quiet_by_ts
        first = None
        for a in sorted(by_ep.get(ev.endpoint_id, ()), key=lambda a: a.opened_ts):
            a_end = a.resolved_ts if a.resolved_ts is not None else end_ts
            if a.alert_id in used or not (a.opened_ts <= ev.end_ts + grace_s and a_end >= ev.start_ts):
                continue
            if a.resolved_ts is not None and a.resolved_ts <= quiet + grace_s:
                used.add(a.alert_id)
                first = a
            break  # only the first candidate may be accepted: alert once at most
        matches[k] = attrs.evolve(_match(ev, first), optional=True)
    false_alerts = [a for a in alerts if a.alert_id not in used]
    return [m for m in matches if m is not None], false_alerts


def _match(ev: Any, first: Alert | None) -> EventMatch:
    if first is None:
        return EventMatch(ev.endpoint_id, ev.fault_type, ev.start_ts, ev.end_ts, ev.failure_ts,
                          False, None, None, None)
    ttd = max(0.0, first.opened_ts - ev.start_ts)
    lead = (ev.failure_ts - first.opened_ts) if ev.failure_ts is not None else None
    return EventMatch(ev.endpoint_id, ev.fault_type, ev.start_ts, ev.end_ts, ev.failure_ts,
                      True, ttd, lead, first.alert_id)


def summarize_matches(matches: Sequence[EventMatch], false_alerts: Sequence[Alert], n_alerts: int,
                      endpoint_days: float) -> dict[str, Any]:
    """Event recall / precision, per-type detection, TTD, lead time, false alerts per endpoint-day.

    Optional events (:class:`EventMatch` ``optional``) get a per-type row (``optional: True``,
    ``detected`` = alerted once, recall None) and stay out of the overall counts.
    """
    per_type: dict[str, dict[str, Any]] = {}
    for ft in sorted({m.fault_type for m in matches}):
        ms = [m for m in matches if m.fault_type == ft]
        det = [m for m in ms if m.detected]
        ttd = [m.ttd_s for m in det if m.ttd_s is not None]
        lead = [m.lead_time_s for m in det if m.lead_time_s is not None]
        opt = all(m.optional for m in ms)
        per_type[ft] = {
            "events": len(ms), "detected": len(det),
            "recall": None if opt else (len(det) / len(ms) if ms else float("nan")),
            "mttd_s": float(np.mean(ttd)) if ttd else None,
            "lead_time_p50_s": float(np.median(lead)) if lead else None,
        }
        if opt:
            per_type[ft]["optional"] = True
    matches = [m for m in matches if not m.optional]
    n_det = sum(m.detected for m in matches)
    ttd_all = [m.ttd_s for m in matches if m.detected and m.ttd_s is not None]
    lead_all = [m.lead_time_s for m in matches if m.detected and m.lead_time_s is not None]
    tp_alerts = n_alerts - len(false_alerts)
    return {
        "events": len(matches),
        "events_detected": n_det,
        "event_recall": n_det / len(matches) if matches else float("nan"),
        "alerts": n_alerts,
        "false_alerts": len(false_alerts),
        "event_precision": tp_alerts / n_alerts if n_alerts else float("nan"),
        "mttd_s": float(np.mean(ttd_all)) if ttd_all else None,
        "lead_time_p50_s": float(np.median(lead_all)) if lead_all else None,
        "false_alerts_per_endpoint_day": len(false_alerts) / endpoint_days if endpoint_days > 0 else float("nan"),
        "per_fault_type": per_type,
    }


def event_f1(summary: Mapping[str, Any]) -> float:
    """Harmonic mean of ``event_precision`` and ``event_recall`` of a :func:`summarize_matches` result."""
    p, r = summary.get("event_precision"), summary.get("event_recall")
    if p is None or r is None or not np.isfinite(p) or not np.isfinite(r):
        return float("nan")
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


# -- labelled runs → events ------------------------------------------------------
@attrs.frozen
class LabelledEvent:
    """A fault event derived from per-sample labels (a contiguous run of one fault type)."""

    endpoint_id: str
    fault_type: str
    start_ts: float
    end_ts: float
    failure_ts: float | None = None


def _group_by_endpoint(endpoint_ids: Any, ts: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray]:
    """(unique ids, sample order sorted by (endpoint, ts), bounds of each endpoint in that order)."""
    eps = np.asarray(endpoint_ids, dtype=object).astype(str)
    uniq, inv = np.unique(eps, return_inverse=True)
    order = np.lexsort((ts, inv))
    bounds = np.searchsorted(inv[order], np.arange(len(uniq) + 1))
    return [str(u) for u in uniq], order, bounds


def events_from_labels(endpoint_ids: Any, ts: Any, fault_types: Any,
                       failure_ts: Any = None) -> list[LabelledEvent]:
    """Events from per-sample labels: each maximal run of one non-empty fault type, per endpoint.

    ``fault_types[i]`` is the label of sample ``(endpoint_ids[i], ts[i])``; ``""`` (or None)
    means normal. Runs are taken in each endpoint's time order. ``failure_ts`` (optional,
    per sample, NaN/None where unknown) gives an event its hard-failure time: the first
    known value inside the run.

    >>> [(e.fault_type, e.start_ts, e.end_ts) for e in
    ...  events_from_labels(["a"] * 5, [0, 5, 10, 15, 20], ["", "drift", "drift", "", "spike"])]
    [('drift', 5.0, 10.0), ('spike', 20.0, 20.0)]
    """
    t = np.asarray(ts, dtype=np.float64)
    ft = np.array(["" if f is None else str(f) for f in fault_types], dtype=object)
    fail = None
    if failure_ts is not None:
        fail = np.array([np.nan if v is None or v == "" else float(v) for v in failure_ts], dtype=np.float64)
    if t.size == 0:
        return []
    ids, order, bounds = _group_by_endpoint(endpoint_ids, t)
    out: list[LabelledEvent] = []
    for k, eid in enumerate(ids):
        seg = order[bounds[k]:bounds[k + 1]]
        lab = ft[seg]
        i, n = 0, len(seg)
        while i < n:
            if lab[i] == "":
                i += 1
                continue
            j = i
            while j + 1 < n and lab[j + 1] == lab[i]:
                j += 1
            f = None
            if fail is not None:
                known = fail[seg[i:j + 1]]
                known = known[np.isfinite(known)]
                f = float(known[0]) if known.size else None
            out.append(LabelledEvent(eid, str(lab[i]), float(t[seg[i]]), float(t[seg[j]]), f))
            i = j + 1
    out.sort(key=lambda e: (e.start_ts, e.endpoint_id))
    return out


# -- point metrics ----------------------------------------------------------------
def alert_open_mask(alerts: Sequence[Alert], endpoint_ids: Any, ts: Any) -> np.ndarray:
    """(S,) bool: an alert of the sample's endpoint is open at the sample's time.

    Open means ``opened_ts <= ts < resolved_ts`` (still-open alerts: until the end of the data):
    the alert is open on the sample that opened it and closed on the one that resolved it.
    """
    t = np.asarray(ts, dtype=np.float64)
    if not len(alerts) or t.size == 0:
        return np.zeros(t.shape[0], dtype=bool)
    return _open_mask(alerts, t, _group_by_endpoint(endpoint_ids, t))


def _open_mask(alerts: Sequence[Alert], t: np.ndarray, groups: tuple[list[str], np.ndarray, np.ndarray]
               ) -> np.ndarray:
    """:func:`alert_open_mask` with the samples already grouped (``_group_by_endpoint``), for loops."""
    mask = np.zeros(t.shape[0], dtype=bool)
    ids, order, bounds = groups
    where = {e: k for k, e in enumerate(ids)}
    for a in alerts:
        k = where.get(a.endpoint_id)
        if k is None:
            continue
        seg = order[bounds[k]:bounds[k + 1]]
        st = t[seg]
        lo = int(np.searchsorted(st, a.opened_ts, side="left"))
        hi = len(seg) if a.resolved_ts is None else int(np.searchsorted(st, a.resolved_ts, side="left"))
        mask[seg[lo:hi]] = True
    return mask


def point_metrics(actual: Any, predicted: Any) -> dict[str, Any]:
    """Confusion counts, precision, recall, F1 and false-alarm rate (FP / (FP + TN)) of two bool arrays.

    Undefined ratios (no predicted positives, no actual positives, ...) are NaN.

    >>> point_metrics([1, 1, 0, 0, 0], [1, 0, 1, 0, 0])["f1"]
    0.5
    """
    y = np.asarray(actual, dtype=bool)
    p = np.asarray(predicted, dtype=bool)
    if y.shape != p.shape:
        raise ValueError(f"actual has shape {y.shape}, predicted {p.shape}")
    tp = int(np.count_nonzero(y & p))
    fp = int(np.count_nonzero(~y & p))
    fn = int(np.count_nonzero(y & ~p))
    tn = int(y.size - tp - fp - fn)
    prec = tp / (tp + fp) if tp + fp else float("nan")
    rec = tp / (tp + fn) if tp + fn else float("nan")
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else float("nan")
    far = fp / (fp + tn) if fp + tn else float("nan")
    return {"tp": tp, "fp": fp, "fn": fn, "tn": tn, "precision": prec, "recall": rec, "f1": f1,
            "false_alarm_rate": far}


def _clean_scores(actual: Any, scores: Any) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(actual, dtype=bool).ravel()
    s = np.asarray(scores, dtype=np.float64).ravel()
    if y.shape != s.shape:
        raise ValueError(f"actual has shape {y.shape}, scores {s.shape}")
    return y, s


def roc_auc(actual: Any, scores: Any) -> float:
    """Area under the ROC curve (ties count one half): the Mann-Whitney U statistic over its maximum.

    NaN when ``actual`` holds only one class. Scores must be finite (map NaN first).

    >>> roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.75
    """
    y, s = _clean_scores(actual, scores)
    npos = int(y.sum())
    nneg = y.size - npos
    if npos == 0 or nneg == 0:
        return float("nan")
    _, inv, counts = np.unique(s, return_inverse=True, return_counts=True)
    # Average 1-based rank of each distinct score: ties share the mean of their ranks.
    avg_rank = np.cumsum(counts) - (counts - 1) / 2.0
    ranks = avg_rank[inv]
    u = ranks[y].sum() - npos * (npos + 1) / 2.0
    return float(u / (npos * nneg))


def pr_auc(actual: Any, scores: Any) -> float:
    """Area under the precision-recall curve as *average precision*: ``sum_n (R_n - R_{n-1}) P_n``.

    One step per distinct score threshold, highest first (the step-wise estimate, no
    interpolation; the same definition as scikit-learn's ``average_precision_score``).
    NaN when there is no positive sample.

    >>> pr_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8])
    0.8333333333333333
    """
    y, s = _clean_scores(actual, scores)
    npos = int(y.sum())
    if npos == 0:
        return float("nan")
    order = np.argsort(-s, kind="mergesort")
    ss, ys = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(ss)), ss.size - 1]  # last index of each distinct threshold
    tps = np.cumsum(ys)[last]
    prec = tps / (last + 1.0)
    rec = tps / npos
    return float(np.sum(np.diff(np.r_[0.0, rec]) * prec))


def forecast_errors(observed: Any, forecast: Any) -> dict[str, Any]:
    """MSE, MAE, RMSE and R² (``1 - SSE / SST`` around the mean of ``observed``) over finite pairs.

    >>> forecast_errors([1.0, 2.0, 3.0], [1.0, 2.0, 4.0])["mse"]
    0.3333333333333333
    """
    y = np.asarray(observed, dtype=np.float64).ravel()
    f = np.asarray(forecast, dtype=np.float64).ravel()
    ok = np.isfinite(y) & np.isfinite(f)
    y, f = y[ok], f[ok]
    n = int(y.size)
    if n == 0:
        return {"n": 0, "mse": None, "mae": None, "rmse": None, "r2": None}
    e = y - f
    mse = float(np.mean(e * e))
    sst = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(np.sum(e * e)) / sst if sst > 0 else None
    return {"n": n, "mse": mse, "mae": float(np.mean(np.abs(e))), "rmse": float(np.sqrt(mse)), "r2": r2}
