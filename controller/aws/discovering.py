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
filter 100 ids a call. A full pass over one cluster of up to 100 tasks on up to 100
instances costs 4 calls (3 when every task is awsvpc).

Incremental (`Discoverer`, the daemon's): what discovery uses of a RUNNING task (its
group, cluster, task definition, container instance, host-port bindings, ENI address)
does not change for the rest of its life, nor does a container instance's EC2 instance,
nor a running EC2 instance's private address. A `Discoverer` remembers them, per cluster,
and each pass lists the tasks (`list_tasks` stays the authority on which tasks exist)
but describes only the listed tasks it does not know yet (PENDING ones, and RUNNING ones
of a target that had no address, are described again next pass), and looks up only
container instances and EC2 instances it does not know yet. Tasks no longer listed are
forgotten, and so are the instances no remembered task is on. The steady-state cost of a
pass is just `list_tasks`: 1 call per cluster of up to 100 tasks (2 for 200). Every
`full_refresh_s` (300 s by default), and after a cluster's pass failed, the cluster's
next pass ignores what it remembers and describes everything again, like an informer's
resync. `discover` is the stateless one-shot (the CLI's `status`): every pass is full.

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
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal

import structlog

from controller.aws.clients import AwsClients
from controller.aws.errors import AwsError, error_code, map_error
from controller.aws.observing import (
    chunks,
    describe_container_instances,
    describe_tasks,
    in_cluster,
    list_running_task_arns,
)
from controller.core.endpoints import DiscoveryTarget, Endpoint

log = structlog.get_logger(__name__)

DESCRIBE_INSTANCES_BATCH = 100
FULL_REFRESH_S = 300.0
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
    exist has no endpoints (that is not an error). Stateless: a full pass every time
    (see `Discoverer` for passes that remember)."""
    return await Discoverer(clients).discover(targets=targets)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Task:
    """What discovery uses of a task seen RUNNING: none of it changes while it runs."""

    arn: str
    group: str
    cluster_arn: str
    task_definition_arn: str
    eni_address: str | None
    container_instance_arn: str
    host_ports: Mapping[int, int]
    """TCP container port -> the host port bound to it (the first binding found)."""


@dataclass(slots=True, kw_only=True)
class _ClusterCache:
    """What a `Discoverer` remembers of one cluster."""

    refreshed_at: float
    """`clock()` at the start of the last full pass."""
    tasks: dict[str, _Task] = field(default_factory=dict)
    """Task ARN -> the task, for listed tasks seen RUNNING."""
    ec2_instance_ids: dict[str, str] = field(default_factory=dict)
    """Container instance ARN -> EC2 instance id."""
    addresses: dict[str, str] = field(default_factory=dict)
    """EC2 instance id -> private address."""

    def prune(self) -> None:
        """Forget the instances no remembered task is on."""
        on = {task.container_instance_arn for task in self.tasks.values()}
        self.ec2_instance_ids = {
            arn: instance_id for arn, instance_id in self.ec2_instance_ids.items() if arn in on
        }
        used = set(self.ec2_instance_ids.values())
        self.addresses = {
            instance_id: address
            for instance_id, address in self.addresses.items()
            if instance_id in used
        }


class Discoverer:
    """Discovery passes that remember what does not change (see the module docstring):
    one per `AwsClients`, owned by the daemon's probe companion.

    `full_refresh_s`: seconds after which a cluster's next pass is full again (0: every
    pass is, as with `discover`). `clock`: monotonic seconds (injectable for tests).
    Passes are serialized; each one returns a `Discovery` as `discover` does.
    """

    def __init__(
        self,
        clients: AwsClients,
        *,
        full_refresh_s: float = FULL_REFRESH_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clients = clients
        self.full_refresh_s = full_refresh_s
        self._clock = clock
        self._clusters: dict[str, _ClusterCache] = {}
        self._lock = asyncio.Lock()

    def remembered(self, cluster: str) -> frozenset[str]:
        """The task ARNs remembered for `cluster` (for tests and debugging)."""
        cache = self._clusters.get(cluster)
        return frozenset(cache.tasks) if cache else frozenset()

    async def discover(self, *, targets: Iterable[DiscoveryTarget]) -> Discovery:
        """One pass: endpoints of the targets' RUNNING tasks, as `discover` finds them."""
        async with self._lock:
            return await self._discover(targets)

    async def _discover(self, targets: Iterable[DiscoveryTarget]) -> Discovery:
        by_cluster: dict[str, list[DiscoveryTarget]] = defaultdict(list)
        for target in targets:
            by_cluster[target.cluster].append(target)
        clusters = sorted(by_cluster)
        for gone in set(self._clusters) - set(clusters):
            del self._clusters[gone]
        results = await asyncio.gather(
            *(self._discover_cluster(cluster, by_cluster[cluster]) for cluster in clusters),
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
        self, cluster: str, targets: Sequence[DiscoveryTarget]
    ) -> tuple[list[Endpoint], list[UnresolvedTask]]:
        now = self._clock()
        cache = self._clusters.pop(cluster, None)  # put back only after a good pass
        full = cache is None or now - cache.refreshed_at >= self.full_refresh_s
        if cache is None or full:
            cache = _ClusterCache(refreshed_at=now)
        task_arns = await _list_running_tasks(self.clients, cluster)
        if task_arns is None:  # the cluster does not exist
            return [], []
        listed = set(task_arns)
        cache.tasks = {arn: task for arn, task in cache.tasks.items() if arn in listed}
        unknown = [arn for arn in task_arns if arn not in cache.tasks]
        if unknown:
            for raw in await describe_tasks(self.clients, cluster=cluster, arns=unknown):
                task = _running_task(raw)
                if task is not None and task.arn in listed:
                    cache.tasks[task.arn] = task
        endpoints, unresolved = await self._resolve(cluster, cache, targets)
        cache.prune()
        self._clusters[cluster] = cache
        log.debug(
            "discover.cluster",
            cluster=cluster,
            full=full,
            listed=len(task_arns),
            described=len(unknown),
            endpoints=len(endpoints),
            unresolved=len(unresolved),
        )
        return endpoints, unresolved

    async def _resolve(
        self, cluster: str, cache: _ClusterCache, targets: Sequence[DiscoveryTarget]
    ) -> tuple[list[Endpoint], list[UnresolvedTask]]:
        """The targets' endpoints among the remembered tasks; looks up the container
        instances and EC2 instances not remembered yet. A target's task without a
        binding or a container instance is forgotten, to be described again next pass."""
        by_group = {target.group: target for target in sorted(targets)}
        endpoints: list[Endpoint] = []
        unresolved: list[UnresolvedTask] = []
        # Bridge/host tasks still need their instance's address: (task, target, host port).
        pending: list[tuple[_Task, DiscoveryTarget, int]] = []
        for task in list(cache.tasks.values()):
            target = by_group.get(task.group)
            if target is None or not in_cluster(task.cluster_arn, cluster):
                continue
            if task.eni_address is not None:
                endpoints.append(
                    _endpoint(task, target, host=task.eni_address, port=target.container_port)
                )
                continue
            host_port = task.host_ports.get(target.container_port)
            if host_port is None:
                reason = f"no network binding for container port {target.container_port}"
            elif not task.container_instance_arn:
                reason = "no container instance"
            else:
                pending.append((task, target, host_port))
                continue
            unresolved.append(_unresolved(task, target, reason))
            del cache.tasks[task.arn]
        if not pending:
            return endpoints, unresolved

        unknown_instances = sorted(
            {task.container_instance_arn for task, _, _ in pending} - cache.ec2_instance_ids.keys()
        )
        if unknown_instances:
            cache.ec2_instance_ids.update(
                await _ec2_instance_ids(self.clients, cluster, unknown_instances)
            )
        instance_ids = {
            cache.ec2_instance_ids[task.container_instance_arn]
            for task, _, _ in pending
            if task.container_instance_arn in cache.ec2_instance_ids
        }
        unknown_ids = sorted(instance_ids - cache.addresses.keys())
        if unknown_ids:
            cache.addresses.update(await _private_addresses(self.clients, unknown_ids))
        for task, target, host_port in pending:
            instance_id = cache.ec2_instance_ids.get(task.container_instance_arn)
            address = cache.addresses.get(instance_id) if instance_id else None
            if instance_id is None:
                unresolved.append(_unresolved(task, target, "container instance not found"))
            elif address is None:
                unresolved.append(
                    _unresolved(task, target, f"instance {instance_id} has no private address")
                )
            else:
                endpoints.append(_endpoint(task, target, host=address, port=host_port))
        return endpoints, unresolved


def _running_task(raw: Mapping[str, Any]) -> _Task | None:
    """The task as discovery remembers it, or None unless it is RUNNING (and meant to)."""
    if raw.get("lastStatus") != RUNNING or raw.get("desiredStatus", RUNNING) != RUNNING:
        return None
    return _Task(
        arn=str(raw["taskArn"]),
        group=str(raw.get("group", "")),
        cluster_arn=str(raw.get("clusterArn", "")),
        task_definition_arn=str(raw.get("taskDefinitionArn", "")),
        eni_address=_eni_address(raw),
        container_instance_arn=str(raw.get("containerInstanceArn") or ""),
        host_ports=_host_ports(raw),
    )


async def _list_running_tasks(clients: AwsClients, cluster: str) -> list[str] | None:
    """The cluster's running task ARNs; None when the cluster does not exist."""
    try:
        return await list_running_task_arns(clients, cluster=cluster)
    except Exception as error:
        if error_code(error) == "ClusterNotFoundException":
            return None
        raise


async def _ec2_instance_ids(
    clients: AwsClients, cluster: str, container_instance_arns: Sequence[str]
) -> dict[str, str]:
    """Container instance ARN -> EC2 instance id (missing ones are left out)."""
    found = await describe_container_instances(
        clients, cluster=cluster, arns=container_instance_arns
    )
    return {
        instance["containerInstanceArn"]: instance["ec2InstanceId"]
        for instance in found
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
        *(read(batch) for batch in chunks(instance_ids, DESCRIBE_INSTANCES_BATCH))
    )
    return {key: value for result in results for key, value in result.items()}


def _eni_address(task: Mapping[str, Any]) -> str | None:
    """The private IPv4 address of an awsvpc task's ENI, or None for other tasks."""
    for attachment in task.get("attachments", ()):
        if attachment.get("type") != _ENI_ATTACHMENT:
            continue
        for detail in attachment.get("details", ()):
            if detail.get("name") == "privateIPv4Address" and detail.get("value"):
                return str(detail["value"])
    return None


def _host_ports(task: Mapping[str, Any]) -> dict[int, int]:
    """TCP container port -> the host port bound to it, in any of the task's containers.

    ECS reports one binding per address family (bindIP 0.0.0.0 and ::) with the same
    host port; the first one is as good as any.
    """
    ports: dict[int, int] = {}
    for container in task.get("containers", ()):
        for binding in container.get("networkBindings", ()) or ():
            container_port = binding.get("containerPort")
            if (
                container_port is not None
                and binding.get("protocol", "tcp") == "tcp"
                and binding.get("hostPort")
            ):
                ports.setdefault(int(container_port), int(binding["hostPort"]))
    return ports


def _endpoint(task: _Task, target: DiscoveryTarget, *, host: str, port: int) -> Endpoint:
    return Endpoint(
        deployment=target.deployment,
        cluster=target.cluster,
        service=target.service,
        task_arn=task.arn,
        host=host,
        port=port,
        task_definition_arn=task.task_definition_arn,
        last_status=RUNNING,
    )


def _unresolved(task: _Task, target: DiscoveryTarget, reason: str) -> UnresolvedTask:
    return UnresolvedTask(
        deployment=target.deployment,
        cluster=target.cluster,
        task_arn=task.arn,
        reason=reason,
    )
