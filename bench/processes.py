"""What the benchmarks that run `ecs-infer` as processes share: a free loopback port,
the environment that points a process at the sandbox's AWS endpoint, polling, and a
`/metrics` scrape. Imported by the scripts beside it (`bench/` is their path)."""

from __future__ import annotations

import os
import socket
import time
import urllib.request
from collections.abc import Callable
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

REGION = "us-east-1"

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(endpoint: str) -> dict[str, str]:
    """This process's environment, pointed at the emulated account."""
    env = dict(os.environ)
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
        AWS_ACCESS_KEY_ID="testing",
        AWS_SECRET_ACCESS_KEY="testing",
    )
    env.pop("AWS_PROFILE", None)
    return env


def wait_for(
    check: Callable[[], Any],
    *,
    timeout: float,
    what: str,
    interval: float = 0.5,
    retry_on: tuple[type[Exception], ...] = (OSError,),
) -> Any:
    """Poll `check` until it returns something truthy; exit the benchmark on a timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
        except retry_on as exc:
            last = exc
        else:
            if last:
                return last
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout:g}s waiting for {what}: {last!r}")


def scrape(address: str) -> Samples:
    """Every sample of one `/metrics` scrape, by (name, labels)."""
    with urllib.request.urlopen(f"http://{address}/metrics", timeout=10) as response:
        text = response.read().decode()
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }
