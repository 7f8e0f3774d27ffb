"""Fixtures of the end-to-end tests: the sandbox process (one per session) and the
fault-injecting proxy in front of it (one per module). See `e2e_helpers`."""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
from e2e_helpers import AwsProxy, Sandbox, aws_env, eventually, free_port


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sandbox]:
    """`ecs-infer sandbox --no-controller` as a process of its own."""
    port = free_port()
    log = tmp_path_factory.mktemp("sandbox") / "sandbox.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "sandbox",
                "--no-controller",
                "--aws-port",
                str(port),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=aws_env(f"http://127.0.0.1:{port}"),
        )
    try:
        eventually(
            lambda: process.poll() is None and "AWS endpoint:" in log.read_text(),
            timeout=120,
            what="the sandbox to start",
        )
        yield Sandbox(process=process, endpoint=f"http://127.0.0.1:{port}", log=log)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="module")
def proxy(sandbox: Sandbox) -> Iterator[AwsProxy]:
    front = AwsProxy(upstream=sandbox.endpoint)
    front.start()
    yield front
    front.stop()
