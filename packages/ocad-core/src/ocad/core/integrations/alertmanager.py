"""OCAD alerts as Prometheus Alertmanager alerts (API v2), and a sink that posts them.

Mapping of one :class:`~ocad.core.Alert` to one ``POST /api/v2/alerts`` item
(docs/noc-integration.md has the full table):

* ``labels`` (what Alertmanager groups, routes, silences and deduplicates on):
  ``alertname`` (default ``OcadAnomaly``), ``endpoint_id``, ``severity``, the endpoint's
  labels (site, role, ...) and any ``static_labels`` (e.g. ``{"source": "ocad"}``).
* ``annotations`` (text for the humans): ``summary``, ``description`` (the evidence, one
  line per detector), ``alert_id``, ``score``, ``peak_score``, ``kinds``, ``evidence``
  (JSON), ``opened_at``.
* ``startsAt``: the alert's ``opened_ts``; ``endsAt``: its ``resolved_ts`` once resolved
  (RFC 3339, UTC). While the alert is open, the file format leaves ``endsAt`` out
  (Alertmanager then applies its ``resolve_timeout``); :class:`AlertmanagerSink` sets it
  a few resend intervals ahead and re-posts open alerts, as Prometheus does.
* ``generatorURL``: ``generator_url``, a string where ``{endpoint_id}`` and ``{alert_id}``
  are replaced (e.g. a dashboard of the endpoint).

Alertmanager identifies an alert by its label set. When an alert's severity changes, its
label set changes, so the encoder also sends the previous label set as resolved:
otherwise the ``warning`` alert would keep firing beside the ``critical`` one.

Times are the alerts' *sample* times (the probes' clocks), as everywhere in OCAD.

Example
-------
>>> from ocad.core.integrations.alertmanager import AlertmanagerSink
>>> with AlertmanagerSink("http://127.0.0.1:9093") as sink:   # doctest: +SKIP
...     for batch in batches:
...         sink.send(monitor.observe(batch))                # never blocks on the network
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import random
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

from ..pipeline._alerts import Alert, AlertEvent
from .._errors import OcadConfigError, require
from .._labels import validate_label_name

__all__ = ["DEFAULT_ALERTNAME", "AlertmanagerEncoder", "AlertmanagerSink", "alertmanager_payloads", "rfc3339",
           "to_alertmanager"]

log = logging.getLogger("ocad.alertmanager")

DEFAULT_ALERTNAME = "OcadAnomaly"
_API_PATH = "/api/v2/alerts"
_EVIDENCE_LINES = 5


def rfc3339(ts: float) -> str:
    """Epoch seconds as an RFC 3339 UTC timestamp with milliseconds: ``2026-01-01T00:00:05.000Z``."""
    return _dt.datetime.fromtimestamp(float(ts), tz=_dt.UTC).isoformat(timespec="milliseconds")[:-6] + "Z"


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:.4g}"


def _evidence_text(alert: Alert) -> str:
    lines = []
    for e in alert.evidence[:_EVIDENCE_LINES]:
        on = f" on {e.metric}" if e.metric else ""
        lines.append(f"{e.detector} ({e.kind}){on}: observed {_num(e.observed)} vs expected {_num(e.expected)}, "
                     f"score {e.score:.3f}, contribution {e.contribution:.2f}")
    more = len(alert.evidence) - _EVIDENCE_LINES
    if more > 0:
        lines.append(f"... and {more} more")
    return "\n".join(lines) if lines else "no detector above the evidence report threshold"


def to_alertmanager(alert: Alert | AlertEvent, *, alertname: str = DEFAULT_ALERTNAME,
                    generator_url: str | None = None, static_labels: Mapping[str, str] | None = None,
                    ends_at: float | None = None) -> dict[str, Any]:
    """One Alertmanager API v2 ``postableAlert`` for ``alert`` (an :class:`Alert` or an event's).

    ``ends_at``: epoch seconds for ``endsAt`` of an *open* alert (default: none); a resolved
    alert always ends at its ``resolved_ts``.
    """
    a = alert.alert if isinstance(alert, AlertEvent) else alert
    labels = {**(static_labels or {}), **a.labels,
              "alertname": alertname, "endpoint_id": a.endpoint_id, "severity": a.severity}
    ev = [e.to_dict() for e in a.evidence[:_EVIDENCE_LINES]]
    kinds = "+".join(a.kinds)
    out: dict[str, Any] = {
        "labels": labels,
        "annotations": {
            "summary": f"{a.severity} anomaly on {a.endpoint_id}: score {a.score:.2f}"
                       + (f" ({kinds})" if kinds else ""),
            "description": _evidence_text(a),
            "alert_id": a.alert_id,
            "score": f"{a.score:.4f}",
            "peak_score": f"{a.peak_score:.4f}",
            "kinds": kinds,
            "evidence": json.dumps(ev, separators=(",", ":")),
            "opened_at": rfc3339(a.opened_ts),
        },
        "startsAt": rfc3339(a.opened_ts),
    }
    if a.resolved_ts is not None:
        out["endsAt"] = rfc3339(a.resolved_ts)
    elif ends_at is not None:
        out["endsAt"] = rfc3339(ends_at)
    if generator_url:
        out["generatorURL"] = generator_url.format(endpoint_id=a.endpoint_id, alert_id=a.alert_id)
    return out


def _key(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items()))


class AlertmanagerEncoder:
    """Turns a stream of alert events into postable alerts, resolving superseded label sets.

    Keeps, per open alert, the label set last sent, so that a severity change (a new label
    set) also sends the old one as resolved at the update's time.
    """

    def __init__(self, *, alertname: str = DEFAULT_ALERTNAME, generator_url: str | None = None,
                 static_labels: Mapping[str, str] | None = None) -> None:
        if not alertname:
            raise OcadConfigError("alertmanager alertname must not be empty")
        static = dict(static_labels or {})
        for k, v in static.items():
            validate_label_name(k)
            if not isinstance(v, str):
                raise OcadConfigError(f"alertmanager static label {k!r} = {v!r}: values must be strings")
        self.alertname = alertname
        self.generator_url = generator_url
        self.static_labels = static
        self._last: dict[str, dict[str, Any]] = {}  # alert_id -> last payload sent

    def encode(self, event: AlertEvent, *, ends_at: float | None = None) -> list[dict[str, Any]]:
        """Postable alerts for one event, in the order to send them."""
        return [p for p, _ in self.transitions(event, ends_at=ends_at)]

    def transitions(self, event: AlertEvent, *,
                    ends_at: float | None = None) -> list[tuple[dict[str, Any], bool]]:
        """Like :meth:`encode`, each payload with ``True`` when it resolves its label set."""
        new = to_alertmanager(event.alert, alertname=self.alertname, generator_url=self.generator_url,
                              static_labels=self.static_labels, ends_at=ends_at)
        out = []
        old = self._last.get(event.alert.alert_id)
        if old is not None and _key(old["labels"]) != _key(new["labels"]):
            out.append(({**old, "endsAt": rfc3339(event.ts)}, True))
        resolved = event.event == "resolve" or event.alert.resolved_ts is not None
        out.append((new, resolved))
        if resolved:
            self._last.pop(event.alert.alert_id, None)
        else:
            self._last[event.alert.alert_id] = new
        return out

    def encode_all(self, events: Iterable[AlertEvent]) -> list[dict[str, Any]]:
        return [p for ev in events for p in self.encode(ev)]


def alertmanager_payloads(events: Iterable[AlertEvent], **kw: Any) -> list[dict[str, Any]]:
    """The postable alerts for ``events`` in order (what ``ocad detect --format alertmanager`` writes).

    The list can be posted as it is: ``curl -XPOST -H 'Content-Type: application/json'
    --data @alerts.json http://alertmanager:9093/api/v2/alerts``. Keyword arguments as
    :class:`AlertmanagerEncoder`.
    """
    return AlertmanagerEncoder(**kw).encode_all(events)


class AlertmanagerSink:
    """Posts alert events to an Alertmanager from a background thread; never blocks detection.

    :meth:`send` only encodes and queues (under a lock, no I/O). A worker thread posts
    batches to ``{url}/api/v2/alerts`` with ``timeout_s`` per request, retrying connection
    errors, timeouts, 429 and 5xx up to ``max_retries`` times with exponential backoff
    (``backoff_s`` doubling up to ``max_backoff_s``, with jitter). A 4xx answer is not retried
    (the payload is wrong; it is logged and counted as ``rejected``).

    The queue holds the newest payload per label set and at most ``max_pending`` label sets;
    beyond that new ones are dropped and counted (``dropped``). Open alerts are re-posted
    every ``resend_interval_s`` with ``endsAt`` ``4 * resend_interval_s`` ahead (as Prometheus
    does), so an alert whose resolve was lost ends on its own, and an Alertmanager that was
    down or restarted gets the open alerts again.

    :attr:`stats`: ``sent`` (alerts accepted), ``posts``, ``retries``, ``failed`` (alerts given
    up after retries), ``rejected``, ``dropped``, ``resent``; :attr:`pending`: queued now.

    The worker is a daemon thread: call :meth:`close` (or use the sink as a context manager)
    before the process exits, or what is still queued is lost.

    Requires the ``alertmanager`` extra (httpx).
    """

    def __init__(self, url: str, *, alertname: str = DEFAULT_ALERTNAME, generator_url: str | None = None,
                 static_labels: Mapping[str, str] | None = None, timeout_s: float = 5.0, max_retries: int = 5,
                 backoff_s: float = 0.5, max_backoff_s: float = 30.0, resend_interval_s: float = 60.0,
                 max_pending: int = 10_000, batch_size: int = 500, headers: Mapping[str, str] | None = None,
                 client: Any = None) -> None:
        httpx = require("httpx", "alertmanager", "AlertmanagerSink")
        for name, v in (("timeout_s", timeout_s), ("backoff_s", backoff_s), ("max_backoff_s", max_backoff_s),
                        ("resend_interval_s", resend_interval_s)):
            if not v > 0:
                raise OcadConfigError(f"AlertmanagerSink {name} = {v!r}: must be > 0")
        for name, n in (("max_retries", max_retries), ("max_pending", max_pending), ("batch_size", batch_size)):
            if n < (0 if name == "max_retries" else 1):
                raise OcadConfigError(f"AlertmanagerSink {name} = {n!r}: out of range")
        if not url.startswith(("http://", "https://")):
            raise OcadConfigError(f"AlertmanagerSink url = {url!r}: expected http(s)://host:port")
        base = url.rstrip("/")
        self.url = base if base.endswith(_API_PATH) else base + _API_PATH
        self.encoder = AlertmanagerEncoder(alertname=alertname, generator_url=generator_url,
                                           static_labels=static_labels)
        self.timeout_s, self.max_retries = float(timeout_s), int(max_retries)
        self.backoff_s, self.max_backoff_s = float(backoff_s), float(max_backoff_s)
        self.resend_interval_s, self.max_pending, self.batch_size = float(resend_interval_s), max_pending, batch_size
        self._client = client if client is not None else httpx.Client(timeout=self.timeout_s,
                                                                      headers=dict(headers or {}))
        self._own_client = client is None
        self._httpx = httpx
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._pending: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
        self._firing: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}  # label set -> payload
        self._inflight = 0
        self._closing = False
        self._next_resend = time.monotonic() + self.resend_interval_s
        self._thread: threading.Thread | None = None
        self.stats = {"sent": 0, "posts": 0, "retries": 0, "failed": 0, "rejected": 0, "dropped": 0, "resent": 0}

    # -- caller side ------------------------------------------------------------
    def start(self) -> AlertmanagerSink:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="ocad-alertmanager-sink", daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> AlertmanagerSink:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def send(self, events: Iterable[AlertEvent]) -> None:
        """Queue alert events (open / update / resolve); returns at once."""
        now = time.time()
        with self._cond:
            if self._closing:
                raise OcadConfigError("AlertmanagerSink.send() after close()")
            for ev in events:
                ends = max(now, ev.alert.opened_ts) + 4 * self.resend_interval_s
                for p, resolved in self.encoder.transitions(ev, ends_at=ends):
                    self._queue(p, resolved)
            self._cond.notify_all()
        if self._thread is None:
            self.start()

    def _queue(self, p: dict[str, Any], resolved: bool) -> None:
        k = _key(p["labels"])
        if resolved:
            self._firing.pop(k, None)
        else:
            self._firing[k] = p
        if k not in self._pending and len(self._pending) >= self.max_pending:
            self.stats["dropped"] += 1
            return
        self._pending[k] = p

    def flush(self, timeout: float | None = 10.0) -> bool:
        """Wait until everything queued was posted (or given up); False on timeout."""
        if self._thread is None and self._pending:
            self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while self._pending or self._inflight:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def close(self, timeout: float = 10.0) -> None:
        """Flush for up to ``timeout`` seconds, then stop the worker (a retry wait is cut short)."""
        self.flush(timeout)
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.timeout_s + 1.0)
        if self._own_client:
            self._client.close()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def open_payloads(self) -> list[dict[str, Any]]:
        """The payloads of the alerts the sink considers firing (re-posted every resend interval)."""
        with self._cond:
            return list(self._firing.values())

    # -- worker -------------------------------------------------------------
    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    # Checked on every round, so that a steady stream of updates cannot starve it.
                    if time.monotonic() >= self._next_resend:
                        self._resend()
                    if self._pending or self._closing:
                        break
                    self._cond.wait(max(self._next_resend - time.monotonic(), 0.0))
                if self._closing:
                    return
                keys = list(self._pending)[:self.batch_size]
                if not keys:
                    continue
                batch = [self._pending.pop(k) for k in keys]
                self._inflight = len(batch)
            try:
                self._post(batch)
            finally:
                with self._cond:
                    self._inflight = 0
                    self._cond.notify_all()

    def _resend(self) -> None:
        now = time.time()
        self._next_resend = time.monotonic() + self.resend_interval_s
        for k, p in self._firing.items():
            if k not in self._pending:
                ends = max(now, _epoch(p["startsAt"])) + 4 * self.resend_interval_s
                self._pending[k] = {**p, "endsAt": rfc3339(ends)}
                self.stats["resent"] += 1

    def _post(self, batch: list[dict[str, Any]]) -> None:
        body = batch
        for attempt in range(self.max_retries + 1):
            retry_why = None
            try:
                r = self._client.post(self.url, json=body, timeout=self.timeout_s)
            except self._httpx.HTTPError as exc:  # connection refused, timeout, protocol error
                retry_why = f"{type(exc).__name__}: {exc}"
            else:
                if r.status_code < 300:
                    self.stats["posts"] += 1
                    self.stats["sent"] += len(body)
                    return
                if r.status_code != 429 and r.status_code < 500:
                    self.stats["rejected"] += len(body)
                    log.error("alertmanager %s refused %d alerts: HTTP %d %s", self.url, len(body),
                              r.status_code, r.text[:300])
                    return
                retry_why = f"HTTP {r.status_code}"
            if attempt == self.max_retries or self._stop.is_set():
                break
            self.stats["retries"] += 1
            delay = min(self.max_backoff_s, self.backoff_s * 2 ** attempt) * (0.5 + random.random() / 2)
            log.warning("alertmanager %s: %s; retry %d/%d in %.1f s", self.url, retry_why, attempt + 1,
                        self.max_retries, delay)
            if self._stop.wait(delay):
                break
        self.stats["failed"] += len(body)
        log.error("alertmanager %s: gave up on %d alerts (%s)", self.url, len(body), retry_why)


def _epoch(s: str) -> float:
    return _dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()
