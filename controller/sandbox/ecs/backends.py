"""Typed views of moto's in-process ECS and EC2 backends, as the data plane uses them.

Owns: the Protocols and TypedDicts that describe the moto 5.2.5 objects the data plane
reads and changes (clusters, services, tasks, containers, container instances, task
definitions, EC2 instances), including the attributes the data plane itself adds to them;
reaching the backends of one account and region; making moto Tasks and Containers; and
small helpers every concern shares (tags, short ids, the time). Must not: decide anything
(no scheduling, placement or fault logic here), or hold state.

moto's own classes are typed, but they do not declare what the sandbox adds (a task's
`stopped_at`, a service's `deployment_configuration`, ...) and their containers are
invariant, so the backends are seen through these Protocols from one place
(`backends_of`) on. The Protocols name only what the sandbox touches. Attributes that a
moto-made object may lack (a task stopped through moto's `stop_task` has no `stopped_at`
until the sandbox settles it) are read through the accessors at the end, never directly.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Protocol, TypedDict, cast

if TYPE_CHECKING:
    from collections.abc import Iterable

# --- the JSON shapes moto keeps as dicts ---------------------------------------------


class Tag(TypedDict):
    key: str
    value: str


class KeyValue(TypedDict):
    name: str
    value: str


class PortMapping(TypedDict, total=False):
    containerPort: int
    hostPort: int
    protocol: str
    name: str
    appProtocol: str


class ContainerDefinition(TypedDict, total=False):
    name: str
    image: str
    cpu: int
    memory: int
    memoryReservation: int
    command: list[str]
    entryPoint: list[str]
    environment: list[KeyValue]
    portMappings: list[PortMapping]
    PortMappings: list[PortMapping]  # CloudFormation's spelling, which moto also keeps


class PlacementConstraint(TypedDict, total=False):
    type: str
    expression: str


class Resource(TypedDict, total=False):
    """One entry of a container instance's registered or remaining resources."""

    name: str
    type: str
    integerValue: int
    doubleValue: float
    longValue: int
    stringSetValue: list[str]


class ResourceRequirements(TypedDict, total=False):
    """What a task takes from its container instance (moto's `resource_requirements`)."""

    CPU: int
    MEMORY: int
    PORTS: list[int]
    PORTS_UDP: list[int]


class NetworkBinding(TypedDict):
    bindIP: str
    containerPort: int
    hostPort: int
    protocol: str


class Deployment(TypedDict, total=False):
    id: str
    status: str  # PRIMARY | ACTIVE
    taskDefinition: str | None
    desiredCount: int
    pendingCount: int
    runningCount: int
    failedTasks: int
    createdAt: dt.datetime
    updatedAt: dt.datetime
    launchType: str | None
    rolloutState: str
    rolloutStateReason: str


class ServiceEvent(TypedDict):
    id: str
    createdAt: dt.datetime
    message: str


class CircuitBreaker(TypedDict):
    enable: bool
    rollback: bool


class DeploymentConfiguration(TypedDict, total=False):
    deploymentCircuitBreaker: CircuitBreaker
    maximumPercent: int
    minimumHealthyPercent: int


class PrivateAddress(TypedDict):
    Primary: bool
    PrivateIpAddress: str


# --- moto's ECS objects ---------------------------------------------------------------


class Cluster(Protocol):
    name: str
    arn: str
    status: str  # ACTIVE | INACTIVE
    running_tasks_count: int
    pending_tasks_count: int
    registered_container_instances_count: int
    active_services_count: int


class TaskDefinition(Protocol):
    arn: str
    family: str
    revision: int
    container_definitions: list[ContainerDefinition]
    network_mode: str | None
    placement_constraints: list[PlacementConstraint]
    tags: list[Tag]


class Container(Protocol):
    task_arn: str
    name: str | None
    image: str | None
    cpu: str | int
    memory: int | None
    memory_reservation: int | None
    environment: list[KeyValue] | None
    command: list[str] | None
    network_bindings: list[NetworkBinding]  # added by the sandbox: see `bindings_of`
    runtime_id: str
    last_status: str
    exitCode: int


class Task(Protocol):
    id: str
    cluster_name: str
    container_instance_arn: str | None
    task_definition_arn: str
    desired_status: str
    last_status: str
    group: str
    started_by: str
    tags: list[Tag]
    containers: list[Container]
    resource_requirements: ResourceRequirements | None
    stopped_reason: str
    # Added by the sandbox (absent on a task moto made or stopped): see the accessors.
    stop_code: str | None
    created_at: dt.datetime
    stopping_at: dt.datetime
    execution_stopped_at: dt.datetime
    stopped_at: dt.datetime
    pull_started_at: dt.datetime
    pull_stopped_at: dt.datetime
    started_at: dt.datetime
    version: int
    connectivity: str
    connectivity_at: dt.datetime
    health_status: str
    availability_zone: str | None
    cpu: str | None
    memory: str | None

    @property
    def task_arn(self) -> str: ...


class Service(Protocol):
    name: str
    cluster_name: str
    status: str  # ACTIVE | DRAINING | INACTIVE
    task_definition: str | None
    desired_count: int
    running_count: int
    pending_count: int
    launch_type: str | None
    propagate_tags: str  # NONE | SERVICE | TASK_DEFINITION
    tags: list[Tag]
    deployments: list[Deployment]
    events: list[ServiceEvent]
    # Kept by the sandbox's CreateService patch: see the accessors.
    placement_constraints: list[PlacementConstraint]
    placement_strategy: list[PlacementConstraint]
    deployment_configuration: DeploymentConfiguration

    @property
    def arn(self) -> str: ...


class ContainerInstance(Protocol):
    id: str
    ec2_instance_id: str
    cluster_name: str
    status: str  # ACTIVE | DRAINING | INACTIVE
    agent_connected: bool
    attributes: dict[str, str | None]
    registered_resources: list[Resource]
    remaining_resources: list[Resource]
    version_info: dict[str, str]
    registered_at: dt.datetime
    running_tasks_count: int
    pending_tasks_count: int
    version: int  # added by the sandbox: see `version_of`

    @property
    def container_instance_arn(self) -> str: ...


class EcsBackend(Protocol):
    account_id: str
    region_name: str
    clusters: dict[str, Cluster]
    services: dict[str, Service]  # "<cluster>:<service>"
    tasks: dict[str, dict[str, Task]]  # cluster -> task ARN -> task
    container_instances: dict[str, dict[str, ContainerInstance]]  # cluster -> id -> ...
    task_definitions: dict[str, dict[int, TaskDefinition]]  # family -> revision -> ...

    def _get_cluster(self, name: str) -> Cluster: ...

    def describe_task_definition(self, task_definition_str: str) -> TaskDefinition: ...

    def list_tasks(
        self,
        cluster_str: str | None = None,
        container_instance: str | None = None,
        family: str | None = None,
        started_by: str | None = None,
        service_name: str | None = None,
        desiredStatus: str | None = None,
    ) -> list[Task]: ...

    def register_container_instance(
        self, cluster_str: str, ec2_instance_id: str
    ) -> ContainerInstance: ...

    def update_container_instance_resources(
        self,
        container_instance: ContainerInstance,
        task_resources: ResourceRequirements,
        removing: bool = False,
    ) -> None: ...


# --- moto's EC2 objects ---------------------------------------------------------------


class NetworkInterface(Protocol):
    private_ip_address: str | None
    private_ip_addresses: list[PrivateAddress]


class StateReason(Protocol):
    message: str
    code: str


class Instance(Protocol):
    id: str
    instance_type: str
    user_data: object  # moto keeps what it was given: str, bytes, a list of them
    nics: dict[int, NetworkInterface]
    state_reason: StateReason

    @property
    def state(self) -> str: ...  # pending | running | stopping | stopped | ...

    def terminate(self) -> object: ...


class Ec2Backend(Protocol):
    account_id: str
    region_name: str
    tags: dict[str, dict[str, str]]  # resource id -> key -> value

    def all_instances(self) -> Iterable[Instance]: ...

    def get_instance_by_id(self, instance_id: str) -> Instance | None: ...


# --- reaching and extending the backends ----------------------------------------------


def backends_of(account_id: str, region: str) -> tuple[EcsBackend, Ec2Backend]:
    """moto's ECS and EC2 backends of one account and region (in this process)."""
    from moto.ec2.models import ec2_backends
    from moto.ecs.models import ecs_backends

    return (
        cast("EcsBackend", ecs_backends[account_id][region]),
        cast("Ec2Backend", ec2_backends[account_id][region]),
    )


def new_task(
    ecs: EcsBackend,
    *,
    cluster: Cluster,
    task_definition: TaskDefinition,
    container_instance_arn: str,
    requirements: ResourceRequirements,
    group: str,
    started_by: str,
    tags: list[Tag],
    launch_type: str,
) -> Task:
    """A moto Task (not yet stored in the backend)."""
    from moto.ecs import models

    task = models.Task(
        cast("models.Cluster", cluster),
        cast("models.TaskDefinition", task_definition),
        container_instance_arn,
        cast("dict[str, str]", requirements),
        backend=cast("models.EC2ContainerServiceBackend", ecs),
        group=group,
        started_by=started_by,
        tags=cast("list[dict[str, str]]", tags),
        launch_type=launch_type,
    )
    return cast("Task", task)


def new_container(task_definition: TaskDefinition) -> Container:
    """A moto Container of `task_definition` (moto fills it from the first definition)."""
    from moto.ecs import models

    # moto declares CloudFormation hooks abstract on Container, and makes them itself too.
    container = models.Container(cast("models.TaskDefinition", task_definition))  # type: ignore[abstract]
    return cast("Container", container)


def new_state_reason(code: str, message: str) -> StateReason:
    """A moto EC2 StateReason (`describe_instances`' `StateReason`)."""
    from moto.ec2.models.instances import StateReason as MotoStateReason

    return cast("StateReason", MotoStateReason(message, code))


def definition_of(ecs: EcsBackend, arn: str) -> TaskDefinition | None:
    """The task definition of an ARN (or `family:revision`), None once it is gone."""
    family, _, revision = arn.rsplit("/", 1)[-1].rpartition(":")
    return ecs.task_definitions.get(family, {}).get(int(revision) if revision else 0)


def tags_of(resource: Task | TaskDefinition | Service) -> dict[str, str]:
    return {tag["key"]: tag["value"] for tag in (getattr(resource, "tags", None) or [])}


def short(arn: str) -> str:
    """The last part of an ARN: a task's or container instance's id."""
    return arn.rsplit("/", 1)[-1]


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# --- attributes a moto-made object may lack -------------------------------------------


def stopped_at_of(task: Task) -> dt.datetime | None:
    """When the sandbox saw `task` stop; None while moto's own stop_task is unsettled."""
    stopped: dt.datetime | None = getattr(task, "stopped_at", None)
    return stopped


def stop_code_of(task: Task) -> str | None:
    code: str | None = getattr(task, "stop_code", None)
    return code


def created_at_of(task: Task) -> dt.datetime:
    """When the sandbox created `task` (now, for one moto's run_task made)."""
    created: dt.datetime = getattr(task, "created_at", None) or now()
    return created


def bindings_of(container: Container) -> list[NetworkBinding]:
    bindings: list[NetworkBinding] = getattr(container, "network_bindings", None) or []
    return bindings


def placement_constraints_of(service: Service) -> list[PlacementConstraint]:
    """The service's placementConstraints (none for a service made before the patches)."""
    constraints: list[PlacementConstraint] | None = getattr(service, "placement_constraints", None)
    return list(constraints or [])


def deployment_configuration_of(service: Service) -> DeploymentConfiguration:
    configuration: DeploymentConfiguration | None = getattr(
        service, "deployment_configuration", None
    )
    return configuration or {}


def version_of(resource: Task | ContainerInstance) -> int:
    """ECS's version of a task or container instance (0 for one moto made)."""
    version: int = getattr(resource, "version", None) or 0
    return version
