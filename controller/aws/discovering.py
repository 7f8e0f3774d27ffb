"""Finding the model endpoints of running tasks, exactly as ECS reports them.

Owns: turning discovery targets (deployment, cluster, service, gRPC container port) into
`Endpoint`s, one per RUNNING task of the service:

- bridge / host tasks: the container's `networkBindings` entry for the gRPC container port
  gives the host port; the task's container instance gives the EC2 instance, whose
  `PrivateIpAddress` is the host;
- awsvpc tasks: the ENI attachment's `privateIPv4Address`, and the container port itself.

Batched so that the number of calls grows with clusters and batch sizes, not with tasks:
per cluster, `list_tasks` (desiredStatus RUNNING, pages of 100), `describe_tasks` 100 tasks
a call, `describe_container_instances` 100 a call, `describe_instances` by an instance-id
filter 100 ids a call. A pass over one cluster of up to 100 tasks on up to 100 instances
costs 4 calls (3 when every task is awsvpc).

Tasks are matched to a service by `group == "service:<name>"` (on real ECS that is what
the service sets; moto ignores `list_tasks(serviceName=...)`), and to a cluster by their
`clusterArn` as well (moto's `list_tasks` matches cluster names as substrings and its
`describe_tasks` ignores the cluster).

Must not: dial any endpoint (the prober does, and decides which addresses it may dial),
write to AWS, or judge what it finds: a task without an address yet is reported as
unresolved, not as an error.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog

from controller.aws.clients import AwsClients
from controller.aws.errors import AwsError, error_code, map_error
from controller.probing.endpoints import DiscoveryTarget, Endpoint

log = structlog.get_logger(__name__)

LIST_TASKS_PAGE = 100
DESCRIBE_TASKS_BATCH = 100
DESCRIBE_CONTAINER_INSTANCES_BATCH = 100
DESCRIBE_INSTANCES_BATCH = 100
RUNNING: Final[Literal["RUNNING"]] = "RUNNING"
_ENI_ATTACHMENT = "ElasticNetworkInterface"


@dataclass(frozen=True, kw_only=True, order=True)
class UnresolvedTask:
    """A RUNNING task of a target whose address is not (yet) known."""

    deployment: str
    cluster: str
    task_arn: str
    reason: str


@dataclass(frozen=True, kw_only=True)
class Discovery:
    """The outcome of one discovery pass."""

    endpoints: tuple[Endpoint, ...] = ()
    """Sorted by deployment, then address."""
    unresolved: tuple[UnresolvedTask, ...] = ()
    """RUNNING tasks without an address: no network binding for the gRPC port yet, their
    container instance or EC2 instance gone, or no private address."""
    errors: Mapping[str, AwsError] = field(default_factory=dict)
    """Clusters whose tasks could not be read, with the error. Their deployments'
    endpoints are unknown this pass, not absent: see `failed_deployments`."""
    failed_deployments: frozenset[str] = frozenset()
    """Deployments in the clusters of `errors`: a prober should leave their loops as they
    are rather than take the failure for "no tasks"."""

    @property
    def ok(self) -> bool:
        return not self.errors


async def discover_endpoints(
    clients: AwsClients, *, targets: Iterable[DiscoveryTarget]
) -> list[Endpoint]:
    """Every endpoint of the targets' RUNNING tasks; raises the first cluster's
    TransientError / TerminalError when any cluster could not be read (see `discover`
    for a pass that keeps going past a failing cluster)."""
    discovery = await discover(clients, targets=targets)
    for cluster in sorted(discovery.errors):
        raise discovery.errors[cluster]
    return list(discovery.endpoints)


async def discover(clients: AwsClients, *, targets: Iterable[DiscoveryTarget]) -> Discovery:
    """Endpoints of the targets' RUNNING tasks, cluster by cluster (concurrently); a
    cluster that fails does not hide the others' endpoints. A cluster that does not
    exist has no endpoints (that is not an error)."""
    by_cluster: dict[str, list[DiscoveryTarget]] = defaultdict(list)
    for target in targets:
        by_cluster[target.cluster].append(target)
    clusters = sorted(by_cluster)
    results = await asyncio.gather(
        *(_discover_cluster(clients, cluster, by_cluster[cluster]) for cluster in clusters),
        return_exceptions=True,
    )
    endpoints: list[Endpoint] = []
    unresolved: list[UnresolvedTask] = []
    errors: dict[str, AwsError] = {}
    failed: set[str] = set()
    for cluster, result in zip(clusters, results, strict=True):
        if isinstance(result, BaseException):
            mapped = map_error(result)
            if mapped is None:
                raise result  # a bug or a cancellation, not an AWS failure
            errors[cluster] = mapped
            failed.update(target.deployment for target in by_cluster[cluster])
            log.warning("discover.cluster_failed", cluster=cluster, error=str(mapped))
            continue
        found, missing = result
        endpoints.extend(found)
        unresolved.extend(missing)
    endpoints.sort(key=lambda e: (e.deployment, e.host, e.port, e.task_arn))
    unresolved.sort()
    return Discovery(
        endpoints=tuple(endpoints),
        unresolved=tuple(unresolved),
        errors=errors,
        failed_deployments=frozenset(failed),
    )


async def _discover_cluster(
    clients: AwsClients, cluster: str, targets: Sequence[DiscoveryTarget]
) -> tuple[list[Endpoint], list[UnresolvedTask]]:
    by_group = {target.group: target for target in sorted(targets)}
    task_arns = await _list_running_tasks(clients, cluster)
    if task_arns is None:  # the cluster does not exist
        return [], []
    tasks = [
        task
        for task in await _describe_tasks(clients, cluster, task_arns)
        if task.get("group") in by_group
        and _in_cluster(task, cluster)
        and task.get("lastStatus") == RUNNING
        and task.get("desiredStatus", RUNNING) == RUNNING
    ]

    endpoints: list[Endpoint] = []
    unresolved: list[UnresolvedTask] = []
    # Bridge/host tasks still need their instance's address: (task, target, host port).
    pending: list[tuple[Mapping[str, Any], DiscoveryTarget, int]] = []
    for task in tasks:
        target = by_group[task["group"]]
        eni_address = _eni_address(task)
        if eni_address is not None:
            endpoints.append(_endpoint(task, target, host=eni_address, port=target.container_port))
            continue
        host_port = _host_port(task, target.container_port)
        if host_port is None:
            unresolved.append(
                _unresolved(
                    task, target, (f"no network binding for container port {target.container_port}")
                )
            )
        elif not task.get("containerInstanceArn"):
            unresolved.append(_unresolved(task, target, "no container instance"))
        else:
            pending.append((task, target, host_port))

    if pending:
        instance_ids = await _ec2_instance_ids(
            clients, cluster, sorted({task["containerInstanceArn"] for task, _, _ in pending})
        )
        addresses = await _private_addresses(clients, sorted(set(instance_ids.values())))
        for task, target, host_port in pending:
            instance_id = instance_ids.get(task["containerInstanceArn"])
            address = addresses.get(instance_id) if instance_id else None
            if instance_id is None:
                unresolved.append(_unresolved(task, target, "container instance not found"))
            elif address is None:
                unresolved.append(
                    _unresolved(task, target, f"instance {instance_id} has no private address")
                )
            else:
                endpoints.append(_endpoint(task, target, host=address, port=host_port))
    log.debug(
        "discover.cluster",
        cluster=cluster,
        listed=len(task_arns),
        endpoints=len(endpoints),
        unresolved=len(unresolved),
    )
    return endpoints, unresolved


async def _list_running_tasks(clients: AwsClients, cluster: str) -> list[str] | None:
    arns: list[str] = []
    try:
        async for page in clients.ecs.get_paginator("list_tasks").paginate(
            cluster=cluster,
            desiredStatus=RUNNING,
            PaginationConfig={"PageSize": LIST_TASKS_PAGE},
        ):
            arns.extend(page.get("taskArns", ()))
    except Exception as error:
        if error_code(error) == "ClusterNotFoundException":
            return None
        raise
    return sorted(set(arns))


async def _describe_tasks(
    clients: AwsClients, cluster: str, arns: Sequence[str]
) -> list[Mapping[str, Any]]:
    responses = await asyncio.gather(
        *(
            clients.ecs.describe_tasks(cluster=cluster, tasks=list(batch))
            for batch in _chunks(arns, DESCRIBE_TASKS_BATCH)
        )
    )
    # Tasks gone between the list and the describe come back in `failures`: skip them.
    return [task for response in responses for task in response.get("tasks", ())]


async def _ec2_instance_ids(
    clients: AwsClients, cluster: str, container_instance_arns: Sequence[str]
) -> dict[str, str]:
    """Container instance ARN -> EC2 instance id (missing ones are left out)."""
    responses = await asyncio.gather(
        *(
            clients.ecs.describe_container_instances(
                cluster=cluster, containerInstances=list(batch)
            )
            for batch in _chunks(container_instance_arns, DESCRIBE_CONTAINER_INSTANCES_BATCH)
        )
    )
    return {
        instance["containerInstanceArn"]: instance["ec2InstanceId"]
        for response in responses
        for instance in response.get("containerInstances", ())
        if instance.get("containerInstanceArn") and instance.get("ec2InstanceId")
    }


async def _private_addresses(clients: AwsClients, instance_ids: Sequence[str]) -> dict[str, str]:
    """EC2 instance id -> PrivateIpAddress. A filter rather than `InstanceIds`, so that an
    instance already gone is simply absent instead of failing the whole call."""

    async def read(batch: Sequence[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        async for page in clients.ec2.get_paginator("describe_instances").paginate(
            Filters=[{"Name": "instance-id", "Values": list(batch)}]
        ):
            for reservation in page.get("Reservations", ()):
                for instance in reservation.get("Instances", ()):
                    address = instance.get("PrivateIpAddress")
                    state = instance.get("State", {}).get("Name")
                    if address and state not in ("terminated", "shutting-down"):
                        found[instance["InstanceId"]] = address
        return found

    results = await asyncio.gather(
        *(read(batch) for batch in _chunks(instance_ids, DESCRIBE_INSTANCES_BATCH))
    )
    return {key: value for result in results for key, value in result.items()}


def _in_cluster(task: Mapping[str, Any], cluster: str) -> bool:
    arn = str(task.get("clusterArn", ""))
    return arn == cluster or arn.endswith(f"/{cluster}")


def _eni_address(task: Mapping[str, Any]) -> str | None:
    """The private IPv4 address of an awsvpc task's ENI, or None for other tasks."""
    for attachment in task.get("attachments", ()):
        if attachment.get("type") != _ENI_ATTACHMENT:
            continue
        for detail in attachment.get("details", ()):
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def _host_port(task: Mapping[str, Any], container_port: int) -> int | None:
    """The host port bound to `container_port` (TCP) in any of the task's containers.

    ECS reports one binding per address family (bindIP 0.0.0.0 and ::) with the same
    host port; the first one is as good as any.
    """
    for container in task.get("containers", ()):
        for binding in container.get("networkBindings", ()) or ():
            if (
                binding.get("containerPort") == container_port
                and binding.get("protocol", "tcp") == "tcp"
                and binding.get("hostPort")
            ):
                return int(binding["hostPort"])
    return None


def _endpoint(
    task: Mapping[str, Any], target: DiscoveryTarget, *, host: str, port: int
) -> Endpoint:
    return Endpoint(
        deployment=target.deployment,
        cluster=target.cluster,
        service=target.service,
        task_arn=str(task["taskArn"]),
        host=host,
        port=port,
        task_definition_arn=str(task.get("taskDefinitionArn", "")),
        last_status=str(task.get("lastStatus", "")),
    )


def _unresolved(task: Mapping[str, Any], target: DiscoveryTarget, reason: str) -> UnresolvedTask:
    return UnresolvedTask(
        deployment=target.deployment,
        cluster=target.cluster,
        task_arn=str(task["taskArn"]),
        reason=reason,
    )


def _chunks(items: Sequence[str], size: int) -> list[Sequence[str]]:
    return [items[start : start + size] for start in range(0, len(items), size)]
