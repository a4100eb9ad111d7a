"""Event-level scoring of alerts against labelled faults (used by ``ocad demo`` and ``ocad evaluate``).

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
  ``failure_ts - opened_ts`` of the first overlapping alert; positive = before the failure.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
import numpy as np

from ._alerts import Alert, AlertEvent

__all__ = ["EventMatch", "alerts_from_events", "match_events", "summarize_matches"]


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
    matches = []
    for ev in events:
        first = None
        for a in by_ep.get(ev.endpoint_id, ()):
            a_end = a.resolved_ts if a.resolved_ts is not None else end_ts
            if a.opened_ts <= ev.end_ts + grace_s and a_end >= ev.start_ts:
                used.add(a.alert_id)
                if first is None or a.opened_ts < first.opened_ts:
                    first = a
        if first is None:
            matches.append(EventMatch(ev.endpoint_id, ev.fault_type, ev.start_ts, ev.end_ts, ev.failure_ts,
                                      False, None, None, None))
            continue
        ttd = max(0.0, first.opened_ts - ev.start_ts)
        lead = (ev.failure_ts - first.opened_ts) if ev.failure_ts is not None else None
        matches.append(EventMatch(ev.endpoint_id, ev.fault_type, ev.start_ts, ev.end_ts, ev.failure_ts,
                                  True, ttd, lead, first.alert_id))
    false_alerts = [a for a in alerts if a.alert_id not in used]
    return matches, false_alerts


def summarize_matches(matches: Sequence[EventMatch], false_alerts: Sequence[Alert], n_alerts: int,
                      endpoint_days: float) -> dict[str, Any]:
    """Event recall / precision, per-type detection, TTD, lead time, false alerts per endpoint-day."""
    per_type: dict[str, dict[str, Any]] = {}
    for ft in sorted({m.fault_type for m in matches}):
        ms = [m for m in matches if m.fault_type == ft]
        det = [m for m in ms if m.detected]
        ttd = [m.ttd_s for m in det if m.ttd_s is not None]
        lead = [m.lead_time_s for m in det if m.lead_time_s is not None]
        per_type[ft] = {
            "events": len(ms), "detected": len(det), "recall": len(det) / len(ms) if ms else float("nan"),
            "mttd_s": float(np.mean(ttd)) if ttd else None,
            "lead_time_p50_s": float(np.median(lead)) if lead else None,
        }
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
