"""Discovery against the sandbox: moto plus the emulated data plane (scheduler, agents,
loopback addresses, one real model server per running task), through aiobotocore."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.discovering import Discoverer, discover, discover_endpoints
from controller.core.endpoints import DiscoveryTarget, is_loopback
from controller.sandbox.ecs.dataplane import DataPlane
from controller.sandbox.emulator import Emulator
from controller.sandbox.modelserver import EncoderModel
from controller.settings import AwsSettings, DataPlaneSettings

GRPC_PORT = 8500


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


@pytest.fixture
async def clients(aws: Emulator) -> AsyncIterator[AwsClients]:
    async with AwsClients(settings=AwsSettings(max_attempts=1)) as opened:
        yield opened


async def eventually(condition: Callable[[], Any], within: float = 20.0) -> Any:
    deadline = time.monotonic() + within
    while True:
        result = await condition()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.1)


def make_cluster(aws: Emulator, cluster: str, *, instances: int) -> None:
    ecs, ec2 = aws.boto3_client("ecs"), aws.boto3_client("ec2")
    ecs.create_cluster(clusterName=cluster)
    ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=instances,
        MaxCount=instances,
        InstanceType="inf1.xlarge",
        UserData=f"#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n",
    )


def make_service(aws: Emulator, cluster: str, name: str, *, count: int) -> str:
    ecs = aws.boto3_client("ecs")
    registered = ecs.register_task_definition(
        family=name,
        networkMode="bridge",
        containerDefinitions=[
            {
                "name": "bert",
                "image": "bert:latest",
                "memoryReservation": 100,
                "portMappings": [
                    {"containerPort": GRPC_PORT, "hostPort": 0, "protocol": "tcp"},
                    {"containerPort": 8501, "hostPort": 0, "protocol": "tcp"},
                ],
            }
        ],
    )
    arn = str(registered["taskDefinition"]["taskDefinitionArn"])
    ecs.create_service(cluster=cluster, serviceName=name, taskDefinition=arn, desiredCount=count)
    return arn


def target(deployment: str, cluster: str = "inf", service: str | None = None) -> DiscoveryTarget:
    return DiscoveryTarget(
        deployment=deployment,
        cluster=cluster,
        service=service or deployment,
        container_port=GRPC_PORT,
    )


async def test_endpoints_are_the_data_planes_model_servers(
    aws: Emulator, dataplane: DataPlane, clients: AwsClients
) -> None:
    make_cluster(aws, "inf", instances=2)
    bert_td = make_service(aws, "inf", "bert", count=2)
    make_service(aws, "inf", "other", count=3)  # another service in the same cluster
    targets = [target("bert")]

    async def two_running() -> list[Any]:
        found = await discover_endpoints(clients, targets=targets)
        return found if len(found) == 2 else []

    endpoints = await eventually(two_running)

    servers = dataplane.servers
    assert {e.task_arn for e in endpoints} <= set(servers)
    for endpoint in endpoints:
        server = servers[endpoint.task_arn]
        assert (endpoint.host, endpoint.port) == (server.host, server.port)
        assert is_loopback(endpoint.host)
        assert endpoint.host.startswith(dataplane.address_prefix + ".")
        assert endpoint.port != GRPC_PORT  # a dynamic host port, as ECS reports it
        assert endpoint.task_definition_arn == bert_td
        assert (endpoint.service, endpoint.cluster, endpoint.last_status) == (
            "bert",
            "inf",
            "RUNNING",
        )
    # The other service's tasks are running too, and are not bert's endpoints.
    others = await eventually(
        lambda: _discover_count(clients, [target("other")], 3),
    )
    assert not {e.task_arn for e in others} & {e.task_arn for e in endpoints}


async def _discover_count(
    clients: AwsClients, targets: list[DiscoveryTarget], count: int
) -> list[Any]:
    found = await discover_endpoints(clients, targets=targets)
    return found if len(found) == count else []


async def test_scaling_in_removes_endpoints_and_the_pass_stays_cheap(
    aws: Emulator, dataplane: DataPlane
) -> None:
    make_cluster(aws, "inf", instances=2)
    make_cluster(aws, "inf2", instances=1)
    make_service(aws, "inf", "bert", count=3)
    make_service(aws, "inf2", "gpt", count=2)
    targets = [target("bert"), target("gpt", "inf2")]
    counter = RequestCounter()
    async with AwsClients(settings=AwsSettings(max_attempts=1), on_request=counter) as clients:
        await eventually(lambda: _discover_count(clients, targets, 5))

        counter.reset()
        discovery = await discover(clients, targets=targets)
        assert len(discovery.endpoints) == 5 and discovery.ok
        # Two clusters: per cluster one list, one describe of tasks, of container
        # instances and of EC2 instances.
        assert counter.by_operation() == {
            "ec2.DescribeInstances": 2,
            "ecs.DescribeContainerInstances": 2,
            "ecs.DescribeTasks": 2,
            "ecs.ListTasks": 2,
        }

        aws.boto3_client("ecs").update_service(cluster="inf", service="bert", desiredCount=1)
        remaining = await eventually(lambda: _discover_count(clients, [target("bert")], 1))
        assert remaining[0].task_arn in dataplane.servers


async def test_incremental_discovery_follows_the_scheduler_with_list_calls_only(
    aws: Emulator, dataplane: DataPlane
) -> None:
    make_cluster(aws, "inf", instances=2)
    make_service(aws, "inf", "bert", count=2)
    make_service(aws, "inf", "other", count=1)
    ecs = aws.boto3_client("ecs")
    targets = [target("bert")]
    counter = RequestCounter()
    clock = [1000.0]
    async with AwsClients(settings=AwsSettings(max_attempts=1), on_request=counter) as clients:
        described: list[list[str]] = []

        def record(params: dict[str, Any], **_: Any) -> None:
            described.append(list(params.get("tasks", ())))

        clients.ecs.meta.events.register("provide-client-params.ecs.DescribeTasks", record)
        await eventually(lambda: _discover_count(clients, [*targets, target("other")], 3))
        discoverer = Discoverer(clients, full_refresh_s=300, clock=lambda: clock[0])

        async def endpoints_of(count: int) -> list[Any]:
            found = (await discoverer.discover(targets=targets)).endpoints
            return list(found) if len(found) == count else []

        # First pass: everything described, the same endpoints as a stateless pass.
        counter.reset()
        first = await discoverer.discover(targets=targets)
        full_calls = {
            "ec2.DescribeInstances": 1,
            "ecs.DescribeContainerInstances": 1,
            "ecs.DescribeTasks": 1,
            "ecs.ListTasks": 1,
        }
        assert counter.by_operation() == full_calls
        assert first == await discover(clients, targets=targets)
        assert len(first.endpoints) == 2

        # Nothing changed: only the list.
        counter.reset()
        assert await discoverer.discover(targets=targets) == first
        assert counter.by_operation() == {"ecs.ListTasks": 1}

        # Scale up: only the new task is described (while PENDING, then once RUNNING).
        known = {e.task_arn for e in first.endpoints}
        ecs.update_service(cluster="inf", service="bert", desiredCount=3)
        described.clear()
        three = await eventually(lambda: endpoints_of(3))
        (new,) = {e.task_arn for e in three} - known
        assert described and all(batch == [new] for batch in described)
        servers = dataplane.servers
        assert all(
            (e.host, e.port) == (servers[e.task_arn].host, servers[e.task_arn].port) for e in three
        )
        counter.reset()
        await discoverer.discover(targets=targets)
        assert counter.by_operation() == {"ecs.ListTasks": 1}

        # Scale down: the stopped tasks leave, nothing is described.
        ecs.update_service(cluster="inf", service="bert", desiredCount=1)
        described.clear()
        (remaining,) = await eventually(lambda: endpoints_of(1))
        assert described == []
        assert remaining.task_arn in dataplane.servers

        # A full refresh after full_refresh_s: everything described again, same result.
        steady = await discoverer.discover(targets=targets)
        clock[0] += 300
        counter.reset()
        assert await discoverer.discover(targets=targets) == steady
        assert counter.by_operation() == full_calls
        assert steady == await discover(clients, targets=targets)

        # A task stopped through the API is gone from the very next pass.
        ecs.stop_task(cluster="inf", task=remaining.task_arn)
        after = await discoverer.discover(targets=targets)
        assert remaining.task_arn not in {e.task_arn for e in after.endpoints}


async def test_observe_sees_what_runs_where_with_its_task_definition(
    aws: Emulator, dataplane: DataPlane, clients: AwsClients
) -> None:
    """The observed state holds container instances and tasks, read in the same level."""
    from controller.aws.observing import observe
    from controller.core.states import AccountFacts

    make_cluster(aws, "inf", instances=2)
    bert_td = make_service(aws, "inf", "bert", count=2)
    make_cluster(aws, "inf-other", instances=1)  # a name that contains the first one
    facts = AccountFacts(region=clients.region, account_id="123456789012", default_vpc_id=None)

    async def two_running() -> Any:
        observed = await observe(clients, facts=facts, cluster_names=["inf", "inf-other"])
        running = [t for t in observed.tasks.get("inf", ()) if t.last_status == "RUNNING"]
        return observed if len(running) == 2 else None

    observed = await eventually(two_running)

    instances = observed.container_instances["inf"]
    assert len(instances) == 2
    assert all(i.ec2_instance_id.startswith("i-") and i.status == "ACTIVE" for i in instances)
    tasks = observed.tasks["inf"]
    assert {(t.service, t.task_definition, t.desired_status) for t in tasks} == {
        ("bert", bert_td, "RUNNING")
    }
    assert {t.container_instance for t in tasks} <= {i.arn for i in instances}
    # moto matches cluster names as substrings: the other cluster's state stays its own
    assert observed.tasks["inf-other"] == ()
    assert len(observed.container_instances["inf-other"]) == 1
