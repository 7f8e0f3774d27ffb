"""Discovery and the prober together, against the sandbox: what the daemon does each pass
(discover, then `Prober.update`), with faults injected by tagging tasks as a user would."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client import generate_latest

from controller.aws.clients import AwsClients
from controller.aws.discovering import discover
from controller.core.endpoints import (
    DiscoveryTarget,
    Endpoint,
    discovery_targets,
    probe_targets,
)
from controller.core.states import ProbeSettings
from controller.metrics import Metrics
from controller.pipeline import reconcile_pass
from controller.probing.prober import Prober
from controller.sandbox.ecs.dataplane import DataPlane
from controller.sandbox.emulator import Emulator
from controller.sandbox.modelserver import EncoderModel
from controller.settings import AwsSettings, DataPlaneSettings, ProberSettings
from controller.specs.loading import load_folder

PROBE = ProbeSettings(
    model_name="bert",
    grpc_port=8500,
    interval_s=0.1,
    timeout_s=2.0,
    sequence_length=128,
    latency_objective_s=0.1,
)
TARGET = DiscoveryTarget(deployment="bert", cluster="inf", service="bert", container_port=8500)


@pytest.fixture(scope="module")
def encoder() -> Iterator[EncoderModel]:
    model = EncoderModel.load()
    yield model
    model.close()


@pytest.fixture
async def dataplane(aws: Emulator, encoder: EncoderModel) -> AsyncIterator[DataPlane]:
    async with DataPlane(
        model=encoder, aws_port=aws.port, settings=DataPlaneSettings(tick_s=0.05)
    ) as running:
        yield running


async def until(condition: Callable[[], bool], within: float = 20.0) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)


async def discovered(clients: AwsClients, count: int, within: float = 20.0) -> list[Endpoint]:
    deadline = time.monotonic() + within
    while True:
        discovery = await discover(clients, targets=[TARGET])
        if len(discovery.endpoints) == count:
            return list(discovery.endpoints)
        if time.monotonic() > deadline:
            raise AssertionError(f"{len(discovery.endpoints)} endpoints, not {count}")
        await asyncio.sleep(0.1)


async def test_discovered_endpoints_are_probed_and_follow_the_service(
    aws: Emulator, dataplane: DataPlane
) -> None:
    ecs, ec2 = aws.boto3_client("ecs"), aws.boto3_client("ec2")
    ecs.create_cluster(clusterName="inf")
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=2,
        MaxCount=2,
        InstanceType="inf1.xlarge",
        UserData="echo ECS_CLUSTER=inf >> /etc/ecs/ecs.config",
    )
    td = ecs.register_task_definition(
        family="bert",
        containerDefinitions=[
            {
                "name": "bert",
                "image": "bert:latest",
                "memoryReservation": 100,
                "portMappings": [{"containerPort": 8500, "hostPort": 0, "protocol": "tcp"}],
            }
        ],
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster="inf", serviceName="bert", taskDefinition=td, desiredCount=2)

    metrics = Metrics()

    def success(address: str) -> float | None:
        return metrics.registry.get_sample_value(
            "ecsinfer_probe_success", {"deployment": "bert", "endpoint": address}
        )

    async with (
        AwsClients(settings=AwsSettings(max_attempts=1)) as clients,
        Prober(metrics=metrics, settings=ProberSettings(start_spread_s=0.0)) as prober,
    ):
        first, second = await discovered(clients, 2)
        await prober.update({"bert": PROBE}, [first, second])
        await until(lambda: success(first.address) == 1.0 and success(second.address) == 1.0)

        # A failing model server: that endpoint only goes to 0.
        ecs.tag_resource(
            resourceArn=second.task_arn, tags=[{"key": "sandbox:fail", "value": "true"}]
        )
        await until(lambda: success(second.address) == 0.0)
        assert success(first.address) == 1.0
        assert prober.snapshot()["bert"][second.address].last_error.startswith(
            "Predict UNAVAILABLE"
        )

        # Scale in to one task: the next pass drops an endpoint, and its series go.
        ecs.update_service(cluster="inf", service="bert", desiredCount=1)
        (kept,) = await discovered(clients, 1)
        changes = await prober.update({"bert": PROBE}, [kept])
        (gone,) = {first.address, second.address} - {kept.address}
        assert changes.stopped == (("bert", gone),)
        exposition = generate_latest(metrics.registry).decode()
        assert f'endpoint="{gone}"' not in exposition
        assert f'endpoint="{kept.address}"' in exposition
        assert set(prober.snapshot()["bert"]) == {kept.address}


DEMO = Path(__file__).resolve().parents[2] / "specs" / "ecs-inf1-demo.yaml"


async def test_the_walkthrough_deployment_is_discovered_and_probed(dataplane: DataPlane) -> None:
    """The demo spec applied by the real pass: targets come from the desired state."""
    loaded = load_folder(DEMO)
    assert loaded.ok, loaded.errors
    metrics = Metrics()
    async with (
        AwsClients(settings=AwsSettings(max_attempts=1)) as clients,
        Prober(metrics=metrics, settings=ProberSettings(start_spread_s=0.0)) as prober,
    ):
        result = await reconcile_pass(loaded.specs, clients=clients, apply=True)
        assert result.ok
        deployments = list(result.world.desired.deployments.values())
        targets = discovery_targets(deployments)
        assert targets == [
            DiscoveryTarget(
                deployment="bert",
                cluster="ecs-inf1-demo",
                service="bert-inf1",
                container_port=8500,
            )
        ]

        deadline = time.monotonic() + 30
        while not (found := (await discover(clients, targets=targets)).endpoints):
            assert time.monotonic() < deadline, "the walkthrough's task never ran"
            await asyncio.sleep(0.1)
        (endpoint,) = found
        assert endpoint.task_arn in dataplane.servers
        assert endpoint.host.startswith(dataplane.address_prefix + ".")

        await prober.update(probe_targets(deployments), found)
        latency = {"deployment": "bert", "endpoint": endpoint.address}
        await until(
            lambda: metrics.registry.get_sample_value("ecsinfer_probe_success", latency) == 1.0
        )
        assert metrics.registry.get_sample_value(
            "ecsinfer_probe_latency_seconds_count", latency
        ) == pytest.approx(1.0)
        assert (
            metrics.registry.get_sample_value(
                "ecsinfer_probe_latency_objective_seconds", {"deployment": "bert"}
            )
            == 0.1
        )
