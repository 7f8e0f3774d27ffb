"""Helpers of the end-to-end tests: the real `ecs-infer run` process against the real
`ecs-infer sandbox --no-controller` process, over loopback, with a fault-injecting proxy
between the two.

Everything here is a separate process or a thread on 127.0.0.1: the daemon reaches the
emulated AWS through `AwsProxy` (which can fail chosen requests), probes the sandbox's
model servers over gRPC, and is observed the way Prometheus and an operator would: a
`/metrics` scrape and `/status`.
"""

from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TypeVar

import boto3
from prometheus_client.parser import text_string_to_metric_families

REGION = "us-east-1"
_T = TypeVar("_T")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def eventually(
    check: Callable[[], _T | None], *, timeout: float = 60.0, interval: float = 0.2, what: str = ""
) -> _T:
    """Poll `check` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except (OSError, urllib.error.URLError, KeyError) as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what or check}: {last!r}")


def ecs_infer(
    sandbox: Sandbox, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    """The real `ecs-infer ARGS...` process against the sandbox's AWS endpoint."""
    return subprocess.run(
        [sys.executable, "-m", "controller", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=aws_env(sandbox.endpoint),
        check=False,
    )


def table_row(text: str, first_cell: str) -> list[str]:
    """The cells of the row starting with `first_cell` in a table rich printed."""
    for line in text.splitlines():
        cells = [cell.strip() for cell in line.split("│")[1:-1]]
        if cells and cells[0] == first_cell:
            return cells
    raise AssertionError(f"no row {first_cell!r} in:\n{text}")


def aws_env(endpoint: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    env.pop("AWS_PROFILE", None)
    env.pop("AWS_SESSION_TOKEN", None)
    return env


@dataclass
class Sandbox:
    process: subprocess.Popen[bytes]
    endpoint: str
    log: Path

    def client(self, service: str) -> Any:
        return boto3.client(
            service,
            endpoint_url=self.endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )


# --- faults between the controller and the emulator ------------------------------------


@dataclass
class Rule:
    operation: str
    contains: str
    code: str = "ClientException"
    message: str = "injected by the e2e proxy"
    status: int = 400


@dataclass
class AwsProxy:
    """Forwards every request to the sandbox's AWS endpoint, except those a `Rule` fails."""

    upstream: str
    rules: list[Rule] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    requests: int = 0
    server: ThreadingHTTPServer | None = None

    @property
    def endpoint(self) -> str:
        assert self.server is not None
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> None:
        proxy = self
        upstream = self.upstream.removeprefix("http://")

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                proxy.requests += 1
                target = self.headers.get("X-Amz-Target", "")
                operation = target.rpartition(".")[2]
                text = body.decode(errors="replace")
                for rule in proxy.rules:
                    if rule.operation == operation and rule.contains in text:
                        proxy.failed.append(operation)
                        payload = json.dumps({"__type": rule.code, "message": rule.message})
                        self._reply(rule.status, payload.encode(), "application/x-amz-json-1.1")
                        return
                connection = http.client.HTTPConnection(upstream, timeout=30)
                try:
                    headers = {k: v for k, v in self.headers.items() if k.lower() != "host"}
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    data = response.read()
                    content_type = response.getheader("Content-Type", "text/xml")
                    self._reply(response.status, data, content_type)
                finally:
                    connection.close()

            do_GET = do_POST

            def _reply(self, status: int, body: bytes, content_type: str) -> None:
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", content_type)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the daemon stopped waiting (shutdown): nothing to answer

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


# --- the daemon ---------------------------------------------------------------------


@dataclass
class Daemon:
    process: subprocess.Popen[bytes]
    address: str
    folder: Path
    log: Path

    def get(self, path: str) -> tuple[int, bytes]:
        try:
            with urllib.request.urlopen(f"http://{self.address}{path}", timeout=5) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as error:
            return int(error.code), error.read()

    def metrics(self) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        """Every sample of a real scrape, by (name, labels)."""
        status, body = self.get("/metrics")
        assert status == 200
        samples: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
        for family in text_string_to_metric_families(body.decode()):
            for sample in family.samples:
                samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
        return samples

    def sample(self, name: str, **labels: str) -> float | None:
        return self.metrics().get((name, frozenset(labels.items())))

    def status(self) -> dict[str, Any]:
        code, body = self.get("/status")
        assert code == 200
        document: dict[str, Any] = json.loads(body)
        return document

    def stop(self, timeout: float = 10.0) -> tuple[int | None, float]:
        started = time.monotonic()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            code = None
        return code, time.monotonic() - started


def start_daemon(
    folder: Path, *, aws_endpoint: str, log: Path, extra: tuple[str, ...] = ()
) -> Daemon:
    address = f"127.0.0.1:{free_port()}"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "--log-format",
                "json",
                "run",
                str(folder),
                "--metrics-addr",
                address,
                "--resync-interval",
                "3",
                "--discovery-interval",
                "0.5",
                "--backoff-cap",
                "4",
                *extra,
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=aws_env(aws_endpoint),
        )
    daemon = Daemon(process=process, address=address, folder=folder, log=log)
    eventually(
        lambda: process.poll() is None and daemon.get("/healthz")[0] == 200,
        timeout=30,
        what="the daemon to serve /healthz",
    )
    return daemon
