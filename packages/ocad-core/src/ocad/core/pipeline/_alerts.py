"""AlertPolicy: per-endpoint alert state in *sample time*: open → update → resolve.

Rules, evaluated for each endpoint at each of its samples (never wall-clock, so a
replay or a backfill gives the same alerts as the live run):

* **evidence**: a detector whose score is at least ``evidence_threshold`` gives
  evidence of its *kind* (rule, spike, drift, residual, continuity, concurrency,
  multivariate, ...). Several detectors of one kind count once.
* **open**: at least ``min_kinds`` distinct kinds *and* composite score at least
  ``open_threshold``, on ``confirm_samples`` consecutive samples. One detector
  alone never opens an alert, however sure it is.
* **dedup**: while an alert is open for an endpoint, no second one opens.
* **update**: emitted when severity changes, a new evidence kind appears, or the
  score rose by ``update_delta`` since the last event (at most every
  ``update_min_interval_s``).
* **hold-down / resolve**: the alert stays open while the endpoint is *active*
  (any evidence, or composite at least ``open_threshold``) and resolves once it
  has been inactive for ``hold_down_s`` of sample time. This stops flapping.
* **severity**: ``critical`` when composite at least ``critical_threshold`` or at
  least ``critical_kinds`` kinds agree; back to ``warning`` only when composite
  falls below ``critical_clear`` and fewer kinds agree (hysteresis).
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable, Mapping
from typing import Any

import attrs
import numpy as np

from ._composite import CompositeOutput
from .._errors import OcadConfigError
from .._view import Evidence

__all__ = ["Alert", "AlertEvent", "AlertPolicy", "AlertPolicyConfig"]

_NS = uuid.UUID("6f1c1f4e-6a43-4c55-9d57-0cad0cad0cad")


def _unit(name: str):  # type: ignore[no-untyped-def]
    def check(inst: Any, attr: Any, v: float) -> None:
        if not 0.0 <= v <= 1.0:
            raise OcadConfigError(f"alerts.{name} = {v!r}: must be within [0, 1]")
    return check


def _nonneg(inst: Any, attr: attrs.Attribute, v: float) -> None:  # type: ignore[type-arg]
    if v < 0:
        raise OcadConfigError(f"alerts.{attr.name} = {v!r}: must be >= 0")


@attrs.frozen
class AlertPolicyConfig:
    """Thresholds and timers of the alert policy (``[alerts]`` config table)."""

    open_threshold: float = attrs.field(default=0.55, converter=float, validator=_unit("open_threshold"))
    # evidence_threshold and hold_down_s: tuned on the default suite's tuning seeds (docs/quality.md).
    evidence_threshold: float = attrs.field(default=0.998, converter=float,
                                            validator=_unit("evidence_threshold"))
    min_kinds: int = attrs.field(default=2, converter=int, validator=_nonneg)
    confirm_samples: int = attrs.field(default=2, converter=int, validator=_nonneg)
    hold_down_s: float = attrs.field(default=15.0, converter=float, validator=_nonneg)
    critical_threshold: float = attrs.field(default=0.8, converter=float, validator=_unit("critical_threshold"))
    critical_clear: float = attrs.field(default=0.7, converter=float, validator=_unit("critical_clear"))
    critical_kinds: int = attrs.field(default=3, converter=int, validator=_nonneg)
    update_delta: float = attrs.field(default=0.05, converter=float, validator=_nonneg)
    update_min_interval_s: float = attrs.field(default=30.0, converter=float, validator=_nonneg)
    evidence_report_threshold: float = attrs.field(default=0.9, converter=float,
                                                   validator=_unit("evidence_report_threshold"))

    def __attrs_post_init__(self) -> None:
        if self.critical_clear > self.critical_threshold:
            raise OcadConfigError(
                f"alerts.critical_clear = {self.critical_clear} must be <= critical_threshold = "
                f"{self.critical_threshold} (hysteresis)")

    @classmethod
    def from_mapping(cls, d: Mapping[str, Any]) -> AlertPolicyConfig:
        allowed = {f.name for f in attrs.fields(cls)}
        bad = set(d) - allowed
        if bad:
            raise OcadConfigError(f"alerts: unknown key(s) {sorted(bad)}; allowed: {sorted(allowed)}")
        try:
            return cls(**dict(d))
        except (TypeError, ValueError) as exc:
            if isinstance(exc, OcadConfigError):
                raise
            raise OcadConfigError(f"alerts: {exc}") from exc


@attrs.frozen
class Alert:
    """An alert with its evidence. ``resolved_ts`` is None while it is open.

    ``labels``: the endpoint's labels (site, role, ...) when the alert opened; they stay
    for the alert's life (see ``ocad.core._labels``). Alerts saved before labels existed
    read back with none.
    """

    alert_id: str
    endpoint_id: str
    opened_ts: float
    updated_ts: float
    resolved_ts: float | None
    severity: str
    score: float
    peak_score: float
    kinds: tuple[str, ...]
    evidence: tuple[Evidence, ...]
    # Not hashed (a dict); equality still compares it.
    labels: Mapping[str, str] = attrs.field(factory=dict, converter=dict, hash=False)

    def to_dict(self) -> dict[str, Any]:
        d = attrs.asdict(self, recurse=False)
        d["kinds"] = list(self.kinds)
        d["evidence"] = [e.to_dict() for e in self.evidence]
        d["labels"] = dict(self.labels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Alert:
        dd = dict(d)
        dd["kinds"] = tuple(dd["kinds"])
        dd["evidence"] = tuple(Evidence.from_dict(e) for e in dd["evidence"])
        return cls(**dd)


@attrs.frozen
class AlertEvent:
    """``event`` is ``"open"``, ``"update"`` or ``"resolve"``; ``ts`` is sample time."""

    event: str
    ts: float
    alert: Alert

    def to_dict(self) -> dict[str, Any]:
        return {"event": self.event, "ts": self.ts, **self.alert.to_dict()}


@attrs.define
class _State:
    pending: int = 0
    alert: Alert | None = None
    last_active_ts: float = 0.0
    last_event_ts: float = 0.0
    last_event_score: float = 0.0


@functools.lru_cache(maxsize=64)
def _kind_layout(kinds: tuple[str, ...]) -> tuple[tuple[str, ...], np.ndarray | None]:
    """Sorted distinct kinds, and the detector column of each when every kind has one detector."""
    distinct = tuple(sorted(set(kinds)))
    if len(distinct) != len(kinds):
        return distinct, None
    return distinct, np.array([kinds.index(k) for k in distinct], dtype=np.intp)


class AlertPolicy:
    """Turns composite outputs into alert events; holds per-endpoint state only where needed."""

    def __init__(self, config: AlertPolicyConfig | None = None) -> None:
        self.config = config or AlertPolicyConfig()
        self._states: dict[str, _State] = {}
        self.counts = {"open": 0, "update": 0, "resolve": 0}
        self._pos_cache: tuple[np.ndarray, dict[Any, int]] | None = None
        #: endpoint id -> its labels, copied into each alert it opens (the Monitor sets it).
        self.endpoint_labels: Callable[[str], Mapping[str, str]] | None = None

    def open_alerts(self) -> list[Alert]:
        return [s.alert for s in self._states.values() if s.alert is not None]

    def kinds_matrix(self, comp: CompositeOutput) -> tuple[np.ndarray, list[str]]:
        """(N, K) bool: endpoint has evidence of kind k."""
        kinds, order = _kind_layout(comp.kinds)
        ev = comp.detector_scores >= self.config.evidence_threshold  # NaN compares False
        if order is not None:  # one detector per kind: a column permutation
            return ev[:, order], list(kinds)
        mat = np.zeros((comp.scores.shape[0], len(kinds)), dtype=bool)
        for d, k in enumerate(comp.kinds):
            mat[:, kinds.index(k)] |= ev[:, d]
        return mat, list(kinds)

    def update(self, endpoints: np.ndarray, ts: np.ndarray, comp: CompositeOutput,
               ready: np.ndarray | None = None) -> list[AlertEvent]:
        """Advance the state of the N endpoints of one tick; returns the events, in endpoint order.

        ``ready`` (N,) bool: endpoints whose window has warmed up; others cannot open alerts.
        """
        cfg = self.config
        kmat, kinds = self.kinds_matrix(comp)
        nk = kmat.sum(axis=1)
        score = np.where(np.isnan(comp.scores), 0.0, comp.scores)
        cond = (nk >= cfg.min_kinds) & (score >= cfg.open_threshold)
        if ready is not None:
            cond &= ready
        active = (nk >= 1) | (score >= cfg.open_threshold)
        cand = np.flatnonzero(cond | active)
        if self._states:
            # Endpoints with pending or open state must be evaluated even when quiet (to resolve).
            pos = self._positions(endpoints)
            extra = [pos[e] for e in self._states if e in pos]
            if extra:
                cand = np.union1d(cand, np.asarray(extra, dtype=np.int64))
        events: list[AlertEvent] = []
        for i in cand.tolist():
            e = endpoints[i]
            t = float(ts[i])
            st = self._states.get(e)
            if st is None:
                st = self._states[e] = _State()
            if active[i]:
                st.last_active_ts = t
            if st.alert is None:
                st.pending = st.pending + 1 if cond[i] else 0
                if st.pending >= max(cfg.confirm_samples, 1):
                    events.append(self._open(e, t, i, comp, kmat, kinds, score, st))
                elif st.pending == 0:
                    del self._states[e]
                continue
            # open alert: resolve, or maybe update
            if not active[i] and t - st.last_active_ts >= cfg.hold_down_s:
                events.append(self._resolve(e, t, st))
                continue
            if active[i]:
                ev = self._maybe_update(e, t, i, comp, kmat, kinds, score, st)
                if ev is not None:
                    events.append(ev)
        return events

    def _positions(self, endpoints: np.ndarray) -> dict[Any, int]:
        """endpoint id -> index in ``endpoints``; reused while a fleet sends the same id column."""
        c = self._pos_cache
        if c is not None and c[0].shape == endpoints.shape and np.array_equal(c[0], endpoints):
            return c[1]
        pos = {e: i for i, e in enumerate(endpoints.tolist())}
        if endpoints.shape[0] >= 64:
            self._pos_cache = (endpoints.copy(), pos)
        return pos

    # -- transitions ----------------------------------------------------------
    def _severity(self, prev: str | None, s: float, nk: int) -> str:
        cfg = self.config
        if s >= cfg.critical_threshold or nk >= cfg.critical_kinds:
            return "critical"
        if prev == "critical" and s >= cfg.critical_clear:
            return "critical"
        return "warning"

    def _evidence(self, i: int, comp: CompositeOutput) -> tuple[Evidence, ...]:
        out = []
        for d, (name, kind) in enumerate(zip(comp.detectors, comp.kinds)):
            s = comp.detector_scores[i, d]
            if not np.isfinite(s) or s < self.config.evidence_report_threshold:
                continue
            o = comp.outputs[d]
            k = o.top_metric(i)
            metric = o.metrics[k] if k is not None else None
            obs = float(o.observed[i, k]) if (k is not None and o.observed is not None) else None
            exp = float(o.expected[i, k]) if (k is not None and o.expected is not None) else None
            out.append(Evidence(detector=name, kind=kind, metric=metric,
                                observed=None if obs is None or not np.isfinite(obs) else obs,
                                expected=None if exp is None or not np.isfinite(exp) else exp,
                                score=float(s), contribution=float(comp.contributions[i, d])))
        out.sort(key=lambda e: -e.contribution)
        return tuple(out)

    def _open(self, e: str, t: float, i: int, comp: CompositeOutput, kmat: np.ndarray, kinds: list[str],
              score: np.ndarray, st: _State) -> AlertEvent:
        ks = tuple(k for j, k in enumerate(kinds) if kmat[i, j])
        s = float(score[i])
        alert = Alert(alert_id=str(uuid.uuid5(_NS, f"{e}|{t!r}")), endpoint_id=e, opened_ts=t, updated_ts=t,
                      resolved_ts=None, severity=self._severity(None, s, len(ks)), score=s, peak_score=s,
                      kinds=ks, evidence=self._evidence(i, comp),
                      labels=self.endpoint_labels(e) if self.endpoint_labels is not None else {})
        st.alert, st.pending, st.last_event_ts, st.last_event_score = alert, 0, t, s
        st.last_active_ts = t
        self.counts["open"] += 1
        return AlertEvent("open", t, alert)

    def _maybe_update(self, e: str, t: float, i: int, comp: CompositeOutput, kmat: np.ndarray,
                      kinds: list[str], score: np.ndarray, st: _State) -> AlertEvent | None:
        cfg = self.config
        a = st.alert
        assert a is not None
        s = float(score[i])
        now_kinds = {k for j, k in enumerate(kinds) if kmat[i, j]}
        ks = tuple(sorted(set(a.kinds) | now_kinds))
        sev = self._severity(a.severity, s, len(now_kinds))
        changed = sev != a.severity or len(ks) > len(a.kinds)
        rose = s >= st.last_event_score + cfg.update_delta and t - st.last_event_ts >= cfg.update_min_interval_s
        peak = max(a.peak_score, s)
        if not (changed or rose):
            if peak != a.peak_score or ks != a.kinds:
                st.alert = attrs.evolve(a, peak_score=peak, kinds=ks)
            return None
        ev = self._evidence(i, comp) or a.evidence
        new = attrs.evolve(a, updated_ts=t, severity=sev, score=s, peak_score=peak, kinds=ks, evidence=ev)
        st.alert, st.last_event_ts, st.last_event_score = new, t, s
        self.counts["update"] += 1
        return AlertEvent("update", t, new)

    def _resolve(self, e: str, t: float, st: _State) -> AlertEvent:
        a = st.alert
        assert a is not None
        new = attrs.evolve(a, resolved_ts=t, updated_ts=t)
        del self._states[e]
        self.counts["resolve"] += 1
        return AlertEvent("resolve", t, new)

    def drop(self, endpoint_ids: list[str], ts: float) -> list[AlertEvent]:
        """Forget endpoints (evicted from the window store); open alerts resolve at ``ts``."""
        events = []
        for e in endpoint_ids:
            st = self._states.get(e)
            if st is None:
                continue
            if st.alert is not None:
                events.append(self._resolve(e, ts, st))
            else:
                del self._states[e]
        return events

    # -- state ------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        return {
            "counts": dict(self.counts),
            "states": {e: {"pending": s.pending, "last_active_ts": s.last_active_ts,
                           "last_event_ts": s.last_event_ts, "last_event_score": s.last_event_score,
                           "alert": s.alert.to_dict() if s.alert else None}
                       for e, s in self._states.items()},
        }

    def load_state(self, d: Mapping[str, Any]) -> None:
        self.counts = dict(d["counts"])
        self._states = {
            e: _State(pending=s["pending"], last_active_ts=s["last_active_ts"], last_event_ts=s["last_event_ts"],
                      last_event_score=s["last_event_score"],
                      alert=Alert.from_dict(s["alert"]) if s["alert"] else None)
            for e, s in d["states"].items()
        }
