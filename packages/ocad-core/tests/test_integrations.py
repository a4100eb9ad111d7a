"""ocad.core.integrations without servers: payload mapping, sink retries and bounds, collector, CLI.

The real Alertmanager / Prometheus round trips are in tests/integration/.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time

import attrs
import pytest

from ocad.core import Alert, AlertEvent, Evidence, Monitor, OcadConfigError, OcadValidationError
from ocad.core.cli import main
from ocad.core.tooling import generate_fleet

httpx = pytest.importorskip("httpx")
pytest.importorskip("prometheus_client")

from ocad.core.integrations.alertmanager import (  # noqa: E402
    AlertmanagerEncoder,
    AlertmanagerSink,
    alertmanager_payloads,
    rfc3339,
    to_alertmanager,
)
from ocad.core.integrations.prometheus import OcadCollector, serve  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

CORE = {"monitor": {"use_shipped_models": False}}
EV = Evidence(detector="rule", kind="rule", metric="udp_echo_rtt_ms", observed=42.0, expected=5.0, score=0.999,
              contribution=0.6)


def _alert(**kw) -> Alert:
    d = dict(alert_id="a-1", endpoint_id="oru-1", opened_ts=1_767_225_600.0, updated_ts=1_767_225_600.0,
             resolved_ts=None, severity="warning", score=0.61, peak_score=0.61, kinds=("rule", "spike"),
             evidence=(EV,), labels={"site": "par-3", "role": "o-ru"})
    d.update(kw)
    return Alert(**d)


# -- payload --------------------------------------------------------------------------
def test_rfc3339_is_utc_with_z():
    assert rfc3339(0) == "1970-01-01T00:00:00.000Z"
    assert rfc3339(1_767_225_600.25) == "2026-01-01T00:00:00.250Z"


def test_payload_maps_labels_annotations_and_times():
    p = to_alertmanager(_alert(), generator_url="https://grafana/d/x?var-ep={endpoint_id}&a={alert_id}",
                        static_labels={"source": "ocad"})
    assert p["labels"] == {"alertname": "OcadAnomaly", "endpoint_id": "oru-1", "severity": "warning",
                           "site": "par-3", "role": "o-ru", "source": "ocad"}
    ann = p["annotations"]
    assert ann["alert_id"] == "a-1" and ann["kinds"] == "rule+spike" and ann["score"] == "0.6100"
    assert ann["summary"] == "warning anomaly on oru-1: score 0.61 (rule+spike)"
    assert ann["description"] == ("rule (rule) on udp_echo_rtt_ms: observed 42 vs expected 5, score 0.999, "
                                  "contribution 0.60")
    assert json.loads(ann["evidence"]) == [EV.to_dict()]
    assert all(isinstance(v, str) for v in ann.values())  # Alertmanager wants strings
    assert p["startsAt"] == "2026-01-01T00:00:00.000Z" and "endsAt" not in p
    assert p["generatorURL"] == "https://grafana/d/x?var-ep=oru-1&a=a-1"
    done = to_alertmanager(_alert(resolved_ts=1_767_225_900.0))
    assert done["endsAt"] == "2026-01-01T00:05:00.000Z" and "generatorURL" not in done


def test_endpoint_labels_never_override_ocads_own():
    # EndpointLabels refuses the reserved names; an Alert built by hand with them still loses.
    p = to_alertmanager(_alert(labels={"severity": "info", "site": "x"}))
    assert p["labels"]["severity"] == "warning"
    with pytest.raises(OcadValidationError):
        AlertmanagerEncoder(static_labels={"bad-name": "x"})


def test_a_severity_change_resolves_the_previous_label_set():
    a = _alert()
    up = attrs.evolve(a, severity="critical", updated_ts=a.opened_ts + 30)
    res = attrs.evolve(up, resolved_ts=a.opened_ts + 90, updated_ts=a.opened_ts + 90)
    out = alertmanager_payloads([AlertEvent("open", a.opened_ts, a), AlertEvent("update", up.updated_ts, up),
                                 AlertEvent("resolve", res.resolved_ts, res)])
    assert [(p["labels"]["severity"], p.get("endsAt")) for p in out] == [
        ("warning", None),
        ("warning", rfc3339(up.updated_ts)),  # the warning alert ends when it became critical
        ("critical", None),
        ("critical", rfc3339(res.resolved_ts)),
    ]


# -- sink -----------------------------------------------------------------------------
class FakeAM:
    """An httpx transport that answers with the given statuses in turn, then 200; records bodies."""

    def __init__(self, statuses=(), delay_s=0.0):
        self.statuses = list(statuses)
        self.bodies: list[list[dict]] = []
        self.delay_s = delay_s

    def __call__(self, request: httpx.Request) -> httpx.Response:
        time.sleep(self.delay_s)
        self.bodies.append(json.loads(request.content))
        code = self.statuses.pop(0) if self.statuses else 200
        if code == -1:
            raise httpx.ConnectError("refused", request=request)
        return httpx.Response(code, text="ok" if code < 300 else "nope")

    def client(self) -> httpx.Client:
        return httpx.Client(transport=httpx.MockTransport(self))


def _events(n: int) -> list[AlertEvent]:
    return [AlertEvent("open", 1_767_225_600.0 + i, _alert(alert_id=f"a-{i}", endpoint_id=f"oru-{i}"))
            for i in range(n)]


def test_sink_retries_with_backoff_then_delivers():
    am = FakeAM([503, -1, 429])
    sink = AlertmanagerSink("http://am.test:9093/", client=am.client(), backoff_s=0.01, max_retries=5)
    with sink:
        sink.send(_events(3))
        assert sink.flush(5)
    assert sink.url == "http://am.test:9093/api/v2/alerts"
    assert sink.stats["retries"] == 3 and sink.stats["sent"] == 3 and sink.stats["failed"] == 0
    assert len(am.bodies) == 4 and am.bodies[-1] == am.bodies[0]


def test_sink_gives_up_after_max_retries_and_counts_it():
    am = FakeAM([500] * 10)
    sink = AlertmanagerSink("http://am.test", client=am.client(), backoff_s=0.01, max_retries=2)
    with sink:
        sink.send(_events(4))
        assert sink.flush(5)
    assert sink.stats["failed"] == 4 and sink.stats["retries"] == 2 and len(am.bodies) == 3


def test_sink_does_not_retry_a_rejected_payload():
    am = FakeAM([400])
    with AlertmanagerSink("http://am.test", client=am.client(), backoff_s=0.01) as sink:
        sink.send(_events(2))
        assert sink.flush(5)
    assert sink.stats["rejected"] == 2 and sink.stats["retries"] == 0 and len(am.bodies) == 1


def test_send_never_blocks_and_the_queue_is_bounded():
    am = FakeAM(delay_s=0.5)  # a slow Alertmanager
    sink = AlertmanagerSink("http://am.test", client=am.client(), max_pending=10, batch_size=5)
    sink.start()
    t0 = time.monotonic()
    sink.send(_events(100))
    assert time.monotonic() - t0 < 0.2
    assert sink.stats["dropped"] == 90
    assert not sink.flush(0.1)  # still posting: flush says so instead of waiting forever
    t0 = time.monotonic()
    sink.close(timeout=0.2)
    assert time.monotonic() - t0 < 0.2 + sink.timeout_s + 1.5
    with pytest.raises(OcadConfigError, match="after close"):
        sink.send(_events(1))


def test_sink_resends_open_alerts_and_forgets_resolved_ones():
    am = FakeAM()
    sink = AlertmanagerSink("http://am.test", client=am.client(), resend_interval_s=0.2)
    with sink:
        evs = _events(2)
        sink.send(evs)
        done = attrs.evolve(evs[1].alert, resolved_ts=evs[1].ts + 60)
        sink.send([AlertEvent("resolve", done.resolved_ts, done)])
        time.sleep(0.7)
        assert sink.flush(5)
    assert [p["labels"]["endpoint_id"] for p in sink.open_payloads()] == ["oru-0"]
    assert sink.stats["resent"] >= 2
    resent = [p for body in am.bodies[1:] for p in body]
    assert {p["labels"]["endpoint_id"] for p in resent} == {"oru-0"}
    # A resent firing alert ends a few resend intervals from now, not at its first endsAt.
    last = resent[-1]
    ends = time.time() + 4 * 0.2
    assert abs(_epoch(last["endsAt"]) - ends) < 1.5


def _epoch(s: str) -> float:
    import datetime as dt
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


@pytest.mark.parametrize("kw, msg", [({"timeout_s": 0}, "timeout_s"), ({"max_pending": 0}, "max_pending"),
                                     ({"backoff_s": -1}, "backoff_s")])
def test_sink_config_errors(kw, msg):
    with pytest.raises(OcadConfigError, match=msg):
        AlertmanagerSink("http://am.test", **kw)
    with pytest.raises(OcadConfigError, match="url"):
        AlertmanagerSink("am.test:9093")


# -- collector ------------------------------------------------------------------------
def _scrape(url: str) -> dict[str, dict[tuple, float]]:
    text = httpx.get(url).text
    out: dict[str, dict[tuple, float]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, {})[tuple(sorted(s.labels.items()))] = s.value
    return out


class _ModelDetector:
    name, kind, metrics, window = "fake_ml", "residual", ("udp_echo_rtt_ms",), 8
    sources = ("tcn-udp_echo_rtt_ms@1.2.0",)

    def score(self, view):
        raise RuntimeError("boom")  # a detector failure, counted


def test_collector_exposes_the_monitors_health():
    fleet = generate_fleet(6, 1800, 5.0, seed=3)
    mon = Monitor(CORE, extra_detectors=[_ModelDetector()])
    with serve(mon, port=0) as srv:
        events = [ev for t in range(len(fleet.ts)) for ev in mon.observe_columns(*fleet.columns(t))]
        mon.observe([{"endpoint_id": "x", "ts": float(fleet.ts[-1]) + 5, "udp_echo_rtt_ms": -1.0}])
        m = _scrape(srv.url)
    assert srv.url.startswith("http://127.0.0.1:")
    assert m["ocad_records_total"][()] == mon.stats.records
    assert m["ocad_tick_duration_seconds_count"][()] == len(fleet.ts) + 1
    assert m["ocad_tick_duration_seconds_bucket"][(("le", "+Inf"),)] == len(fleet.ts) + 1
    assert m["ocad_values_rejected_total"] == {(("metric", k[0]), ("reason", k[1])): float(v)
                                               for k, v in mon.stats.rejected.items()}
    assert m["ocad_detector_failures_total"][(("detector", "fake_ml"),)] > 0
    assert m["ocad_model_info"] == {(("detector", "fake_ml"), ("model", "tcn-udp_echo_rtt_ms@1.2.0")): 1.0}
    assert m["ocad_alert_events_total"][(("event", "open"),)] == sum(ev.event == "open" for ev in events)
    sev = {dict(k)["severity"]: v for k, v in m["ocad_open_alerts"].items()}
    assert set(sev) >= {"warning", "critical"} and sum(sev.values()) == len(mon.open_alerts())
    assert set(m["ocad_evictions_total"]) == {(("cause", "idle"),), (("cause", "capacity"),)}


def test_collector_const_labels_and_a_scrape_racing_ticks():
    from prometheus_client import CollectorRegistry, generate_latest

    fleet = generate_fleet(20, 1800, 5.0, seed=5)
    mon = Monitor(CORE)
    reg = CollectorRegistry(auto_describe=False)
    reg.register(OcadCollector(mon, const_labels={"shard": "3"}))
    errors: list[BaseException] = []
    stop = threading.Event()

    def scrape_loop():
        while not stop.is_set():
            try:
                generate_latest(reg)
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)

    th = threading.Thread(target=scrape_loop)
    th.start()
    try:
        for t in range(len(fleet.ts)):
            mon.observe_columns(*fleet.columns(t))
    finally:
        stop.set()
        th.join()
    assert errors == []
    text = generate_latest(reg).decode()
    assert 'ocad_records_total{shard="3"}' in text
    with pytest.raises(OcadValidationError):
        OcadCollector(mon, const_labels={"0bad": "x"})


# -- import isolation and CLI ---------------------------------------------------------
def test_import_ocad_core_does_not_import_the_integrations():
    code = ("import sys, ocad.core; bad = [m for m in ('ocad.core.integrations', 'httpx', 'prometheus_client') "
            "if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.fixture(scope="module")
def sample_csv(tmp_path_factory):
    d = tmp_path_factory.mktemp("cli")
    fleet = generate_fleet(6, 3600, 5.0, seed=2, n_sites=2)
    p = d / "fleet.csv"
    fleet.write_csv(p)
    inv = d / "inventory.csv"
    inv.write_text("endpoint_id,site,rack\n" + "".join(f"{e.endpoint_id},{e.site},{i}\n"
                                                         for i, e in enumerate(fleet.endpoints)))
    # the same fleet with site / rack as extra columns of the samples
    rows = p.read_text().splitlines()
    racks = {e.endpoint_id: (e.site, str(i)) for i, e in enumerate(fleet.endpoints)}
    ext = [rows[0] + ",site,rack"] + [r + "," + ",".join(racks[r.split(",")[0]]) for r in rows[1:]]
    q = d / "fleet-cols.csv"
    q.write_text("\n".join(ext) + "\n")
    return p, inv, q, fleet


def test_cli_detect_alertmanager_format_with_inventory_labels(sample_csv, tmp_path, capsys):
    p, inv, _, fleet = sample_csv
    out = tmp_path / "am.json"
    assert main(["detect", str(p), "--core-only", "--format", "alertmanager", "--labels", str(inv),
                 "--generator-url", "http://noc/{endpoint_id}", "--out", str(out)]) == 0
    payloads = json.loads(out.read_text())
    assert payloads
    sites = {e.endpoint_id: e.site for e in fleet.endpoints}
    for a in payloads:
        lab = a["labels"]
        assert lab["alertname"] == "OcadAnomaly" and lab["site"] == sites[lab["endpoint_id"]]
        assert lab["rack"].isdigit()
        assert a["generatorURL"] == f"http://noc/{lab['endpoint_id']}"
    assert any("endsAt" in a for a in payloads)  # resolves


def test_cli_detect_label_columns_from_the_input(sample_csv, tmp_path):
    p, inv, q, _ = sample_csv
    a, b = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    assert main(["detect", str(p), "--core-only", "--format", "jsonl", "--labels", str(inv), "--out", str(a)]) == 0
    assert main(["detect", str(q), "--core-only", "--format", "jsonl", "--label-columns", "site,rack",
                 "--out", str(b)]) == 0
    # Same alerts, same labels: label columns are not taken for metrics.
    assert a.read_text() == b.read_text()
    assert json.loads(b.read_text().splitlines()[0])["labels"]["rack"].isdigit()


def test_cli_detect_serves_metrics_while_it_runs(sample_csv, tmp_path, capsys):
    p, *_ = sample_csv
    port = _free_port()
    got: dict[str, str] = {}

    def scrape():
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=1).text
                if "ocad_alert_events_total" in text and 'event="open"} 0.0' not in text:
                    got["text"] = text
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)

    th = threading.Thread(target=scrape)
    th.start()
    assert main(["detect", str(p), "--core-only", "--out", str(tmp_path / "x.csv"), "--metrics-port", str(port),
                 "--metrics-linger", "3"]) == 0
    th.join()
    assert "ocad_records_total" in got.get("text", "")


def _free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_detect_label_columns_must_exist(sample_csv, tmp_path, capsys):
    p, *_ = sample_csv
    assert main(["detect", str(p), "--core-only", "--label-columns", "site,nosuch", "--out",
                 str(tmp_path / "x.csv")]) == 3  # input data (docs/cli.md)
    assert "--label-columns" in capsys.readouterr().err


def test_cli_detect_busy_metrics_port_is_one_clear_error(sample_csv, tmp_path, capsys):
    import socket

    p, *_ = sample_csv
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main(["detect", str(p), "--core-only", "--out", str(tmp_path / "x.csv"),
                     "--metrics-port", str(port)]) == 2  # usage (docs/cli.md)
    err = capsys.readouterr().err
    assert f"--metrics-port {port}" in err and "Traceback" not in err
