"""Endpoint discovery against moto in server mode, through real aiobotocore clients.

moto has no ECS agent: tasks get no network bindings and instances get 172.31/10.x
addresses. These tests play the agent's part through moto's backend (the emulator runs
in this process), binding host ports and rewriting private addresses to 127.0.0.x, as the
sandbox's data plane does, so that nothing here could ever dial a real address.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from aws_helpers import Fault, fault_front
from moto.core import DEFAULT_ACCOUNT_ID
from moto.ec2.models import ec2_backends
from moto.ecs.models import ecs_backends

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.discovering import Discoverer, discover, discover_endpoints
from controller.aws.errors import TransientError
from controller.aws.observing import DESCRIBE_TASKS_BATCH
from controller.core.endpoints import DiscoveryTarget, Endpoint, is_loopback
from controller.sandbox.emulator import BACKEND_LOCK, REGION, Emulator
from controller.settings import AwsSettings

GRPC_PORT = 8500


def _ecs_backend() -> Any:
    return ecs_backends[DEFAULT_ACCOUNT_ID][REGION]


def _ec2_backend() -> Any:
    return ec2_backends[DEFAULT_ACCOUNT_ID][REGION]


@dataclass
class Account:
    """The emulated account, with helpers that act as the ECS agent would."""

    aws: Emulator

    def __post_init__(self) -> None:
        self.ecs = self.aws.boto3_client("ecs")
        self.ec2 = self.aws.boto3_client("ec2")
        self._next_ip = 2

    def cluster(self, name: str) -> None:
        self.ecs.create_cluster(clusterName=name)

    def instance(self, cluster: str, *, address: str | None = None) -> tuple[str, str]:
        """An EC2 instance joined to `cluster`, its private address rewritten to loopback;
        returns (instance id, container instance ARN)."""
        reservation = self.ec2.run_instances(
            ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="inf1.xlarge"
        )
        instance_id = reservation["Instances"][0]["InstanceId"]
        if address is None:
            address = f"127.0.0.{self._next_ip}"
            self._next_ip += 1
        with BACKEND_LOCK:
            _ec2_backend().get_instance(instance_id).nics[0].private_ip_address = address
        document = json.dumps({"instanceId": instance_id, "region": REGION})
        registered = self.ecs.register_container_instance(
            cluster=cluster, instanceIdentityDocument=document
        )
        return instance_id, registered["containerInstance"]["containerInstanceArn"]

    def task_definition(self, family: str, *, network_mode: str = "bridge") -> str:
        mapping: dict[str, Any] = {"containerPort": GRPC_PORT, "protocol": "tcp"}
        if network_mode != "bridge":
            mapping["hostPort"] = GRPC_PORT
        registered = self.ecs.register_task_definition(
            family=family,
            networkMode=network_mode,
            containerDefinitions=[
                {
                    "name": "bert",
                    "image": "bert:latest",
                    "memoryReservation": 10,
                    "portMappings": [mapping, {"containerPort": 8501, "protocol": "tcp"}],
                }
            ],
        )
        return str(registered["taskDefinition"]["taskDefinitionArn"])

    def start_task(
        self,
        cluster: str,
        service: str,
        task_definition: str,
        container_instance: str,
        *,
        host_port: int | None,
        status: str = "RUNNING",
    ) -> str:
        """A task of `service` on `container_instance`, with the gRPC port bound to
        `host_port` (None: not bound yet)."""
        started = self.ecs.start_task(
            cluster=cluster,
            taskDefinition=task_definition,
            containerInstances=[container_instance],
            group=f"service:{service}",
            startedBy="ecs-svc/1",
        )
        arn = str(started["tasks"][0]["taskArn"])
        with BACKEND_LOCK:
            task = self.backend_task(cluster, arn)
            if host_port is not None:
                task.containers[0].network_bindings = [
                    {
                        "bindIP": "0.0.0.0",
                        "containerPort": GRPC_PORT,
                        "hostPort": host_port,
                        "protocol": "tcp",
                    },
                    {
                        "bindIP": "::",
                        "containerPort": GRPC_PORT,
                        "hostPort": host_port,
                        "protocol": "tcp",
                    },
                    {
                        "bindIP": "0.0.0.0",
                        "containerPort": 8501,
                        "hostPort": host_port + 1,
                        "protocol": "tcp",
                    },
                ]
            task.last_status = status
        return arn

    def start_awsvpc_task(
        self, cluster: str, service: str, task_definition: str, *, address: str
    ) -> str:
        subnet = self.ec2.describe_subnets()["Subnets"][0]["SubnetId"]
        group = self.ec2.describe_security_groups()["SecurityGroups"][0]["GroupId"]
        ran = self.ecs.run_task(
            cluster=cluster,
            taskDefinition=task_definition,
            group=f"service:{service}",
            networkConfiguration={
                "awsvpcConfiguration": {"subnets": [subnet], "securityGroups": [group]}
            },
        )
        arn = str(ran["tasks"][0]["taskArn"])
        with BACKEND_LOCK:
            for attachment in self.backend_task(cluster, arn).attachments:
                for detail in attachment["details"]:
                    if detail["name"] == "privateIPv4Address":
                        detail["value"] = address
        return arn

    def backend_task(self, cluster: str, arn: str) -> Any:
        return _ecs_backend().tasks[cluster][arn]


@pytest.fixture
def account(aws: Emulator) -> Iterator[Account]:
    yield Account(aws)


@pytest.fixture
async def clients(aws: Emulator) -> Any:
    counter = RequestCounter()
    async with AwsClients(settings=AwsSettings(max_attempts=1), on_request=counter) as opened:
        opened.counter = counter  # type: ignore[attr-defined]
        yield opened


def _target(deployment: str, cluster: str = "inf", service: str | None = None) -> DiscoveryTarget:
    return DiscoveryTarget(
        deployment=deployment,
        cluster=cluster,
        service=service or deployment,
        container_port=GRPC_PORT,
    )


def _one_task_per_cluster(account: Account, placements: dict[str, tuple[str, int]]) -> list[str]:
    """For each cluster name -> (instance address, host port): the cluster, an instance
    at that address and a `bert` task on it at that port. Returns the task ARNs."""
    td = account.task_definition("bert")
    arns = []
    for cluster, (address, host_port) in placements.items():
        account.cluster(cluster)
        _, container_instance = account.instance(cluster, address=address)
        arns.append(
            account.start_task(cluster, "bert", td, container_instance, host_port=host_port)
        )
    return arns


def _overlapping_clusters(account: Account) -> tuple[str, str]:
    """Clusters "inf" and "inf1-demo" (moto's list_tasks matches cluster names as
    substrings), each with a `bert` task on its own instance: 127.0.0.8:33000 in "inf",
    127.0.0.9:33001 in "inf1-demo". Returns the two task ARNs."""
    a, b = _one_task_per_cluster(
        account, {"inf": ("127.0.0.8", 33000), "inf1-demo": ("127.0.0.9", 33001)}
    )
    return a, b


#: One target in each of `_overlapping_clusters`.
OVERLAPPING_TARGETS = [_target("small", "inf", "bert"), _target("big", "inf1-demo", "bert")]


async def test_bridge_tasks_resolve_to_instance_address_and_host_port(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    _, ci_a = account.instance("inf", address="127.0.0.2")
    _, ci_b = account.instance("inf", address="127.0.0.3")
    bert = account.task_definition("bert")
    other = account.task_definition("other")
    t1 = account.start_task("inf", "bert", bert, ci_a, host_port=32768)
    t2 = account.start_task("inf", "bert", bert, ci_b, host_port=32769)
    # Tasks of another service in the same cluster, on the same instances.
    account.start_task("inf", "other", other, ci_a, host_port=32770)
    account.start_task("inf", "other", other, ci_b, host_port=32771)
    # A standalone task with no service group.
    account.ecs.start_task(cluster="inf", taskDefinition=other, containerInstances=[ci_a])

    endpoints = await discover_endpoints(clients, targets=[_target("bert")])

    assert endpoints == [
        Endpoint(
            deployment="bert",
            cluster="inf",
            service="bert",
            task_arn=t1,
            host="127.0.0.2",
            port=32768,
            task_definition_arn=bert,
            last_status="RUNNING",
        ),
        Endpoint(
            deployment="bert",
            cluster="inf",
            service="bert",
            task_arn=t2,
            host="127.0.0.3",
            port=32769,
            task_definition_arn=bert,
            last_status="RUNNING",
        ),
    ]
    assert [e.address for e in endpoints] == ["127.0.0.2:32768", "127.0.0.3:32769"]
    assert all(is_loopback(e.host) for e in endpoints)


async def test_grouping_by_service_with_two_targets_in_one_cluster(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    _, ci = account.instance("inf", address="127.0.0.4")
    bert = account.task_definition("bert")
    tasks = {
        "bert": [
            account.start_task("inf", "bert-svc", bert, ci, host_port=p) for p in (40000, 40001)
        ],
        "gpt": [
            account.start_task("inf", "gpt-svc", bert, ci, host_port=p)
            for p in (40002, 40003, 40004)
        ],
    }
    account.start_task("inf", "unrelated", bert, ci, host_port=40005)

    endpoints = await discover_endpoints(
        clients,
        targets=[_target("bert", service="bert-svc"), _target("gpt", service="gpt-svc")],
    )

    by_deployment: dict[str, set[str]] = {}
    for endpoint in endpoints:
        by_deployment.setdefault(endpoint.deployment, set()).add(endpoint.task_arn)
        assert endpoint.service == f"{endpoint.deployment}-svc"
    assert by_deployment == {name: set(arns) for name, arns in tasks.items()}
    assert sorted(e.port for e in endpoints if e.deployment == "gpt") == [40002, 40003, 40004]


async def test_only_running_tasks_with_bindings_are_endpoints(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    _, ci = account.instance("inf", address="127.0.0.5")
    bert = account.task_definition("bert")
    running = account.start_task("inf", "bert", bert, ci, host_port=31000)
    account.start_task("inf", "bert", bert, ci, host_port=31001, status="PENDING")
    account.start_task("inf", "bert", bert, ci, host_port=31002, status="DEACTIVATING")
    unbound = account.start_task("inf", "bert", bert, ci, host_port=None)
    stopped = account.start_task("inf", "bert", bert, ci, host_port=31003)
    account.ecs.stop_task(cluster="inf", task=stopped)

    discovery = await discover(clients, targets=[_target("bert")])

    assert [e.task_arn for e in discovery.endpoints] == [running]
    assert [(u.task_arn, u.reason) for u in discovery.unresolved] == [
        (unbound, f"no network binding for container port {GRPC_PORT}")
    ]
    assert discovery.ok


async def test_awsvpc_tasks_use_the_eni_address_and_container_port(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    account.instance("inf", address="127.0.0.6")
    vpc = account.task_definition("bert-vpc", network_mode="awsvpc")
    arn = account.start_awsvpc_task("inf", "bert", vpc, address="127.0.1.7")

    before = clients.counter.total  # type: ignore[attr-defined]
    endpoints = await discover_endpoints(clients, targets=[_target("bert")])

    assert [(e.task_arn, e.host, e.port) for e in endpoints] == [(arn, "127.0.1.7", GRPC_PORT)]
    # No instance lookups for awsvpc tasks: list_tasks + describe_tasks only.
    calls = clients.counter.by_operation()  # type: ignore[attr-defined]
    assert clients.counter.total - before == 2, calls  # type: ignore[attr-defined]


async def test_clusters_are_kept_apart_even_when_names_overlap(
    account: Account, clients: AwsClients
) -> None:
    # moto matches list_tasks' cluster as a substring ("inf" in ".../inf1-demo") and
    # describe_tasks ignores the cluster; discovery must not mix them up.
    a, b = _overlapping_clusters(account)

    endpoints = await discover_endpoints(clients, targets=OVERLAPPING_TARGETS)

    assert {(e.deployment, e.cluster, e.task_arn, e.address) for e in endpoints} == {
        ("small", "inf", a, "127.0.0.8:33000"),
        ("big", "inf1-demo", b, "127.0.0.9:33001"),
    }


async def test_missing_cluster_has_no_endpoints(account: Account, clients: AwsClients) -> None:
    discovery = await discover(clients, targets=[_target("bert", cluster="nowhere")])
    assert discovery.endpoints == ()
    assert discovery.ok


async def test_terminated_instance_leaves_its_task_unresolved(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    instance_id, ci = account.instance("inf", address="127.0.0.10")
    td = account.task_definition("bert")
    arn = account.start_task("inf", "bert", td, ci, host_port=34000)
    account.ec2.terminate_instances(InstanceIds=[instance_id])

    discovery = await discover(clients, targets=[_target("bert")])

    assert discovery.endpoints == ()
    assert [(u.task_arn, u.reason) for u in discovery.unresolved] == [
        (arn, f"instance {instance_id} has no private address")
    ]


async def test_calls_grow_with_batches_not_tasks(account: Account, clients: AwsClients) -> None:
    account.cluster("inf")
    cis = [account.instance("inf")[1] for _ in range(3)]
    td = account.task_definition("bert")
    count = DESCRIBE_TASKS_BATCH + 5  # two describe_tasks batches
    for index in range(count):
        account.start_task("inf", "bert", td, cis[index % 3], host_port=35000 + index)
    counter: RequestCounter = clients.counter  # type: ignore[attr-defined]
    counter.reset()

    endpoints = await discover_endpoints(clients, targets=[_target("bert")])

    assert len(endpoints) == count
    assert len({e.address for e in endpoints}) == count
    assert counter.by_operation() == {
        "ec2.DescribeInstances": 1,
        "ecs.DescribeContainerInstances": 1,
        "ecs.DescribeTasks": 2,
        "ecs.ListTasks": 1,  # moto does not paginate; real ECS would take 2 pages
    }


async def test_a_failing_cluster_does_not_hide_the_others(
    account: Account, clients: AwsClients, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("good", "bad"):
        account.cluster(name)
    _, ci = account.instance("good", address="127.0.0.11")
    td = account.task_definition("bert")
    arn = account.start_task("good", "bert", td, ci, host_port=36000)

    real = clients.ecs.list_tasks

    async def flaky_list_tasks(**kwargs: Any) -> Any:
        if kwargs.get("cluster") == "bad":
            raise TransientError("throttled", code="ThrottlingException")
        return await real(**kwargs)

    # The paginator calls the client's method; patch the method the paginator resolves.
    monkeypatch.setattr(clients.ecs, "list_tasks", flaky_list_tasks)
    targets = [_target("a", "good", "bert"), _target("b", "bad", "bert")]

    discovery = await discover(clients, targets=targets)
    assert [e.task_arn for e in discovery.endpoints] == [arn]
    assert set(discovery.errors) == {"bad"}
    assert discovery.failed_deployments == frozenset({"b"})
    with pytest.raises(TransientError):
        await discover_endpoints(clients, targets=targets)


# --- incremental discovery (`Discoverer`) ---------------------------------------------


class Clock:
    """A monotonic clock that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def described_tasks(clients: AwsClients) -> list[list[str]]:
    """The `tasks` of every DescribeTasks call the clients send from now on."""
    batches: list[list[str]] = []

    def record(params: dict[str, Any], **_: Any) -> None:
        batches.append(list(params.get("tasks", ())))

    clients.ecs.meta.events.register("provide-client-params.ecs.DescribeTasks", record)
    return batches


async def test_a_second_pass_only_lists_and_new_tasks_alone_are_described(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    _, ci_a = account.instance("inf", address="127.0.0.2")
    _, ci_b = account.instance("inf", address="127.0.0.3")
    td = account.task_definition("bert")
    for port, ci in ((37000, ci_a), (37001, ci_b)):
        account.start_task("inf", "bert", td, ci, host_port=port)
    account.start_task("inf", "other", td, ci_a, host_port=37002)
    counter: RequestCounter = clients.counter  # type: ignore[attr-defined]
    batches = described_tasks(clients)
    targets = [_target("bert")]
    discoverer = Discoverer(clients, clock=Clock())

    counter.reset()
    first = await discoverer.discover(targets=targets)
    assert counter.by_operation() == {
        "ec2.DescribeInstances": 1,
        "ecs.DescribeContainerInstances": 1,
        "ecs.DescribeTasks": 1,
        "ecs.ListTasks": 1,
    }
    assert first == await discover(clients, targets=targets)
    assert len(first.endpoints) == 2

    counter.reset()
    assert await discoverer.discover(targets=targets) == first
    assert counter.by_operation() == {"ecs.ListTasks": 1}

    # A new task on a known instance: described alone, no instance lookups.
    new = account.start_task("inf", "bert", td, ci_b, host_port=37003)
    counter.reset()
    batches.clear()
    third = await discoverer.discover(targets=targets)
    assert counter.by_operation() == {"ecs.DescribeTasks": 1, "ecs.ListTasks": 1}
    assert batches == [[new]]
    assert third.endpoints == (await discover(clients, targets=targets)).endpoints
    assert ("127.0.0.3", 37003, new) in {(e.host, e.port, e.task_arn) for e in third.endpoints}

    # A stopped task leaves at once, without any describe.
    gone = first.endpoints[0].task_arn
    account.ecs.stop_task(cluster="inf", task=gone)
    counter.reset()
    fourth = await discoverer.discover(targets=targets)
    assert counter.by_operation() == {"ecs.ListTasks": 1}
    assert gone not in {e.task_arn for e in fourth.endpoints}
    assert len(fourth.endpoints) == 2
    assert gone not in discoverer.remembered("inf")


async def test_tasks_not_yet_running_or_bound_are_described_again(
    account: Account, clients: AwsClients
) -> None:
    account.cluster("inf")
    _, ci = account.instance("inf", address="127.0.0.4")
    td = account.task_definition("bert")
    running = account.start_task("inf", "bert", td, ci, host_port=38000)
    pending = account.start_task("inf", "bert", td, ci, host_port=38001, status="PENDING")
    unbound = account.start_task("inf", "bert", td, ci, host_port=None)
    batches = described_tasks(clients)
    discoverer = Discoverer(clients, clock=Clock())
    targets = [_target("bert")]

    first = await discoverer.discover(targets=targets)
    assert [e.task_arn for e in first.endpoints] == [running]
    assert [u.task_arn for u in first.unresolved] == [unbound]

    batches.clear()
    second = await discoverer.discover(targets=targets)
    assert second == first
    assert batches == [sorted([pending, unbound])]

    # The agent reports the PENDING task RUNNING, and binds the other one's port.
    with BACKEND_LOCK:
        account.backend_task("inf", pending).last_status = "RUNNING"
        account.backend_task("inf", unbound).containers[0].network_bindings = [
            {"bindIP": "0.0.0.0", "containerPort": GRPC_PORT, "hostPort": 38002, "protocol": "tcp"}
        ]
    batches.clear()
    third = await discoverer.discover(targets=targets)
    assert batches == [sorted([pending, unbound])]
    assert {(e.task_arn, e.port) for e in third.endpoints} == {
        (running, 38000),
        (pending, 38001),
        (unbound, 38002),
    }
    assert third.unresolved == ()

    batches.clear()
    assert await discoverer.discover(targets=targets) == third
    assert batches == []


async def test_full_refresh_every_full_refresh_s(account: Account, clients: AwsClients) -> None:
    account.cluster("inf")
    _, ci = account.instance("inf", address="127.0.0.5")
    td = account.task_definition("bert")
    account.start_task("inf", "bert", td, ci, host_port=39000)
    counter: RequestCounter = clients.counter  # type: ignore[attr-defined]
    clock = Clock()
    discoverer = Discoverer(clients, full_refresh_s=300, clock=clock)
    targets = [_target("bert")]
    full = {
        "ec2.DescribeInstances": 1,
        "ecs.DescribeContainerInstances": 1,
        "ecs.DescribeTasks": 1,
        "ecs.ListTasks": 1,
    }

    first = await discoverer.discover(targets=targets)
    clock.now += 299
    counter.reset()
    assert await discoverer.discover(targets=targets) == first
    assert counter.by_operation() == {"ecs.ListTasks": 1}

    clock.now += 1
    counter.reset()
    assert await discoverer.discover(targets=targets) == first
    assert counter.by_operation() == full

    # The interval counts from the last full pass.
    clock.now += 299
    counter.reset()
    await discoverer.discover(targets=targets)
    assert counter.by_operation() == {"ecs.ListTasks": 1}

    # 0: every pass is a full one, as the stateless `discover`.
    always = Discoverer(clients, full_refresh_s=0, clock=clock)
    for _ in range(2):
        counter.reset()
        assert await always.discover(targets=targets) == first
        assert counter.by_operation() == full


async def test_instances_no_task_is_on_are_forgotten(account: Account, clients: AwsClients) -> None:
    account.cluster("inf")
    _, ci = account.instance("inf", address="127.0.0.6")
    td = account.task_definition("bert")
    first = account.start_task("inf", "bert", td, ci, host_port=40100)
    counter: RequestCounter = clients.counter  # type: ignore[attr-defined]
    discoverer = Discoverer(clients, clock=Clock())
    targets = [_target("bert")]
    assert [e.task_arn for e in (await discoverer.discover(targets=targets)).endpoints] == [first]

    account.ecs.stop_task(cluster="inf", task=first)
    assert (await discoverer.discover(targets=targets)).endpoints == ()
    assert discoverer.remembered("inf") == frozenset()

    # The same instance again: looked up anew, since nothing was on it any more.
    second = account.start_task("inf", "bert", td, ci, host_port=40101)
    counter.reset()
    found = await discoverer.discover(targets=targets)
    assert [(e.task_arn, e.address) for e in found.endpoints] == [(second, "127.0.0.6:40101")]
    assert counter.by_operation() == {
        "ec2.DescribeInstances": 1,
        "ecs.DescribeContainerInstances": 1,
        "ecs.DescribeTasks": 1,
        "ecs.ListTasks": 1,
    }

    # A cluster no target is in any more is forgotten altogether.
    await discoverer.discover(targets=[])
    assert discoverer.remembered("inf") == frozenset()


async def test_remembered_tasks_of_overlapping_clusters_stay_apart(
    account: Account, clients: AwsClients
) -> None:
    # moto lists "inf1-demo"'s tasks under "inf" too: they are remembered as foreign,
    # never described again, and never taken for "inf"'s.
    a, b = _overlapping_clusters(account)
    counter: RequestCounter = clients.counter  # type: ignore[attr-defined]
    discoverer = Discoverer(clients, clock=Clock())
    targets = OVERLAPPING_TARGETS

    first = await discoverer.discover(targets=targets)
    counter.reset()
    second = await discoverer.discover(targets=targets)

    assert second == first
    assert counter.by_operation() == {"ecs.ListTasks": 2}
    assert {(e.deployment, e.task_arn) for e in second.endpoints} == {("small", a), ("big", b)}


async def test_a_failed_cluster_pass_is_followed_by_a_full_one(
    account: Account, aws: Emulator
) -> None:
    good, bad = _one_task_per_cluster(
        account, {"good": ("127.0.0.11", 36000), "bad": ("127.0.0.12", 36001)}
    )
    targets = [_target("a", "good", "bert"), _target("b", "bad", "bert")]
    counter = RequestCounter()
    with fault_front() as (endpoint, faults):
        settings = AwsSettings(max_attempts=1, endpoint_url=endpoint)
        async with AwsClients(settings=settings, on_request=counter) as clients:
            discoverer = Discoverer(clients, clock=Clock())
            first = await discoverer.discover(targets=targets)
            assert {e.task_arn for e in first.endpoints} == {good, bad}

            faults.add(
                "ListTasks",
                Fault("400 Bad Request", "ThrottlingException", when='"cluster": "bad"'),
            )
            failed = await discoverer.discover(targets=targets)
            assert set(failed.errors) == {"bad"}
            assert failed.failed_deployments == frozenset({"b"})
            assert [e.task_arn for e in failed.endpoints] == [good]
            assert discoverer.remembered("bad") == frozenset()

            counter.reset()
            recovered = await discoverer.discover(targets=targets)
            assert recovered == first
            # "bad" is described in full again; "good" only listed.
            assert counter.by_operation() == {
                "ec2.DescribeInstances": 1,
                "ecs.DescribeContainerInstances": 1,
                "ecs.DescribeTasks": 1,
                "ecs.ListTasks": 2,
            }
