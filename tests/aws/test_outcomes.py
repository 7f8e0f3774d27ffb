"""Honest outcomes per key, with the real runner and AWS shell on the emulator: a
terminal error on one deployment (an execution role ECS refuses) is reported on its key
and not retried within the backoff window, while the other deployments converge."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aws_helpers import CLUSTER, NO_RETRIES

from controller.aws.clients import AwsClients
from controller.metrics import Metrics
from controller.pipeline import AwsShell
from controller.runner.daemon import Daemon
from controller.sandbox.ecs.patches import install_patches, remove_patches
from controller.sandbox.emulator import Emulator
from controller.settings import (
    ProbingSettings,
    QueueSettings,
    ResyncSettings,
    RunnerSettings,
    ServingSettings,
    WatchSettings,
)

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
    maxInstances: 4
"""

DEPLOYMENT_SPEC = """\
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: {cluster}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/bert:latest
    grpcPort: {port}
    restPort: {rest}
  neuronCores: 1
  replicas: 1
  executionRoleArn: arn:aws:iam::123456789012:role/{role}
"""


def deployment(name: str, *, port: int, role: str = "ecsTaskExecutionRole") -> str:
    return DEPLOYMENT_SPEC.format(name=name, cluster=CLUSTER, port=port, rest=port + 1, role=role)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(check: Callable[[], Any], within_s: float = 20.0) -> Any:
    for _ in range(int(within_s / 0.05)):
        result = check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out: {check}")


@pytest.fixture
def ecs_checks_roles(aws: Emulator) -> Iterator[None]:
    """ECS's own check of the roles a task definition names (the sandbox's patch)."""
    install_patches()
    yield
    remove_patches()


async def test_a_refused_execution_role_parks_its_key_while_the_others_converge(
    aws: Emulator, ecs_checks_roles: None, tmp_path: Path
) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER_SPEC)
    (tmp_path / "alpha.yaml").write_text(deployment("alpha", port=8500))
    (tmp_path / "beta.yaml").write_text(deployment("beta", port=8510))
    (tmp_path / "refused.yaml").write_text(deployment("refused", port=8520, role="noSuchRole"))
    settings = RunnerSettings(
        # A transient error would be retried about every 0.1-0.4 s here.
        queue=QueueSettings(workers=2, verify_after_s=0.2, backoff_base_s=0.1, backoff_cap_s=0.4),
        resync=ResyncSettings(interval_s=600),
        watch=WatchSettings(debounce_ms=50),
        serving=ServingSettings(metrics_addr=f"127.0.0.1:{free_port()}"),
        probing=ProbingSettings(enabled=False),
    )
    metrics = Metrics()
    ecs = aws.boto3_client("ecs")

    def running_services() -> set[str]:
        try:
            found = ecs.describe_services(cluster=CLUSTER, services=["alpha", "beta", "refused"])
        except ecs.exceptions.ClusterNotFoundException:
            return set()
        return {s["serviceName"] for s in found["services"] if s["status"] == "ACTIVE"}

    def errors(name: str) -> float:
        sample = metrics.registry.get_sample_value(
            "ecsinfer_reconcile_total", {"deployment": name, "result": "error"}
        )
        return sample or 0.0

    async with AwsClients(settings=NO_RETRIES) as clients:
        daemon = Daemon(tmp_path, settings=settings, shell=AwsShell(clients), metrics=metrics)
        stop = asyncio.Event()
        running = asyncio.create_task(daemon.run(stop))
        try:
            await until(lambda: running_services() == {"alpha", "beta"})
            await until(lambda: errors("refused") >= 1)
            # Many backoff windows later: still the one attempt, and the others fine.
            await asyncio.sleep(2.0)
            assert errors("refused") == 1
            assert running_services() == {"alpha", "beta"}
            status = daemon.runner.statuses["deployment/refused"]
            assert status.result == "error" and status.terminal
            assert "Role is not valid" in (status.error or "")
            assert daemon.runner.statuses["deployment/alpha"].result == "success"
            families = ecs.list_task_definition_families(familyPrefix="refused")["families"]
            assert families == []

            # The spec is fixed: the key is tried again at once, and converges.
            (tmp_path / "refused.yaml").write_text(deployment("refused", port=8520))
            await until(lambda: running_services() == {"alpha", "beta", "refused"})
            await until(lambda: daemon.runner.statuses["deployment/refused"].result == "success")
            assert not daemon.runner.statuses["deployment/refused"].terminal
        finally:
            stop.set()
            await asyncio.wait_for(running, 15)
