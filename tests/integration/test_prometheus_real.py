"""A REAL Prometheus server scrapes the OCAD collector on localhost; its query results match the Monitor."""

from __future__ import annotations

import pytest

from ocad.core import Monitor
from ocad.core.tooling import generate_fleet

pytest.importorskip("prometheus_client", reason="pip install 'ocad-core[prometheus]'")

from ocad.core.integrations.prometheus import serve  # noqa: E402

CORE = {"monitor": {"use_shipped_models": False}}
WAIT_S = 30.0


def _value(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def test_prometheus_scrapes_the_collector(prometheus_factory, helpers):
    fleet = generate_fleet(10, 3600, 5.0, seed=4, n_sites=2)
    mon = Monitor(CORE)
    metrics = serve(mon, port=0)  # before the samples: the tick histogram counts from here on
    events = [ev for t in range(len(fleet.ts)) for ev in mon.observe_columns(*fleet.columns(t))]
    # Bad values, so that a validation reason is counted: negative and infinite RTTs, a string.
    mon.observe([{"endpoint_id": "bad-1", "ts": float(fleet.ts[-1]) + 5, "udp_echo_rtt_ms": -3.0},
                 {"endpoint_id": "bad-2", "ts": float(fleet.ts[-1]) + 5, "udp_echo_rtt_ms": float("inf")},
                 {"endpoint_id": "bad-3", "ts": float(fleet.ts[-1]) + 5, "udp_echo_rtt_ms": "fast"}])
    rejected = dict(mon.stats.rejected)
    assert rejected, "the bad values were rejected with reasons"
    opened = sum(ev.event == "open" for ev in events)
    assert opened > 0

    with metrics:
        prom = prometheus_factory([f"127.0.0.1:{metrics.port}"])
        helpers.wait_for(lambda: helpers.prom_query(prom, 'up{job="ocad"} == 1'), WAIT_S,
                         "a successful scrape (up == 1)")
        q = helpers.prom_query
        assert _value(q(prom, "ocad_records_total")) == mon.stats.records
        assert _value(q(prom, 'ocad_alert_events_total{event="open"}')) == opened
        assert _value(q(prom, "ocad_tick_duration_seconds_count")) == len(fleet.ts) + 1
        assert _value(q(prom, "sum(ocad_open_alerts)")) == len(mon.open_alerts())
        for (metric, reason), n in rejected.items():
            assert _value(q(prom, f'ocad_values_rejected_total{{metric="{metric}",reason="{reason}"}}')) == n
        calls = q(prom, "ocad_detector_calls_total")
        assert {r["metric"]["detector"] for r in calls} == {d.name for d in mon.detectors}
        assert all(float(r["value"][1]) == len(fleet.ts) + 1 for r in calls)
        assert _value(q(prom, "sum(ocad_detector_failures_total)")) == 0
        # A histogram quantile works on the tick durations.
        p99 = _value(q(prom, "histogram_quantile(0.99, ocad_tick_duration_seconds_bucket)"))
        assert 0 < p99 < 10
