"""Placement: choosing the container instance and host ports of a new task, and starting it.

Owns: what the live tasks of each container instance take (NeuronCores, CPU, memory,
ports, tasks per group); what a task definition needs; choosing host ports; which
container instances fit a task and which is best; the reason ECS gives when none fits;
and creating the task (PENDING, every container, networkBindings) on the one chosen.
Must not: decide how many tasks a service needs (the scheduler's) or read the
controller's specs (the sandbox knows what AWS knows).

Placement honours the task definition's and service's placementConstraints (`memberOf`
with the cluster query language of `expressions`; `distinctInstance`), CPU and memory,
host ports, and NeuronCores (per replica: the task definition's tag
`ecs-infer:neuron-cores`, default 1; per instance: the agent's attribute
`ecs-infer.neuron-cores`). Placement spreads a service's tasks over instances: the
instance with the fewest tasks of the service, then the fewest tasks, wins. A task that
cannot be placed is not created, as on ECS: the reason names the closest instance and
the first requirement it missed (constraints, then distinctInstance, NeuronCores, CPU or
memory, ports).

A port mapping without a host port gets one of the agent's ephemeral ports; with the
`host` or `awsvpc` network mode the host port is the container port (no ENIs here: an
awsvpc task binds its container ports on the instance address). No placement strategies
other than spread.
"""

from __future__ import annotations

import logging
import random
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.states import NEURON_CORES_TAG
from controller.sandbox.ecs.agents import NEURON_CORES_ATTRIBUTE
from controller.sandbox.ecs.backends import (
    Cluster,
    ContainerDefinition,
    ContainerInstance,
    Ec2Backend,
    EcsBackend,
    Instance,
    PlacementConstraint,
    PortMapping,
    ResourceRequirements,
    Service,
    Tag,
    Task,
    TaskDefinition,
    definition_of,
    new_container,
    new_task,
    now,
    placement_constraints_of,
    tags_of,
)
from controller.sandbox.ecs.expressions import ExpressionError, expression_matches
from controller.sandbox.ecs.tasks import live_tasks

log = logging.getLogger(__name__)

EPHEMERAL_PORTS = range(49153, 65536)  # the ECS agent's dynamic host ports


@dataclass
class Usage:
    """What the live tasks of one container instance take."""

    cores: int = 0
    cpu: int = 0
    memory: int = 0
    ports: set[int] = field(default_factory=set)
    groups: dict[str, int] = field(default_factory=dict)  # task group -> tasks


@dataclass(frozen=True)
class Binding:
    """One host port bound to one container port."""

    container: str
    container_port: int
    host_port: int
    protocol: str


def port_mappings(definition: ContainerDefinition) -> list[PortMapping]:
    return list(definition.get("portMappings") or definition.get("PortMappings") or [])


def neuron_cores_per_replica(task_definition: TaskDefinition) -> int:
    """The NeuronCores one task of this definition takes (its tag; default 1)."""
    try:
        return max(0, int(tags_of(task_definition).get(NEURON_CORES_TAG, "1")))
    except ValueError:
        return 1


def task_resources(container_definitions: Sequence[ContainerDefinition]) -> tuple[int, int]:
    """(CPU units, MiB of memory) of a task: its containers' `cpu` and `memory`, else
    `memoryReservation`."""
    cpu = memory = 0
    for container in container_definitions:
        cpu += int(container.get("cpu") or 0)
        memory += int(container.get("memory") or container.get("memoryReservation") or 0)
    return cpu, memory


def choose_bindings(
    container_definitions: Sequence[ContainerDefinition],
    *,
    network_mode: str | None,
    used: set[int],
    rng: random.Random,
) -> list[Binding] | None:
    """Host ports for every port mapping, or None when a fixed one is taken (or no
    ephemeral port was found free in 64 draws)."""
    bindings: list[Binding] = []
    taken = set(used)
    dynamic: list[tuple[str, int, str]] = []
    for container in container_definitions:
        for mapping in port_mappings(container):
            container_port = int(mapping.get("containerPort") or 0)
            protocol = str(mapping.get("protocol") or "tcp")
            host_port = int(mapping.get("hostPort") or 0)
            if network_mode in ("host", "awsvpc"):
                host_port = container_port
            if not host_port:
                dynamic.append((str(container.get("name")), container_port, protocol))
                continue
            if host_port in taken:
                return None
            taken.add(host_port)
            bindings.append(
                Binding(str(container.get("name")), container_port, host_port, protocol)
            )
    for name, container_port, protocol in dynamic:
        for _ in range(64):
            candidate = rng.choice(EPHEMERAL_PORTS)
            if candidate not in taken:
                break
        else:
            return None
        taken.add(candidate)
        bindings.append(Binding(name, container_port, candidate, protocol))
    return bindings


def registered(container_instance: ContainerInstance, name: str) -> int:
    """The registered amount of one resource (CPU, MEMORY) of a container instance."""
    for resource in container_instance.registered_resources:
        if resource["name"] == name:
            return int(resource["integerValue"])
    return 0


def usage_of(ecs: EcsBackend, cluster_name: str) -> dict[str, Usage]:
    """What the live tasks take, by container instance ARN."""
    usage: dict[str, Usage] = {}
    for task in live_tasks(ecs, cluster_name):
        arn = task.container_instance_arn
        if not arn:
            continue
        entry = usage.setdefault(arn, Usage())
        definition = definition_of(ecs, task.task_definition_arn)
        if definition is not None:
            entry.cores += neuron_cores_per_replica(definition)
        requirements = task.resource_requirements or {}
        entry.cpu += int(requirements.get("CPU") or 0)
        entry.memory += int(requirements.get("MEMORY") or 0)
        entry.ports.update(int(port) for port in requirements.get("PORTS") or [])
        entry.groups[task.group] = entry.groups.get(task.group, 0) + 1
    return usage


@dataclass(frozen=True)
class Needs:
    """What one task of a service needs from a container instance."""

    group: str  # "service:<name>"
    cores: int
    cpu: int
    memory: int
    constraints: tuple[PlacementConstraint, ...] = ()


@dataclass(frozen=True)
class Candidate:
    """A container instance as placement weighs it."""

    id: str
    attributes: Mapping[str, str | None]
    cpu: int  # registered CPU units
    memory: int  # registered MiB
    subject: Callable[[str], str | None]  # the instance in the cluster query language
    used: Usage = field(default_factory=Usage)

    @property
    def neuron_cores(self) -> int:
        """The NeuronCores its agent reports (ValueError when that is not a number)."""
        return int(self.attributes.get(NEURON_CORES_ATTRIBUTE) or 0)


def misfit(needs: Needs, candidate: Candidate) -> tuple[int, str] | None:
    """Why `candidate` cannot take the task, host ports aside: how close it came (higher
    is closer) and ECS's reason; None when it can. ExpressionError for an unreadable
    placement expression."""
    used, ci = candidate.used, candidate.id
    member_of = all(
        expression_matches(c.get("expression", ""), candidate.subject)
        for c in needs.constraints
        if c.get("type") == "memberOf"
    )
    if not member_of:
        return 0, (
            f"The closest matching (container-instance {ci}) did not match the "
            "placement constraints."
        )
    distinct = any(c.get("type") == "distinctInstance" for c in needs.constraints)
    if distinct and used.groups.get(needs.group):
        return 1, (
            f"The closest matching (container-instance {ci}) is already running "
            "a task of this service (distinctInstance)."
        )
    instance_cores = candidate.neuron_cores
    if used.cores + needs.cores > instance_cores:
        return 2, (
            f"The closest matching (container-instance {ci}) has insufficient "
            f"NeuronCores available ({instance_cores - used.cores} free, "
            f"{needs.cores} needed)."
        )
    if used.cpu + needs.cpu > candidate.cpu:
        return 3, (
            f"The closest matching (container-instance {ci}) has insufficient CPU units available."
        )
    if used.memory + needs.memory > candidate.memory:
        return 3, (
            f"The closest matching (container-instance {ci}) has insufficient memory available."
        )
    return None


_PORT_MISFIT = 4


def spread_rank(needs: Needs, candidate: Candidate) -> tuple[int, int, str]:
    """Lower is better: fewest tasks of the service, then fewest tasks, then the id."""
    groups = candidate.used.groups
    return groups.get(needs.group, 0), sum(groups.values()), candidate.id


def _subject(
    container_instance: ContainerInstance, instance: Instance | None
) -> Callable[[str], str | None]:
    """A container instance as the cluster query language sees it."""

    def subject(name: str) -> str | None:
        if name.startswith("attribute:"):
            value = container_instance.attributes.get(name[len("attribute:") :], None)
            exists = name[len("attribute:") :] in container_instance.attributes
            return "" if exists and value is None else value
        if name == "ec2InstanceId":
            return str(container_instance.ec2_instance_id)
        if name == "instanceType" and instance is not None:
            return str(instance.instance_type)
        return None

    return subject


class Placer:
    """Places the tasks of services on container instances."""

    def __init__(self, *, address_of: Callable[[str], str | None]) -> None:
        self._address_of = address_of  # for the log only
        self._random = random.Random()

    def place(
        self,
        ecs: EcsBackend,
        ec2: Ec2Backend,
        *,
        cluster: Cluster,
        service: Service,
        task_definition: TaskDefinition,
        deployment_id: str,
    ) -> Task | str:
        """Start one task of `service` on the best instance; a reason string if none fits."""
        container_instances = [
            ci
            for ci in ecs.container_instances.get(cluster.name, {}).values()
            if ci.status == "ACTIVE" and ci.agent_connected
        ]
        if not container_instances:
            return "Reason: No Container Instances were found in your cluster."
        usage = usage_of(ecs, cluster.name)
        cpu, memory = task_resources(task_definition.container_definitions)
        needs = Needs(
            group=f"service:{service.name}",
            cores=neuron_cores_per_replica(task_definition),
            cpu=cpu,
            memory=memory,
            constraints=(
                *(task_definition.placement_constraints or []),
                *placement_constraints_of(service),
            ),
        )
        fitting: list[tuple[tuple[int, int, str], ContainerInstance, list[Binding]]] = []
        misses: list[tuple[int, str]] = []
        for ci in sorted(container_instances, key=lambda c: c.registered_at):
            candidate = Candidate(
                id=ci.id,
                attributes=ci.attributes,
                cpu=registered(ci, "CPU"),
                memory=registered(ci, "MEMORY"),
                subject=_subject(ci, ec2.get_instance_by_id(ci.ec2_instance_id)),
                used=usage.get(ci.container_instance_arn, Usage()),
            )
            try:
                missed = misfit(needs, candidate)
            except ExpressionError as error:
                return f"Reason: {error}."
            if missed is not None:
                misses.append(missed)
                continue
            bindings = choose_bindings(
                task_definition.container_definitions,
                network_mode=task_definition.network_mode,
                used=candidate.used.ports,
                rng=self._random,
            )
            if bindings is None:
                misses.append(
                    (
                        _PORT_MISFIT,
                        f"The closest matching (container-instance {ci.id}) is already using "
                        "a port required by your task.",
                    )
                )
                continue
            fitting.append((spread_rank(needs, candidate), ci, bindings))
        if not fitting:
            # The closest miss; the first of the closest when several came as close.
            return max(misses, key=lambda miss: miss[0])[1]
        _, ci, bindings = min(fitting, key=lambda item: item[0])
        task = _start_task(
            ecs,
            cluster=cluster,
            service=service,
            task_definition=task_definition,
            container_instance=ci,
            bindings=bindings,
            deployment_id=deployment_id,
        )
        log.info(
            "task %s of service %s placed on %s (%s)",
            task.id,
            service.name,
            ci.ec2_instance_id,
            self._address_of(ci.ec2_instance_id),
        )
        return task


def _start_task(
    ecs: EcsBackend,
    *,
    cluster: Cluster,
    service: Service,
    task_definition: TaskDefinition,
    container_instance: ContainerInstance,
    bindings: list[Binding],
    deployment_id: str,
) -> Task:
    """A PENDING task of `service` on `container_instance`, stored and its resources taken."""
    cpu, memory = task_resources(task_definition.container_definitions)
    requirements: ResourceRequirements = {
        "CPU": cpu,
        "MEMORY": memory,
        "PORTS": [b.host_port for b in bindings if b.protocol == "tcp"],
        "PORTS_UDP": [b.host_port for b in bindings if b.protocol == "udp"],
    }
    tags: list[Tag] = []
    if service.propagate_tags == "SERVICE":
        tags = [tag.copy() for tag in service.tags or []]
    elif service.propagate_tags == "TASK_DEFINITION":
        tags = [tag.copy() for tag in task_definition.tags or []]
    task = new_task(
        ecs,
        cluster=cluster,
        task_definition=task_definition,
        container_instance_arn=container_instance.container_instance_arn,
        requirements=requirements,
        group=f"service:{service.name}",
        started_by=deployment_id,
        tags=tags,
        launch_type=service.launch_type or "EC2",
    )
    created = now()
    task.last_status = "PENDING"
    task.created_at = created
    task.version = 1
    task.connectivity = "CONNECTED"
    task.connectivity_at = created
    task.health_status = "UNKNOWN"
    task.availability_zone = container_instance.attributes.get("ecs.availability-zone")
    task.cpu = str(cpu) if cpu else None
    task.memory = str(memory) if memory else None
    task.containers = []
    for definition in task_definition.container_definitions:
        container = new_container(task_definition)
        container.task_arn = task.task_arn
        container.name = definition.get("name")
        container.image = definition.get("image")
        container.cpu = str(definition.get("cpu", 0))
        container.memory = definition.get("memory")
        container.memory_reservation = definition.get("memoryReservation")
        container.environment = definition.get("environment")
        container.command = definition.get("command")
        container.network_bindings = [
            {
                "bindIP": "0.0.0.0",
                "containerPort": b.container_port,
                "hostPort": b.host_port,
                "protocol": b.protocol,
            }
            for b in bindings
            if b.container == container.name
        ]
        container.runtime_id = uuid.uuid4().hex
        task.containers.append(container)
    ecs.tasks.setdefault(cluster.name, {})[task.task_arn] = task
    ecs.update_container_instance_resources(
        container_instance, {"CPU": cpu, "MEMORY": memory, "PORTS": requirements["PORTS"]}
    )
    return task
