"""Fleet → OCAD → Alertmanager + Prometheus: the complete NOC integration (docs/noc-integration.md).

1. A fleet: a simulated fronthaul fleet (stand-in for your probe collector), replayed
   tick by tick, and its inventory (site, role per endpoint) written as a CSV file.
2. OCAD: a Monitor that reads the inventory (``labels=``), so every alert carries its
   endpoint's site and role.
3. Alertmanager: an AlertmanagerSink posts open / update / resolve from a background thread.
4. Prometheus: the Monitor's health on ``http://127.0.0.1:PORT/metrics``.
5. Site-wide correlation: open alerts grouped by ``site``; a site with several endpoints
   alerting at once is printed as one incident.

Run against local servers (see the docs page for their configs)::

    python examples/noc_integration.py --alertmanager-url http://127.0.0.1:9093 --metrics-port 9464

Needs ``pip install "ocad-core[alertmanager,prometheus]"``. The tests run this script
against a real Alertmanager and Prometheus (tests/integration/test_noc_example.py).
"""

from __future__ import annotations

import argparse
import csv
import json
import signal
import sys
import tempfile
import time
from pathlib import Path

from ocad.core import Monitor
from ocad.core.integrations.alertmanager import AlertmanagerSink
from ocad.core.integrations.prometheus import serve
from ocad.core.tooling import generate_fleet


def write_inventory(fleet, path: Path) -> Path:
    """The CMDB export a NOC would have: one row per endpoint, one column per label."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["endpoint_id", "site", "role"])
        for e in fleet.endpoints:
            w.writerow([e.endpoint_id, e.site, e.role])
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--alertmanager-url", required=True, help="e.g. http://127.0.0.1:9093")
    p.add_argument("--metrics-port", type=int, default=9464, help="Prometheus scrape port (0: any free one)")
    p.add_argument("--endpoints", type=int, default=24)
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--hours", type=float, default=2.0)
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--core-only", action="store_true", help="no ML detectors")
    p.add_argument("--site-threshold", type=int, default=3,
                   help="endpoints of one site alerting at once that make a site incident (default 3)")
    p.add_argument("--linger", type=float, default=0.0,
                   help="keep serving metrics this many seconds at the end (for a scrape); SIGTERM ends it")
    p.add_argument("--summary", help="write a JSON summary here")
    p.add_argument("--workdir", help="where to write the inventory (default: a temporary directory)")
    args = p.parse_args(argv)

    # 1. The fleet. Sample times end now, so Alertmanager shows recent alerts.
    duration = args.hours * 3600
    fleet = generate_fleet(args.endpoints, duration, 5.0, seed=args.seed, n_sites=args.sites,
                           start_ts=float(int(time.time() - duration)))
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="ocad-noc-"))
    inventory = write_inventory(fleet, workdir / "inventory.csv")

    # 2. OCAD, with the inventory's labels.
    mon = Monitor({"monitor": {"use_shipped_models": not args.core_only}}, labels=inventory)

    # 3 + 4. Alertmanager sink and Prometheus endpoint.
    metrics = serve(mon, port=args.metrics_port)
    print(f"metrics: {metrics.url}", flush=True)
    sink = AlertmanagerSink(args.alertmanager_url, generator_url="http://127.0.0.1/ocad/endpoint/{endpoint_id}",
                            static_labels={"source": "ocad"}, backoff_s=0.2).start()

    incidents: dict[str, float] = {}  # site -> first time it crossed the threshold
    counts = {"open": 0, "update": 0, "resolve": 0}
    for t in range(len(fleet.ts)):
        events = mon.observe_columns(*fleet.columns(t))
        if not events:
            continue
        sink.send(events)  # returns at once; a background thread posts
        for ev in events:
            counts[ev.event] += 1
        # 5. Site-wide correlation on the open alerts.
        for site, alerts in mon.open_alerts(by="site").items():
            if site is not None and len(alerts) >= args.site_threshold and site not in incidents:
                incidents[site] = float(fleet.ts[t])
                eps = ", ".join(sorted(a.endpoint_id for a in alerts))
                print(f"site incident: {site}: {len(alerts)} endpoints alerting ({eps})", flush=True)

    delivered = sink.flush(timeout=30.0)
    sink.close()
    open_now = mon.open_alerts()
    summary = {
        "endpoints": len(fleet.endpoints), "ticks": len(fleet.ts), "events": counts,
        "open_at_end": sorted(a.endpoint_id for a in open_now),
        "site_incidents": sorted(incidents), "alertmanager": dict(sink.stats), "delivered": delivered,
        "metrics_url": metrics.url, "inventory": str(inventory),
        "site_wide_faults": sorted({e.site for e in fleet.events if e.fault_type == "site_wide"}),
    }
    print(json.dumps(summary, indent=1), flush=True)
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if args.linger > 0:
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        time.sleep(args.linger)
    metrics.close()
    return 0 if delivered and sink.stats["failed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
