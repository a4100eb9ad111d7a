"""examples/noc_integration.py, the docs' complete example, against a real Alertmanager and Prometheus."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("httpx", reason="pip install 'ocad-core[alertmanager]'")
pytest.importorskip("prometheus_client", reason="pip install 'ocad-core[prometheus]'")

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "noc_integration.py"
WAIT_S = 30.0


def test_noc_example_end_to_end(alertmanager, webhook, prometheus_factory, helpers, tmp_path):
    port = helpers.free_port()
    prom = prometheus_factory([f"127.0.0.1:{port}"])  # scrapes the example's port once it is up
    summary_path = tmp_path / "summary.json"
    proc = subprocess.Popen(
        [sys.executable, str(SCRIPT), "--alertmanager-url", alertmanager.url, "--metrics-port", str(port),
         "--endpoints", "16", "--sites", "3", "--hours", "2", "--seed", "1", "--core-only",
         "--linger", "120", "--summary", str(summary_path), "--workdir", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
        env={**os.environ, "OCAD_PLUGINS_AUTOLOAD": "0"})
    try:
        helpers.wait_for(lambda: summary_path.exists() or proc.poll() is not None, 240.0,
                         "the example to finish its run")
        assert proc.poll() is None, f"the example exited early ({proc.returncode}):\n{proc.stdout.read()}"
        summary = helpers.wait_for(lambda: json.loads(summary_path.read_text() or "null"), 5.0, "the summary")
        assert summary["delivered"] and summary["alertmanager"]["failed"] == 0
        ev = summary["events"]
        assert ev["open"] > 0 and ev["resolve"] > 0

        # Prometheus scraped the example's metrics: once a scrape after the run's end is in
        # (scrapes during the run see lower counts), the counts equal the example's own.
        def counted():
            r = helpers.prom_query(prom, "ocad_alert_events_total")
            return {x["metric"]["event"]: int(float(x["value"][1])) for x in r} == ev
        helpers.wait_for(counted, WAIT_S, f"Prometheus to report the alert events {ev}")

        # Alertmanager: what is still open is active there, with the inventory's labels.
        am = {a["labels"]["endpoint_id"]: a for a in helpers.get_json(alertmanager.url + "/api/v2/alerts")}
        assert sorted(am) == summary["open_at_end"]
        assert all(a["labels"]["source"] == "ocad" and a["labels"]["site"] for a in am.values())
        # Resolved alerts reached the receiver as resolved notifications.
        helpers.wait_for(lambda: webhook.alerts("resolved"), WAIT_S, "a resolved notification")

        # Site-wide correlation found the site of the site-wide fault.
        assert summary["site_wide_faults"], "the fleet has a site-wide fault"
        assert set(summary["site_incidents"]) & set(summary["site_wide_faults"])
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
