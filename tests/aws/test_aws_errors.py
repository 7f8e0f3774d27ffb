"""Error mapping and request accounting, against the emulator and a fault-injecting front."""

from __future__ import annotations

import pytest
from aws_helpers import Fault, fault_front
from botocore.exceptions import ClientError, ParamValidationError

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.errors import (
    TerminalError,
    TransientError,
    map_error,
    translating_errors,
)
from controller.aws.observing import read_clusters, read_instances
from controller.sandbox.emulator import Emulator
from controller.settings import AwsSettings


def client_error(code: str, status: int) -> ClientError:
    return ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "DescribeServices",
    )


@pytest.mark.parametrize(
    ("code", "status", "kind"),
    [
        ("ThrottlingException", 400, TransientError),
        ("RequestLimitExceeded", 503, TransientError),
        ("ServerException", 500, TransientError),
        ("SomethingNew", 502, TransientError),
        ("InsufficientInstanceCapacity", 500, TransientError),
        ("AccessDeniedException", 400, TerminalError),
        ("InvalidParameterException", 400, TerminalError),
        ("ServiceNotFoundException", 400, TerminalError),
        ("UnauthorizedOperation", 403, TerminalError),
    ],
)
def test_client_errors_map_by_code_and_status(code: str, status: int, kind: type) -> None:
    mapped = map_error(client_error(code, status))
    assert type(mapped) is kind
    assert mapped is not None and mapped.code == code and mapped.status == status


def test_other_errors_map() -> None:
    assert isinstance(map_error(ParamValidationError(report="bad")), TerminalError)
    assert isinstance(map_error(TimeoutError()), TransientError)
    assert map_error(ValueError("not ours")) is None
    with pytest.raises(ValueError), translating_errors():
        raise ValueError("left alone")


async def test_missing_resources_are_terminal(clients: AwsClients, counter: RequestCounter) -> None:
    with pytest.raises(TerminalError) as caught, translating_errors():
        await clients.ecs.describe_task_definition(taskDefinition="no-such-family")
    assert caught.value.code == "ClientException"
    with pytest.raises(TerminalError) as caught, translating_errors():
        await clients.ecs.update_service(cluster="nowhere", service="nothing", desiredCount=1)
    assert isinstance(caught.value.__cause__, ClientError)
    assert counter.count("ecs.DescribeTaskDefinition", outcome="error") == 1


async def test_throttling_is_transient_and_counted(aws: Emulator) -> None:
    counter = RequestCounter()
    with fault_front() as (endpoint, faults):
        faults.add("ListClusters", Fault(status="400 Bad Request", code="ThrottlingException"))
        faults.add(
            "DescribeInstances",
            Fault(status="503 Service Unavailable", code="RequestLimitExceeded"),
        )
        settings = AwsSettings(max_attempts=1, endpoint_url=endpoint)
        async with AwsClients(settings=settings, on_request=counter) as clients:
            with pytest.raises(TransientError) as ecs_error:
                await read_clusters_translated(clients)
            with pytest.raises(TransientError) as ec2_error:
                await read_instances_translated(clients)
    assert ecs_error.value.throttled and ec2_error.value.throttled
    assert ec2_error.value.code == "RequestLimitExceeded"
    assert counter.counts[("ecs", "ListClusters", "throttled")] == 1
    assert counter.counts[("ec2", "DescribeInstances", "throttled")] == 1


async def read_clusters_translated(clients: AwsClients) -> None:
    with translating_errors():
        await read_clusters(clients, names=())


async def read_instances_translated(clients: AwsClients) -> None:
    with translating_errors():
        await read_instances(clients)


async def test_retries_recover_and_every_attempt_is_counted(aws: Emulator) -> None:
    counter = RequestCounter()
    with fault_front() as (endpoint, faults):
        faults.add(
            "DescribeClusters", Fault(status="400 Bad Request", code="ThrottlingException", times=2)
        )
        settings = AwsSettings(max_attempts=3, endpoint_url=endpoint)
        async with AwsClients(settings=settings, on_request=counter) as clients:
            aws.boto3_client("ecs").create_cluster(clusterName="c1")
            found = await read_clusters(clients, names=["c1"])
    assert list(found) == ["c1"]
    assert counter.counts[("ecs", "DescribeClusters", "throttled")] == 2
    assert counter.counts[("ecs", "DescribeClusters", "success")] == 1


async def test_unreachable_endpoint_is_transient(aws: Emulator) -> None:
    counter = RequestCounter()
    settings = AwsSettings(
        max_attempts=1, endpoint_url="http://127.0.0.1:9", connect_timeout_s=1, read_timeout_s=1
    )
    async with AwsClients(settings=settings, on_request=counter) as clients:
        with pytest.raises(TransientError, match="cannot reach AWS"):
            await read_clusters_translated(clients)
    assert counter.counts[("ecs", "ListClusters", "error")] == 1


async def test_account_id_is_asked_once(clients: AwsClients, counter: RequestCounter) -> None:
    assert await clients.account_id() == "123456789012"
    assert await clients.account_id() == "123456789012"
    assert counter.count("sts.GetCallerIdentity") == 1
    assert clients.region == "us-east-1"
    assert counter.writes() == {}


async def test_clients_must_be_opened() -> None:
    with pytest.raises(RuntimeError, match="not open"):
        _ = AwsClients().ecs
