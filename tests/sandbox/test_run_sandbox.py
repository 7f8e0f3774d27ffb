"""`run_sandbox` as a process of its own: ready line, the controller applying the demo
spec in it, a task answering Predict, and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import boto3
from sandbox_helpers import CLUSTER, predict, service_tasks, task_address

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "specs" / "ecs-inf1-demo.yaml"
T = TypeVar("T")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _eventually(probe: Callable[[], T], *, within_s: float) -> T:
    deadline = time.monotonic() + within_s
    while not (found := probe()):
        assert time.monotonic() < deadline, f"not reached within {within_s} s"
        time.sleep(0.2)
    return found


def _get(url: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except (OSError, urllib.error.HTTPError) as error:
        return getattr(error, "code", 0), ""


def _client(service: str, endpoint: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_run_sandbox_serves_the_demo_and_stops_on_sigterm(tmp_path: Path) -> None:
    port, metrics_port = _free_port(), _free_port()
    code = (
        "import sys; from pathlib import Path; from controller.sandbox.main import run_sandbox; "
        f"sys.exit(run_sandbox(specs=Path({str(DEMO)!r}), aws_port={port}, "
        f"metrics_addr='127.0.0.1:{metrics_port}', controller=True))"
    )
    log = tmp_path / "sandbox.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with log.open("wb") as out:
        process = subprocess.Popen(
            [sys.executable, "-c", code], stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=env
        )
    try:
        endpoint = f"http://127.0.0.1:{port}"
        _eventually(
            lambda: process.poll() is not None or f"AWS endpoint: {endpoint}" in log.read_text(),
            within_s=60,
        )
        assert process.poll() is None, log.read_text()
        ecs, ec2 = _client("ecs", endpoint), _client("ec2", endpoint)
        tasks = _eventually(
            lambda: [
                t
                for t in (service_tasks(ecs) if ecs.list_clusters()["clusterArns"] else [])
                if t["lastStatus"] == "RUNNING"
            ],
            within_s=60,
        )
        response, _ = asyncio.run(predict(task_address(ecs, ec2, tasks[0])))
        assert "sequence_output" in response.outputs
        assert f"joined cluster {CLUSTER}" in log.read_text()
        metrics = f"http://127.0.0.1:{metrics_port}"
        _eventually(lambda: _get(f"{metrics}/readyz")[0] == 200, within_s=30)
        scrape = _eventually(
            lambda: (
                (body := _get(f"{metrics}/metrics")[1])
                and 'ecsinfer_probe_success{deployment="bert"' in body
                and body
            ),
            within_s=60,
        )
        assert "ecsinfer_deployment_replicas" in scrape
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        started = time.monotonic()
        try:
            returncode = process.wait(20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert returncode == 0, log.read_text()
    assert time.monotonic() - started < 10
    with socket.socket() as sock:  # nothing listens on the emulator's port any more
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a restart would
        sock.bind(("127.0.0.1", port))
