"""Real Alertmanager and Prometheus servers (Debian packages) on 127.0.0.1, for the NOC tests.

Each fixture starts the server on a free localhost port with a temporary config and
storage directory, in its own process group, waits (bounded) until ``/-/ready`` answers,
and kills the group on teardown. Without the binaries the tests skip and say how to
install them (``make test`` does it when it runs as root with apt).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

HOST = "127.0.0.1"
START_TIMEOUT_S = 30.0


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def binary(name: str, package: str, env: str) -> str:
    """The server's executable: ``$env`` if set (another build), else the Debian package's."""
    override = os.environ.get(env)
    if override:
        path = override if os.access(override, os.X_OK) else None
    else:
        path = shutil.which(name) or (f"/usr/bin/{name}" if os.access(f"/usr/bin/{name}", os.X_OK) else None)
    if path is None:
        pytest.skip(f"{override or name} is not installed: apt-get install -y {package} (Debian/Ubuntu; "
                    f"`make test` installs it when run as root), or set {env} to the executable")
    return path


def get_json(url: str, timeout: float = 5.0) -> Any:
    with urllib.request.urlopen(url, timeout=timeout) as r:  # noqa: S310 - localhost test servers
        return json.loads(r.read())


def wait_for(check: Any, timeout: float, what: str, interval: float = 0.2) -> Any:
    """Poll ``check()`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            v = check()
            if v:
                return v
        except Exception as exc:  # noqa: BLE001 - a server still starting answers with errors
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}" + (f" ({last_exc})" if last_exc else ""))


class Server:
    def __init__(self, name: str, cmd: list[str], port: int, log: Path) -> None:
        self.name, self.cmd, self.port, self.log = name, cmd, port, log
        self.url = f"http://{HOST}:{port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Server:
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(self.cmd, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                         start_new_session=True)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.log_tail()}")
            with urllib.request.urlopen(self.url + "/-/ready", timeout=2) as r:  # noqa: S310
                return r.status == 200

        try:
            wait_for(ready, START_TIMEOUT_S, f"{self.name} on {self.url}")
        except RuntimeError as exc:
            self.stop()
            raise AssertionError(str(exc)) from None
        except AssertionError as exc:
            self.stop()
            raise AssertionError(f"{exc}\n{self.log_tail()}") from None
        return self

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        p = self.proc
        if p is None or p.poll() is not None:
            return
        try:
            os.killpg(p.pid, signal.SIGTERM)
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=10)
        except ProcessLookupError:
            pass


class Webhook:
    """A localhost webhook receiver: Alertmanager's notifications land in ``self.payloads``."""

    def __init__(self) -> None:
        self.payloads: list[dict[str, Any]] = []
        lock = threading.Lock()
        payloads = self.payloads

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server API
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with lock:
                    payloads.append(json.loads(body))
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((HOST, 0), Handler)
        self.url = f"http://{HOST}:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def alerts(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every alert of every notification so far (optionally only ``firing`` / ``resolved``)."""
        out = [a for p in list(self.payloads) for a in p.get("alerts", [])]
        return [a for a in out if status is None or a.get("status") == status]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture
def alertmanager(tmp_path: Path, webhook: Webhook) -> Iterator[Server]:
    """A real Alertmanager (Debian ``prometheus-alertmanager``) on a free localhost port.

    Routes everything to ``webhook`` with short group timers, so a resolve is notified
    within seconds. Clustering is off (``--cluster.listen-address=``): no other port opens.
    """
    exe = binary("prometheus-alertmanager", "prometheus-alertmanager", "OCAD_ALERTMANAGER_BIN")
    port = free_port()
    cfg = tmp_path / "alertmanager.yml"
    cfg.write_text(f"""\
route:
  receiver: hook
  group_by: ['alertname', 'endpoint_id']
  group_wait: 1s
  group_interval: 1s
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: '{webhook.url}'
        send_resolved: true
""")
    (tmp_path / "am-data").mkdir()
    server = Server("alertmanager", [exe, f"--config.file={cfg}", f"--storage.path={tmp_path / 'am-data'}",
                                     f"--web.listen-address={HOST}:{port}", "--cluster.listen-address=",
                                     f"--web.external-url=http://{HOST}:{port}"],
                    port, tmp_path / "alertmanager.log")
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def prometheus_factory(tmp_path: Path) -> Iterator[Any]:
    """Start a real Prometheus (Debian ``prometheus``) scraping the given localhost targets every second."""
    exe = binary("prometheus", "prometheus", "OCAD_PROMETHEUS_BIN")
    servers: list[Server] = []

    def start(targets: list[str]) -> Server:
        port = free_port()
        cfg = tmp_path / f"prometheus-{port}.yml"
        cfg.write_text(f"""\
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: ocad
    static_configs:
      - targets: {json.dumps(targets)}
""")
        data = tmp_path / f"prom-data-{port}"
        data.mkdir()
        server = Server("prometheus", [exe, f"--config.file={cfg}", f"--storage.tsdb.path={data}",
                                       f"--web.listen-address={HOST}:{port}"],
                        port, tmp_path / f"prometheus-{port}.log")
        servers.append(server)
        return server.start()

    try:
        yield start
    finally:
        for s in servers:
            s.stop()


def prom_query(server: Server, query: str) -> list[dict[str, Any]]:
    """The result vector of an instant query (``/api/v1/query``)."""
    doc = get_json(f"{server.url}/api/v1/query?" + urllib.parse.urlencode({"query": query}))
    assert doc["status"] == "success", doc
    return list(doc["data"]["result"])


@pytest.fixture
def helpers() -> Any:
    """The helpers above for the test modules (conftest is not importable under importlib mode)."""
    return SimpleNamespace(free_port=free_port, get_json=get_json, wait_for=wait_for, prom_query=prom_query)
