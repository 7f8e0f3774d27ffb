"""The daemon's HTTP endpoint: `/metrics`, `/healthz`, `/readyz`, `/status`.

Owns: one stdlib `ThreadingHTTPServer` on a thread of its own, so that a scrape never
waits for the event loop and a busy loop never fails a scrape. Must not: compute what it
serves: `/metrics` is the `Metrics` registry as it stands, `/readyz` and `/status` ask the
callables the daemon hands over (`/status` is built on the event loop, see
`controller.runner.daemon`).
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import structlog
from prometheus_client import CONTENT_TYPE_LATEST
from prometheus_client.exposition import generate_latest

from controller.metrics import Metrics

log = structlog.get_logger(__name__)


def parse_address(address: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[v6]:PORT`, or `:PORT` for every interface) to (host, port)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"expected HOST:PORT, got {address!r}")
    return host.strip("[]") or "0.0.0.0", int(port)


class MetricsServer:
    """`start()` binds and serves on a daemon thread; `stop()` shuts it down."""

    def __init__(
        self,
        address: str,
        *,
        metrics: Metrics,
        ready: Callable[[], bool],
        status: Callable[[], Mapping[str, Any]],
    ) -> None:
        self.host, self.port = parse_address(address)
        self.metrics = metrics
        self.ready = ready
        self.status = status
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}"

    def start(self) -> None:
        server = ThreadingHTTPServer((self.host, self.port), _handler(self))
        server.daemon_threads = True
        self.port = int(server.server_address[1])  # port 0 picks one
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.2}, name="http", daemon=True
        )
        self._thread.start()
        log.info("serving.started", address=self.address)

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2)


def _handler(owner: MetricsServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        server_version = "ecs-infer"

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            try:
                if path == "/metrics":
                    self._send(200, generate_latest(owner.metrics.registry), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    self._send(200, b"ok\n")
                elif path == "/readyz":
                    ready = owner.ready()
                    self._send(200 if ready else 503, b"ready\n" if ready else b"not ready\n")
                elif path == "/status":
                    body = json.dumps(owner.status(), indent=2, default=str).encode()
                    self._send(200, body + b"\n", "application/json")
                else:
                    self._send(404, b"not found: try /metrics, /healthz, /readyz, /status\n")
            except Exception as exc:  # a failing page must not take the server down
                log.exception("serving.failed", path=path)
                self._send(500, f"error: {exc}\n".encode())

        def _send(self, code: int, body: bytes, content_type: str = "text/plain") -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass  # a scrape every few seconds is not worth a log line

    return Handler
