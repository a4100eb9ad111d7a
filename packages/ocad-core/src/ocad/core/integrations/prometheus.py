"""The Monitor's own health as Prometheus metrics, and an HTTP endpoint to scrape them.

:class:`OcadCollector` reads a :class:`~ocad.core.Monitor` at scrape time (nothing is
computed per sample) and exposes:

======================================  =========  =================================================
metric                                  type       labels
======================================  =========  =================================================
``ocad_records_total``                  counter    records validated
``ocad_values_total``                   counter    ``outcome``: accepted, missing, rejected
``ocad_values_rejected_total``          counter    ``metric``, ``reason`` (validation policy)
``ocad_records_dropped_total``          counter    ``reason`` (duplicate_ts, out_of_order, ...)
``ocad_unknown_metric_values_total``    counter    ``metric``
``ocad_clock_resets_total``             counter
``ocad_endpoints``                      gauge      endpoints in the window store
``ocad_endpoint_capacity``              gauge      window-store capacity (absent: unbounded)
``ocad_evictions_total``                counter    ``cause``: idle, capacity
``ocad_detector_calls_total``           counter    ``detector``
``ocad_detector_failures_total``        counter    ``detector``
``ocad_detector_over_budget_total``     counter    ``detector``
``ocad_detector_disabled``              gauge      ``detector`` (1 while disabled)
``ocad_detector_seconds_total``         counter    ``detector``: time spent scoring
``ocad_alert_events_total``             counter    ``event``: open, update, resolve
``ocad_open_alerts``                    gauge      ``severity`` (warning, critical always present)
``ocad_tick_duration_seconds``          histogram  one observation per tick of the pipeline
``ocad_model_info``                     gauge      ``detector``, ``model`` (``name@version``) = 1
``ocad_plugin_failures``                gauge      plugins that failed to load
======================================  =========  =================================================

Mean detector latency is ``rate(ocad_detector_seconds_total[5m]) /
rate(ocad_detector_calls_total[5m])``.

The tick histogram needs a hook into the Monitor: :func:`instrument` (or
:class:`OcadCollector` itself) sets ``monitor.tick_observer``, which the Monitor calls
with the duration of each tick (two ``perf_counter`` calls per tick).

A Monitor is not thread-safe and the HTTP server scrapes from its own thread: the
collector only copies counters (dict copies are atomic in CPython) and retries a scrape
that raced with a tick. Requires the ``prometheus`` extra (``prometheus_client``).

Example
-------
>>> from ocad.core.integrations.prometheus import serve
>>> server = serve(monitor, port=9464)            # doctest: +SKIP
>>> # scrape http://127.0.0.1:9464/metrics
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections.abc import Iterator
from typing import Any

from .._errors import require

__all__ = ["TICK_BUCKETS", "MetricsServer", "OcadCollector", "serve"]

log = logging.getLogger("ocad.prometheus")

#: Tick-duration buckets, seconds: a tick of one endpoint takes ~1 ms, of 100 000 about a second.
TICK_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def _pc() -> Any:
    return require("prometheus_client", "prometheus", "ocad.core.integrations.prometheus")


class _TickHistogram:
    """Cumulative bucket counts, written by the Monitor's thread, read by the scrape."""

    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.bounds = tuple(sorted(buckets))
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        i = bisect.bisect_left(self.bounds, seconds)  # the first bucket with seconds <= le
        with self._lock:
            self.counts[i] += 1
            self.total += seconds

    def snapshot(self) -> tuple[list[tuple[str, int]], float]:
        with self._lock:
            counts, total = list(self.counts), self.total
        acc, out = 0, []
        for b, n in zip((*self.bounds, float("inf")), counts):
            acc += n
            out.append(("+Inf" if b == float("inf") else repr(b), acc))
        return out, total


class OcadCollector:
    """A ``prometheus_client`` custom collector for one Monitor (register it on a registry).

    ``const_labels`` are added to every sample (e.g. ``{"shard": "3"}`` when several
    Monitors run in one process, each with its own collector).
    """

    def __init__(self, monitor: Any, *, const_labels: dict[str, str] | None = None,
                 buckets: tuple[float, ...] = TICK_BUCKETS) -> None:
        _pc()
        from .._labels import validate_label_name

        self.monitor = monitor
        self.const_labels = dict(const_labels or {})
        for k in self.const_labels:
            validate_label_name(k)
        self.ticks = _TickHistogram(buckets)
        monitor.tick_observer = self.ticks

    def describe(self) -> list[Any]:
        return []  # unchecked collector: families are known only at scrape time

    def collect(self) -> Iterator[Any]:
        for attempt in range(3):
            try:
                fams = self._families()
            except RuntimeError:  # "dictionary changed size during iteration": a tick raced the scrape
                if attempt == 2:
                    raise
                continue
            yield from fams
            return

    def _families(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        mon = self.monitor
        ck = list(self.const_labels)
        cv = list(self.const_labels.values())

        def fam(cls: Any, name: str, doc: str, labels: tuple[str, ...] = ()) -> Any:
            return cls(name, doc, labels=[*ck, *labels])

        out = []
        st = mon.stats
        rejected = dict(st.rejected)
        f = fam(CounterMetricFamily, "ocad_records", "Records validated")
        f.add_metric(cv, st.records)
        out.append(f)
        f = fam(CounterMetricFamily, "ocad_values", "Metric values by validation outcome", ("outcome",))
        f.add_metric([*cv, "accepted"], st.values_accepted)
        f.add_metric([*cv, "missing"], st.values_missing)
        f.add_metric([*cv, "rejected"], sum(rejected.values()))
        out.append(f)
        f = fam(CounterMetricFamily, "ocad_values_rejected", "Values rejected by validation",
                ("metric", "reason"))
        for (m, r), n in sorted(rejected.items()):
            f.add_metric([*cv, m, r], n)
        out.append(f)
        f = fam(CounterMetricFamily, "ocad_records_dropped", "Records dropped (ordering)", ("reason",))
        for r, n in sorted(dict(st.dropped_records).items()):
            f.add_metric([*cv, r], n)
        out.append(f)
        f = fam(CounterMetricFamily, "ocad_unknown_metric_values", "Values of metrics the Monitor does not know",
                ("metric",))
        for m, n in sorted(dict(st.unknown_metrics).items()):
            f.add_metric([*cv, m], n)
        out.append(f)
        f = fam(CounterMetricFamily, "ocad_clock_resets", "Endpoint windows restarted after a clock jump back")
        f.add_metric(cv, st.clock_resets)
        out.append(f)

        store = mon.store
        f = fam(GaugeMetricFamily, "ocad_endpoints", "Endpoints in the window store")
        f.add_metric(cv, len(store))
        out.append(f)
        if store.capacity is not None:
            f = fam(GaugeMetricFamily, "ocad_endpoint_capacity", "Window-store capacity (endpoints)")
            f.add_metric(cv, store.capacity)
            out.append(f)
        f = fam(CounterMetricFamily, "ocad_evictions", "Endpoints evicted from the window store", ("cause",))
        f.add_metric([*cv, "idle"], store.evicted_idle)
        f.add_metric([*cv, "capacity"], store.evicted_capacity)
        out.append(f)

        health = dict(mon.composite.health)
        calls = fam(CounterMetricFamily, "ocad_detector_calls", "Detector score calls", ("detector",))
        fails = fam(CounterMetricFamily, "ocad_detector_failures", "Detector calls that raised or broke "
                                                                   "the contract", ("detector",))
        over = fam(CounterMetricFamily, "ocad_detector_over_budget", "Detector calls over the time budget",
                   ("detector",))
        dis = fam(GaugeMetricFamily, "ocad_detector_disabled", "1 while the detector is disabled", ("detector",))
        secs = fam(CounterMetricFamily, "ocad_detector_seconds", "Time spent in the detector's score calls",
                   ("detector",))
        for name, h in sorted(health.items()):
            calls.add_metric([*cv, name], h.calls)
            fails.add_metric([*cv, name], h.failures)
            over.add_metric([*cv, name], h.over_budget)
            dis.add_metric([*cv, name], 1.0 if h.disabled else 0.0)
            secs.add_metric([*cv, name], h.total_time_s)
        out += [calls, fails, over, dis, secs]

        policy = mon.policy
        f = fam(CounterMetricFamily, "ocad_alert_events", "Alert events emitted", ("event",))
        for e, n in sorted(dict(policy.counts).items()):
            f.add_metric([*cv, e], n)
        out.append(f)
        by_sev = {"warning": 0, "critical": 0}
        for a in policy.open_alerts():
            by_sev[a.severity] = by_sev.get(a.severity, 0) + 1
        f = fam(GaugeMetricFamily, "ocad_open_alerts", "Open alerts", ("severity",))
        for s, n in sorted(by_sev.items()):
            f.add_metric([*cv, s], n)
        out.append(f)

        buckets, total = self.ticks.snapshot()
        f = fam(HistogramMetricFamily, "ocad_tick_duration_seconds", "Time of one pipeline tick "
                                                                    "(validate to alert events)")
        f.add_metric(cv, buckets=buckets, sum_value=total)
        out.append(f)

        f = fam(GaugeMetricFamily, "ocad_model_info", "Model artifacts in use (name@version)",
                ("detector", "model"))
        for d in mon.composite.detectors:
            for src in _sources(d):
                f.add_metric([*cv, d.name, src], 1.0)
        out.append(f)
        f = fam(GaugeMetricFamily, "ocad_plugin_failures", "Plugins that failed to load")
        f.add_metric(cv, len(mon.registry.failures))
        out.append(f)
        return out


def _sources(detector: Any) -> tuple[str, ...]:
    """``name@version`` of the artifacts a detector runs (ML detectors say so; core ones have none)."""
    s = getattr(detector, "sources", None)
    if isinstance(s, (tuple, list)):
        return tuple(str(x) for x in s)
    s = getattr(detector, "source", None)
    return (str(s),) if isinstance(s, str) else ()


class MetricsServer:
    """The HTTP server :func:`serve` started; :meth:`close` stops it."""

    def __init__(self, server: Any, thread: Any, collector: OcadCollector, registry: Any) -> None:
        self.server, self.thread, self.collector, self.registry = server, thread, collector, registry

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        host = self.server.server_address[0]
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)

    def __enter__(self) -> MetricsServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def serve(monitor: Any, port: int = 9464, addr: str = "127.0.0.1", *,
          const_labels: dict[str, str] | None = None) -> MetricsServer:
    """Serve ``monitor``'s metrics on ``http://addr:port/metrics`` from a daemon thread.

    ``addr`` defaults to localhost; bind ``0.0.0.0`` only where the network is trusted.
    ``port=0`` picks a free port (see :attr:`MetricsServer.port`). The registry holds only
    OCAD's collector (no process/GC collectors, which a host usually exports already).
    """
    pc = _pc()
    registry = pc.CollectorRegistry(auto_describe=False)
    collector = OcadCollector(monitor, const_labels=const_labels)
    registry.register(collector)
    server, thread = pc.start_http_server(port, addr=addr, registry=registry)
    log.info("ocad metrics on http://%s:%d/metrics", addr, server.server_address[1])
    return MetricsServer(server, thread, collector, registry)
