"""The HTTP endpoint: a real server on loopback, real requests."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from controller.metrics import Metrics
from controller.serving import MetricsServer, parse_address


def get(server: MetricsServer, path: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(f"http://{server.address}{path}", timeout=5) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


@pytest.fixture
def served() -> Iterator[tuple[MetricsServer, dict[str, Any]]]:
    state: dict[str, Any] = {"ready": False, "status": {"deployments": {}}}
    metrics = Metrics()
    metrics.leader.set(1)
    metrics.reconcile.labels(deployment="bert", result="success").inc()

    def status() -> dict[str, Any]:
        if isinstance(state["status"], Exception):
            raise state["status"]
        return dict(state["status"])

    server = MetricsServer(
        "127.0.0.1:0", metrics=metrics, ready=lambda: bool(state["ready"]), status=status
    )
    server.start()
    yield server, state
    server.stop()


def test_metrics_healthz_readyz_status(served: tuple[MetricsServer, dict[str, Any]]) -> None:
    server, state = served
    assert server.port != 0
    code, content_type, body = get(server, "/metrics")
    assert code == 200 and content_type.startswith("text/plain")
    assert 'ecsinfer_reconcile_total{deployment="bert",result="success"} 1.0' in body
    assert "ecsinfer_leader 1.0" in body
    assert get(server, "/healthz")[0] == 200
    assert get(server, "/readyz")[0] == 503
    state["ready"] = True
    assert get(server, "/readyz")[0] == 200
    state["status"] = {"deployments": {"bert": {"replicas": {"desired": 2}}}}
    code, content_type, body = get(server, "/status")
    assert code == 200 and content_type == "application/json"
    assert json.loads(body)["deployments"]["bert"]["replicas"]["desired"] == 2
    assert get(server, "/nope")[0] == 404


def test_a_failing_page_is_a_500_and_the_server_keeps_serving(
    served: tuple[MetricsServer, dict[str, Any]],
) -> None:
    server, state = served
    state["status"] = RuntimeError("boom")
    code, _, body = get(server, "/status")
    assert code == 500 and "boom" in body
    assert get(server, "/healthz")[0] == 200


def test_parse_address() -> None:
    assert parse_address("127.0.0.1:9108") == ("127.0.0.1", 9108)
    assert parse_address(":9108") == ("0.0.0.0", 9108)
    assert parse_address("[::1]:9108") == ("::1", 9108)
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address("localhost")
