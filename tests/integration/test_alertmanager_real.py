"""A Monitor's alerts through a REAL Alertmanager: posted by the sink, read back from /api/v2/alerts.

The fleet has a fault; its alert is posted when it opens, read back with its labels,
annotations and times, then resolved: it leaves the active list and the webhook
receiver gets the ``resolved`` notification with our ``endsAt``.
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from ocad.core import Monitor
from ocad.core.tooling import generate_fleet

httpx = pytest.importorskip("httpx", reason="pip install 'ocad-core[alertmanager]'")

from ocad.core.integrations.alertmanager import AlertmanagerSink  # noqa: E402

CORE = {"monitor": {"use_shipped_models": False}}
WAIT_S = 20.0


def _epoch(s: str) -> float:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def _ours(am_alerts: list[dict]) -> dict[str, dict]:
    """Active OcadAnomaly alerts in Alertmanager, by endpoint."""
    return {a["labels"]["endpoint_id"]: a for a in am_alerts if a["labels"].get("alertname") == "OcadAnomaly"}


def test_fault_alerts_open_and_resolve_in_a_real_alertmanager(alertmanager, webhook, helpers):
    fleet = generate_fleet(12, 2 * 3600, 5.0, seed=1, n_sites=3)
    inventory = {e.endpoint_id: {"site": e.site, "role": e.role} for e in fleet.endpoints}
    mon = Monitor(CORE, labels=inventory)
    sink = AlertmanagerSink(alertmanager.url, generator_url="http://ocad.test/e/{endpoint_id}?a={alert_id}",
                            static_labels={"source": "ocad-test"}, backoff_s=0.1, timeout_s=5.0)
    api = alertmanager.url + "/api/v2/alerts"

    def feed_until(pred) -> list:
        out = []
        for t in range(feed_until.t, len(fleet.ts)):
            evs = mon.observe_columns(*fleet.columns(t))
            sink.send(evs)
            out += evs
            if any(pred(ev) for ev in evs):
                feed_until.t = t + 1
                return out
        raise AssertionError("the fleet ran out before the expected event")
    feed_until.t = 0

    with sink:
        events = feed_until(lambda ev: ev.event == "open")
        first = next(ev.alert for ev in events if ev.event == "open")
        assert sink.flush(WAIT_S)

        # -- read it back: labels, annotations, times, state --------------------------
        got = helpers.wait_for(lambda: _ours(helpers.get_json(api)).get(first.endpoint_id), WAIT_S,
                               "the opened alert in /api/v2/alerts")
        assert got["labels"] == {"alertname": "OcadAnomaly", "endpoint_id": first.endpoint_id,
                                 "severity": first.severity, "source": "ocad-test",
                                 **inventory[first.endpoint_id]}
        assert got["annotations"]["alert_id"] == first.alert_id
        assert first.endpoint_id in got["annotations"]["summary"]
        assert got["annotations"]["description"].startswith(first.evidence[0].detector)
        assert _epoch(got["startsAt"]) == pytest.approx(first.opened_ts, abs=1e-3)
        assert _epoch(got["endsAt"]) > time.time()  # firing: ends in the future
        assert got["status"]["state"] == "active"
        assert got["generatorURL"] == f"http://ocad.test/e/{first.endpoint_id}?a={first.alert_id}"
        helpers.wait_for(lambda: any(a["labels"]["endpoint_id"] == first.endpoint_id
                                     for a in webhook.alerts("firing")), WAIT_S, "the firing notification")

        # -- resolve ----------------------------------------------------------------
        events += feed_until(lambda ev: ev.event == "resolve" and ev.alert.alert_id == first.alert_id)
        resolved = next(ev.alert for ev in events if ev.event == "resolve" and ev.alert.alert_id == first.alert_id)
        assert sink.flush(WAIT_S)

        def gone_or_ended():
            a = _ours(helpers.get_json(api)).get(first.endpoint_id)
            return a is None or a["labels"]["severity"] != resolved.severity
        helpers.wait_for(gone_or_ended, WAIT_S, "the resolved alert to leave the active alerts")
        # Alertmanager lists only active alerts; the resolve itself comes back in the notification.
        note = helpers.wait_for(lambda: [a for a in webhook.alerts("resolved")
                                         if a["annotations"].get("alert_id") == first.alert_id
                                         and a["labels"]["severity"] == resolved.severity],
                                WAIT_S, "the resolved notification")[-1]
        assert _epoch(note["endsAt"]) == pytest.approx(resolved.resolved_ts, abs=1e-3)
        assert _epoch(note["endsAt"]) < time.time()
        assert note["labels"]["site"] == inventory[first.endpoint_id]["site"]

        # -- the rest of the run: what is open in OCAD is exactly what is active there -----
        for t in range(feed_until.t, len(fleet.ts)):
            sink.send(mon.observe_columns(*fleet.columns(t)))
        assert sink.flush(WAIT_S)
        want = {(a.endpoint_id, a.severity) for a in mon.open_alerts()}

        def same():
            have = {(e, a["labels"]["severity"]) for e, a in _ours(helpers.get_json(api)).items()}
            return have == want
        helpers.wait_for(same, WAIT_S, f"Alertmanager's active alerts to equal OCAD's open ones {sorted(want)}")
    assert sink.stats["failed"] == sink.stats["rejected"] == sink.stats["dropped"] == 0
    assert sink.stats["sent"] >= len(events)


def test_sink_counts_failures_against_a_stopped_alertmanager(alertmanager, helpers):
    fleet = generate_fleet(6, 3600, 5.0, seed=2)
    mon = Monitor(CORE)
    events = [ev for t in range(len(fleet.ts)) for ev in mon.observe_columns(*fleet.columns(t))]
    assert events
    alertmanager.stop()  # the port now refuses connections
    sink = AlertmanagerSink(alertmanager.url, max_retries=2, backoff_s=0.05, timeout_s=1.0).start()
    t0 = time.monotonic()
    sink.send(events)
    assert time.monotonic() - t0 < 0.5, "send() must not wait for the network"
    assert sink.flush(10.0)
    sink.close()
    assert sink.stats["sent"] == 0
    assert sink.stats["failed"] > 0 and sink.stats["retries"] >= 2
