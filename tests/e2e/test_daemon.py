"""`ecs-infer run` end to end: one daemon process on one spec folder, driven through its
folder (as git would), the emulated account (as an operator would) and its faults, and
observed through real `/metrics` scrapes and `/status`. The tests run in file order and
build on each other, like a day in the life of a cluster; the last one stops the daemon.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import (
    AwsProxy,
    Daemon,
    Rule,
    Sandbox,
    ecs_infer,
    eventually,
    start_daemon,
    table_row,
)

pytestmark = pytest.mark.timeout(600)

CLUSTER = "e2e"
CLUSTER_SPEC = f"""\
apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: {CLUSTER}
spec:
  capacity:
    instanceType: inf1.xlarge
    market: on-demand
    minInstances: 1
    maxInstances: 6
"""


def deployment_spec(name: str, *, replicas: int = 1) -> str:
    return f"""\
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: {CLUSTER}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:latest
  neuronCores: 4  # a whole inf1.xlarge: replicas share the host's gRPC port 8500
  replicas: {replicas}
  executionRoleArn: arn:aws:iam::123456789012:role/ecsTaskExecutionRole
  probe:
    interval: 1s
    timeout: 900ms
"""


@pytest.fixture(scope="module")
def daemon(
    sandbox: Sandbox, proxy: AwsProxy, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("e2e")
    folder = root / "specs"
    folder.mkdir()
    (folder / "cluster.yaml").write_text(CLUSTER_SPEC)
    running = start_daemon(folder, aws_endpoint=proxy.endpoint, log=root / "daemon.log")
    yield running
    running.stop()


def service(sandbox: Sandbox, name: str) -> dict[str, Any] | None:
    found = sandbox.client("ecs").describe_services(cluster=CLUSTER, services=[name])
    services = [s for s in found["services"] if s["status"] == "ACTIVE"]
    return services[0] if services else None


def probe_series(daemon: Daemon, deployment: str) -> dict[str, float]:
    """endpoint -> ecsinfer_probe_success, from one scrape."""
    return {
        dict(labels)["endpoint"]: value
        for (name, labels), value in daemon.metrics().items()
        if name == "ecsinfer_probe_success" and dict(labels).get("deployment") == deployment
    }


def probed_ok(daemon: Daemon, deployment: str, count: int) -> dict[str, float] | None:
    series = probe_series(daemon, deployment)
    return series if len(series) == count and all(v == 1 for v in series.values()) else None


def test_ready_healthy_leading_and_reporting_its_source(daemon: Daemon) -> None:
    eventually(lambda: daemon.get("/readyz")[0] == 200, timeout=60, what="/readyz 200")
    assert daemon.get("/healthz")[0] == 200
    assert daemon.sample("ecsinfer_leader") == 1
    assert daemon.sample("ecsinfer_spec_errors") == 0
    assert daemon.sample("ecsinfer_source_info", revision="none") == 1
    assert daemon.sample(
        "ecsinfer_reconcile_total", deployment=f"cluster/{CLUSTER}", result="success"
    )
    # Every AWS call is counted through the shell's request hook.
    assert (
        daemon.sample(
            "ecsinfer_aws_requests_total",
            service="ecs",
            operation="CreateCluster",
            outcome="success",
        )
        == 1
    )


def test_an_added_spec_converges_and_its_probe_latency_is_scraped(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    (daemon.folder / "alpha.yaml").write_text(deployment_spec("alpha"))
    eventually(
        lambda: (s := service(sandbox, "alpha")) and s["runningCount"] == 1,
        timeout=60,
        what="service alpha running one task",
    )
    endpoints = eventually(lambda: probed_ok(daemon, "alpha", 1), timeout=60, what="alpha probed")
    (endpoint,) = endpoints
    scrape = daemon.metrics()
    count = scrape[
        (
            "ecsinfer_probe_latency_seconds_count",
            frozenset({("deployment", "alpha"), ("endpoint", endpoint)}),
        )
    ]
    assert count >= 1
    assert endpoint.startswith("127.")  # loopback only, as the sandbox reports it
    eventually(
        lambda: (
            daemon.sample("ecsinfer_deployment_replicas", deployment="alpha", state="running") == 1
        ),
        timeout=30,
        what="replicas gauge",
    )
    assert daemon.sample("ecsinfer_deployment_replicas", deployment="alpha", state="desired") == 1
    assert daemon.sample("ecsinfer_drift", deployment="alpha", resource="service") == 0


def test_editing_replicas_converges(daemon: Daemon, sandbox: Sandbox) -> None:
    (daemon.folder / "alpha.yaml").write_text(deployment_spec("alpha", replicas=2))
    eventually(
        lambda: (s := service(sandbox, "alpha")) and s["desiredCount"] == 2,
        timeout=30,
        what="alpha updated to desiredCount 2",
    )
    eventually(lambda: probed_ok(daemon, "alpha", 2), timeout=60, what="both replicas probed")
    eventually(
        lambda: (
            daemon.sample("ecsinfer_deployment_replicas", deployment="alpha", state="running") == 2
        ),
        timeout=30,
        what="replicas gauge at 2",
    )
    assert daemon.status()["deployments"]["alpha"]["replicas"]["desired"] == 2


def test_status_command_reads_the_daemon(daemon: Daemon, sandbox: Sandbox) -> None:
    """`ecs-infer status` as a user runs it beside the daemon: per deployment, replicas,
    drift, probe p50 / p99 and the last reconcile, from the daemon's /status."""
    folder = str(daemon.folder)
    url = f"http://{daemon.address}"
    result = ecs_infer(sandbox, "status", folder, "--daemon", url, "--output", "json")
    assert result.returncode == 0, result.stderr
    row = json.loads(result.stdout)["deployments"]["alpha"]
    assert row["replicas"]["desired"] == 2
    assert row["drift"] == []
    assert row["probe"]["p50_ms"] > 0
    assert row["reconcile"]["result"] == "success"

    text = ecs_infer(sandbox, "status", folder, "--daemon", url)
    assert text.returncode == 0, text.stderr
    assert "from the daemon" in text.stdout
    cells = table_row(text.stdout, "alpha")
    assert cells[1:5] == ["2", "2", "0", "no"]  # desired, running, pending, drift
    assert cells[5].endswith("/2")  # of 2 endpoints, those whose last probe succeeded
    assert float(cells[6]) > 0  # p50 ms
    assert cells[8].startswith("success")


def test_a_failing_model_server_fails_its_own_endpoint_only(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    endpoints = daemon.status()["deployments"]["alpha"]["probe"]["endpoints"]
    assert len(endpoints) == 2
    (bad, bad_task), (good, _) = sorted((e, v["task_arn"]) for e, v in endpoints.items())
    ecs = sandbox.client("ecs")
    ecs.tag_resource(resourceArn=bad_task, tags=[{"key": "sandbox:fail", "value": "true"}])
    try:
        series = eventually(
            lambda: (s := probe_series(daemon, "alpha")).get(bad) == 0 and s,
            timeout=30,
            what=f"{bad} failing",
        )
        assert set(series) == {bad, good}
        # In the same scrape (or one soon after: a probe may time out on a busy host),
        # the other endpoint succeeds.
        eventually(
            lambda: (s := probe_series(daemon, "alpha")).get(good) == 1 and s.get(bad) == 0,
            timeout=15,
            what=f"{good} ok while {bad} fails",
        )
        row = daemon.status()["deployments"]["alpha"]["probe"]
        assert row["endpoints"][bad]["last_ok"] is False
        assert "UNAVAILABLE" in (row["endpoints"][bad]["last_error"] or "")
        assert row["endpoints"][good]["last_ok"] is True
    finally:
        ecs.untag_resource(resourceArn=bad_task, tagKeys=["sandbox:fail"])
    eventually(lambda: probed_ok(daemon, "alpha", 2), timeout=30, what="recovery")


def test_a_deployment_whose_aws_calls_fail_does_not_stop_another(
    daemon: Daemon, sandbox: Sandbox, proxy: AwsProxy
) -> None:
    # A transient failure (ECS's 500): the key backs off alone. (A terminal one parks
    # the key instead: see the test of a refused execution role.)
    proxy.rules.append(
        Rule(
            operation="RegisterTaskDefinition",
            contains='"broken"',
            code="ServerException",
            status=500,
        )
    )
    (daemon.folder / "broken.yaml").write_text(deployment_spec("broken"))
    (daemon.folder / "beta.yaml").write_text(deployment_spec("beta"))
    eventually(
        lambda: (s := service(sandbox, "beta")) and s["runningCount"] == 1,
        timeout=60,
        what="beta converged beside broken",
    )
    eventually(lambda: probed_ok(daemon, "beta", 1), timeout=30, what="beta probed")
    errors = eventually(
        lambda: daemon.sample("ecsinfer_reconcile_total", deployment="broken", result="error"),
        timeout=30,
        what="broken counted as an error",
    )
    assert errors >= 1
    assert service(sandbox, "broken") is None
    row = daemon.status()["deployments"]["broken"]["reconcile"]
    assert row["result"] == "error" and "injected" in row["error"]
    assert row["retry_in_s"] is not None  # backing off, alone
    assert daemon.get("/readyz")[0] == 200
    # alpha still in good health meanwhile
    eventually(lambda: probed_ok(daemon, "alpha", 2), timeout=15, what="alpha healthy")


def test_an_invalid_file_stops_all_applying_until_fixed(
    daemon: Daemon, sandbox: Sandbox, proxy: AwsProxy
) -> None:
    proxy.rules.clear()
    (daemon.folder / "broken.yaml").unlink()
    (daemon.folder / "zz-invalid.yaml").write_text("apiVersion: ecs-infer/v1\nkind: Nope\n")
    (daemon.folder / "beta.yaml").write_text(deployment_spec("beta", replicas=2))
    eventually(
        lambda: daemon.sample("ecsinfer_spec_errors") == 1, timeout=15, what="spec error counted"
    )
    resyncs = daemon.sample("ecsinfer_reconcile_total", deployment="beta", result="success")
    # Two resyncs (3 s each) later, nothing was applied from the half-valid folder.
    eventually(
        lambda: daemon.get("/status")[0] == 200 and (daemon.status()["specs_valid"] is False),
        timeout=5,
        what="status shows invalid specs",
    )
    time.sleep(7)
    beta = service(sandbox, "beta")
    assert beta is not None and beta["desiredCount"] == 1
    assert daemon.sample("ecsinfer_reconcile_total", deployment="beta", result="success") == resyncs
    (daemon.folder / "zz-invalid.yaml").unlink()
    eventually(
        lambda: (s := service(sandbox, "beta")) and s["desiredCount"] == 2,
        timeout=30,
        what="beta applied once the folder is valid",
    )
    assert daemon.sample("ecsinfer_spec_errors") == 0


def test_a_removed_spec_is_pruned_and_its_series_removed(daemon: Daemon, sandbox: Sandbox) -> None:
    (daemon.folder / "beta.yaml").unlink()
    eventually(lambda: service(sandbox, "beta") is None, timeout=30, what="beta deleted")
    eventually(
        lambda: (
            daemon.sample("ecsinfer_deployment_replicas", deployment="beta", state="desired")
            is None
            and not probe_series(daemon, "beta")
        ),
        timeout=30,
        what="beta's series removed",
    )
    eventually(lambda: probed_ok(daemon, "alpha", 2), timeout=15, what="alpha healthy")


def test_sigterm_exits_zero_within_ten_seconds(daemon: Daemon) -> None:
    code, elapsed = daemon.stop(timeout=15)
    assert code == 0
    assert elapsed < 10
    log = Path(daemon.log).read_text()
    assert '"daemon.stopped"' in log
    assert "Traceback" not in log
