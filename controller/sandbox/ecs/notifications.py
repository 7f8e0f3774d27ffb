"""ECS's and EC2's own events about the emulated account, told to EventBridge (`events`).

Owns: the detail of each event ECS and EC2 send about what happens in an account (ECS Task
State Change, ECS Container Instance State Change, ECS Service Action, ECS Deployment State
Change, EC2 Instance State-change Notification, EC2 Spot Instance Interruption Warning);
and `Watch`, which compares the account's tasks, container instances and EC2 instances
with its last look and emits one event per change, whoever made it (the data plane, or
any client through the API). Must not: change what it looks at (but a task's and a
container instance's `version`, which ECS bumps on each change), or decide anything.

- **Tasks**: a new task, or one whose lastStatus or desiredStatus changed, gives an ECS
  Task State Change (its version bumped first).
- **Container instances**: one registered, or whose status or agentConnected changed,
  gives an ECS Container Instance State Change; one deregistered (gone while its
  cluster exists) gives one with status INACTIVE.
- **EC2 instances**: a state change gives EC2's notifications with the states between,
  as EC2 passes them (`pending` before `running`, `stopping` before `stopped`,
  `shutting-down` before `terminated`), since moto jumps to the end state at once.

The first look compares with an empty account (the data plane starts with the emulator,
or on an account just reset), so what exists then is told as new; a resource that
vanishes with the account (a reset) is forgotten. The scheduler calls `service_action` and
`deployment_changed` at the moments it knows; `faults` calls `spot_interruption_warning`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from controller.sandbox import events
from controller.sandbox.ecs.backends import (
    ContainerInstance,
    Deployment,
    Ec2Backend,
    EcsBackend,
    Instance,
    Service,
    Task,
    bindings_of,
    now,
    stop_code_of,
    version_of,
)

TASK_STATE_CHANGE = "ECS Task State Change"
CONTAINER_INSTANCE_STATE_CHANGE = "ECS Container Instance State Change"
SERVICE_ACTION = "ECS Service Action"
DEPLOYMENT_STATE_CHANGE = "ECS Deployment State Change"
INSTANCE_STATE_CHANGE = "EC2 Instance State-change Notification"
SPOT_INTERRUPTION_WARNING = "EC2 Spot Instance Interruption Warning"

# The state EC2 passes through on its way to each end state moto jumps to.
_ON_THE_WAY = {"running": "pending", "stopped": "stopping", "terminated": "shutting-down"}


def cluster_arn(ecs: EcsBackend, cluster_name: str) -> str:
    return f"arn:aws:ecs:{ecs.region_name}:{ecs.account_id}:cluster/{cluster_name}"


def instance_arn(ec2: Ec2Backend, instance_id: str) -> str:
    return f"arn:aws:ec2:{ec2.region_name}:{ec2.account_id}:instance/{instance_id}"


def _times(task: Task, names: Mapping[str, str]) -> dict[str, Any]:
    return {key: value for key, attr in names.items() if (value := getattr(task, attr, None))}


def task_detail(ecs: EcsBackend, task: Task) -> dict[str, Any]:
    """ECS Task State Change's detail: the task as `describe_tasks` tells it."""
    detail: dict[str, Any] = {
        "clusterArn": cluster_arn(ecs, task.cluster_name),
        "taskArn": task.task_arn,
        "taskDefinitionArn": task.task_definition_arn,
        "group": task.group,
        "lastStatus": task.last_status,
        "desiredStatus": task.desired_status,
        "containerInstanceArn": task.container_instance_arn,
        "startedBy": task.started_by,
        "launchType": getattr(task, "launch_type", None) or "EC2",
        "availabilityZone": getattr(task, "availability_zone", None),
        "cpu": getattr(task, "cpu", None),
        "memory": getattr(task, "memory", None),
        "connectivity": getattr(task, "connectivity", None),
        "version": version_of(task),
        "updatedAt": now(),
        "attachments": [],
        "overrides": {"containerOverrides": []},
    }
    detail.update(
        _times(
            task,
            {
                "createdAt": "created_at",
                "connectivityAt": "connectivity_at",
                "pullStartedAt": "pull_started_at",
                "pullStoppedAt": "pull_stopped_at",
                "startedAt": "started_at",
            },
        )
    )
    if task.desired_status == "STOPPED" or task.last_status == "STOPPED":
        detail["stoppedReason"] = task.stopped_reason
        detail["stopCode"] = stop_code_of(task)
        detail.update(
            _times(
                task,
                {
                    "stoppingAt": "stopping_at",
                    "executionStoppedAt": "execution_stopped_at",
                    "stoppedAt": "stopped_at",
                },
            )
        )
    containers = []
    for container in task.containers:
        shown: dict[str, Any] = {
            "containerArn": getattr(container, "container_arn", None),
            "name": container.name,
            "image": container.image,
            "lastStatus": container.last_status,
            "taskArn": task.task_arn,
            "networkBindings": list(bindings_of(container)),
        }
        if container.last_status == "STOPPED":
            shown["exitCode"] = getattr(container, "exitCode", None)
        containers.append(shown)
    detail["containers"] = containers
    return {key: value for key, value in detail.items() if value is not None}


def container_instance_detail(
    ecs: EcsBackend, instance: ContainerInstance, *, status: str | None = None
) -> dict[str, Any]:
    """ECS Container Instance State Change's detail."""
    return {
        "clusterArn": cluster_arn(ecs, instance.cluster_name),
        "containerInstanceArn": instance.container_instance_arn,
        "ec2InstanceId": instance.ec2_instance_id,
        "status": status or instance.status,
        "agentConnected": False if status == "INACTIVE" else instance.agent_connected,
        "attributes": [
            {"name": name, "value": value} if value is not None else {"name": name}
            for name, value in instance.attributes.items()
        ],
        "registeredResources": list(instance.registered_resources),
        "remainingResources": list(instance.remaining_resources),
        "versionInfo": dict(getattr(instance, "version_info", None) or {}),
        "registeredAt": getattr(instance, "registered_at", None),
        "version": version_of(instance),
        "updatedAt": now(),
    }


def service_action(
    ecs: EcsBackend, service: Service, event_name: str, *, event_type: str = "INFO"
) -> None:
    """An ECS Service Action (`SERVICE_STEADY_STATE`, `SERVICE_TASK_PLACEMENT_FAILURE`)."""
    if not events.wanted(ecs.account_id, ecs.region_name):
        return
    events.emit(
        source="aws.ecs",
        detail_type=SERVICE_ACTION,
        detail={
            "eventType": event_type,
            "eventName": event_name,
            "clusterArn": cluster_arn(ecs, service.cluster_name),
            "createdAt": now(),
        },
        resources=[service.arn],
        account=ecs.account_id,
        region=ecs.region_name,
    )


def deployment_changed(
    ecs: EcsBackend, service: Service, deployment: Deployment, event_name: str
) -> None:
    """An ECS Deployment State Change (`SERVICE_DEPLOYMENT_IN_PROGRESS` / `_COMPLETED`)."""
    if not events.wanted(ecs.account_id, ecs.region_name):
        return
    events.emit(
        source="aws.ecs",
        detail_type=DEPLOYMENT_STATE_CHANGE,
        detail={
            "eventType": "ERROR" if event_name.endswith("FAILED") else "INFO",
            "eventName": event_name,
            "deploymentId": deployment.get("id"),
            "updatedAt": deployment.get("updatedAt") or now(),
            "reason": deployment.get("rolloutStateReason"),
        },
        resources=[service.arn],
        account=ecs.account_id,
        region=ecs.region_name,
    )


def spot_interruption_warning(ec2: Ec2Backend, instance_id: str) -> None:
    """EC2's two-minute warning before it takes a spot instance back."""
    _ec2_event(
        ec2,
        SPOT_INTERRUPTION_WARNING,
        instance_id,
        {"instance-id": instance_id, "instance-action": "terminate"},
    )


def _ec2_event(ec2: Ec2Backend, detail_type: str, instance_id: str, detail: Any) -> None:
    events.emit(
        source="aws.ec2",
        detail_type=detail_type,
        detail=detail,
        resources=[instance_arn(ec2, instance_id)],
        account=ec2.account_id,
        region=ec2.region_name,
    )


@dataclass
class _Seen:
    tasks: dict[str, tuple[str, str]] = field(default_factory=dict)  # ARN -> statuses
    # ARN -> (status, agentConnected), and the instance (to tell of it once moto drops it)
    container_instances: dict[str, tuple[tuple[str, bool], ContainerInstance]] = field(
        default_factory=dict
    )
    instances: dict[str, str] = field(default_factory=dict)  # EC2 id -> state


class Watch:
    """The account as last seen; `look` emits an event per change since."""

    def __init__(self) -> None:
        self._seen = _Seen()

    def look(self, ecs: EcsBackend, ec2: Ec2Backend, instances: Mapping[str, Instance]) -> None:
        """Emit what changed since the last look (when a rule could want it)."""
        speak = events.wanted(ecs.account_id, ecs.region_name)
        self._tasks(ecs, self._seen, speak=speak)
        self._container_instances(ecs, self._seen, speak=speak)
        self._instances(ec2, instances, self._seen, speak=speak)

    @staticmethod
    def _tasks(ecs: EcsBackend, seen: _Seen, *, speak: bool) -> None:
        current: dict[str, tuple[str, str]] = {}
        for tasks in ecs.tasks.values():
            for arn, task in tasks.items():
                current[arn] = statuses = (task.last_status, task.desired_status)
                before = seen.tasks.get(arn)
                if before == statuses:
                    continue
                if before is not None or not version_of(task):  # a new task keeps its own
                    task.version = version_of(task) + 1
                if speak:
                    events.emit(
                        source="aws.ecs",
                        detail_type=TASK_STATE_CHANGE,
                        detail=task_detail(ecs, task),
                        resources=[arn],
                        account=ecs.account_id,
                        region=ecs.region_name,
                    )
        seen.tasks = current

    @staticmethod
    def _container_instances(ecs: EcsBackend, seen: _Seen, *, speak: bool) -> None:
        current: dict[str, tuple[tuple[str, bool], ContainerInstance]] = {}
        told: list[dict[str, Any]] = []
        for cluster_name, instances in ecs.container_instances.items():
            if cluster_name not in ecs.clusters:
                continue  # moto's "orphaned": deregistered with tasks still on them
            for instance in instances.values():
                arn = instance.container_instance_arn
                state = (instance.status, bool(instance.agent_connected))
                current[arn] = (state, instance)
                before = seen.container_instances.get(arn)
                if before is not None and before[0] == state:
                    continue
                instance.version = version_of(instance) + 1
                if speak:
                    told.append(container_instance_detail(ecs, instance))
        for arn, ((status, _), instance) in seen.container_instances.items():
            deregistered = arn not in current and instance.cluster_name in ecs.clusters
            if speak and deregistered and status != "INACTIVE":
                told.append(container_instance_detail(ecs, instance, status="INACTIVE"))
        seen.container_instances = current
        for detail in told:
            events.emit(
                source="aws.ecs",
                detail_type=CONTAINER_INSTANCE_STATE_CHANGE,
                detail=detail,
                resources=[detail["containerInstanceArn"]],
                account=ecs.account_id,
                region=ecs.region_name,
            )

    @staticmethod
    def _instances(
        ec2: Ec2Backend, instances: Mapping[str, Instance], seen: _Seen, *, speak: bool
    ) -> None:
        current = {instance_id: instance.state for instance_id, instance in instances.items()}
        for instance_id, state in current.items():
            before = seen.instances.get(instance_id)
            if before == state or not speak:
                continue
            for passed in (_ON_THE_WAY.get(state), state):
                if passed is not None and passed != before:
                    _ec2_event(
                        ec2,
                        INSTANCE_STATE_CHANGE,
                        instance_id,
                        {"instance-id": instance_id, "state": passed},
                    )
        seen.instances = current
