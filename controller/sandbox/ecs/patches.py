"""moto-level patches: where moto's ECS API must behave more like ECS while a data plane runs.

Owns: installing and removing the patches (counted: installed by the first data plane
that starts, removed when the last one stops), the marker a forced new deployment leaves
on a service, and keeping moto's tasks from walking towards STOPPED. Must not: schedule,
place or stop anything (the patched calls only record what the caller asked for).

The patches:

- `ListTasks` honours `serviceName` and lists only tasks whose desiredStatus is RUNNING
  unless `desiredStatus` says otherwise;
- `ListContainerInstances` omits INACTIVE instances unless asked by status;
- `CreateService` keeps `placementConstraints`, `placementStrategy` and
  `deploymentConfiguration` (with ECS's defaults);
- `UpdateService` records the task definition's full ARN, leaves runningCount to the
  scheduler, and marks `forceNewDeployment` for the scheduler to see;
- `RegisterTaskDefinition` refuses an `executionRoleArn` or `taskRoleArn` that names no
  IAM role of the account, as ECS does (`ClientException: Role is not valid`); moto
  accepts any string.

moto's `ecs::task` state transition is set to manual on every tick (a task must not walk
towards STOPPED each time it is described; a reset through /moto-api forgets it).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, Protocol, cast

from controller.sandbox.ecs.backends import (
    DeploymentConfiguration,
    EcsBackend,
    PlacementConstraint,
    Service,
)

_FORCED = "_sandbox_force_new_deployment"


class _EcsResponse(Protocol):
    """moto's ECS request handler, as the patched calls use it."""

    @property
    def ecs_backend(self) -> EcsBackend: ...

    @property
    def current_account(self) -> str: ...

    def _get_param(self, param_name: str, if_none: Any = None) -> Any: ...  # request JSON


_Handler = Callable[[_EcsResponse], object]
_UpdateService = Callable[[EcsBackend, dict[str, Any]], Service]


class _Patches:
    """The patches of moto's classes (process-wide, like moto's backends)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._users = 0
        self._list_tasks: _Handler | None = None
        self._list_container_instances: _Handler | None = None
        self._create_service: _Handler | None = None
        self._update_service: _UpdateService | None = None
        self._register_task_definition: _Handler | None = None

    def install(self) -> None:
        from moto.ecs import models, responses

        # moto's classes, patched in place: attribute by attribute, untyped on purpose.
        backend_class: Any = models.EC2ContainerServiceBackend
        response_class: Any = responses.EC2ContainerServiceResponse
        with self._lock:
            self._users += 1
            if self._users > 1:
                return
            self._list_tasks = response_class.list_tasks
            self._list_container_instances = response_class.list_container_instances
            self._create_service = create_service = response_class.create_service
            self._update_service = update_service = backend_class.update_service
            self._register_task_definition = register = response_class.register_task_definition
            response_class.register_task_definition = _checking_roles(register)
            response_class.list_tasks = _list_tasks
            response_class.list_container_instances = _list_container_instances
            response_class.create_service = _keeping_placement(create_service)
            backend_class.update_service = _keeping_counts(update_service)

    def remove(self) -> None:
        from moto.ecs import models, responses

        backend_class: Any = models.EC2ContainerServiceBackend
        response_class: Any = responses.EC2ContainerServiceResponse
        with self._lock:
            self._users -= 1
            if self._users > 0:
                return
            response_class.list_tasks = self._list_tasks
            response_class.list_container_instances = self._list_container_instances
            response_class.create_service = self._create_service
            response_class.register_task_definition = self._register_task_definition
            backend_class.update_service = self._update_service


_patches = _Patches()
install_patches = _patches.install
remove_patches = _patches.remove


def take_forced_deployment(service: Service) -> bool:
    """Whether `update_service(forceNewDeployment=True)` was called since the last look."""
    forced = bool(getattr(service, _FORCED, False))
    if forced:
        setattr(service, _FORCED, False)
    return forced


def keep_tasks_alive() -> None:
    # moto walks a task towards STOPPED each time it is described, unless told not to;
    # a reset through /moto-api/reset forgets it, so say it again on every tick.
    from moto.moto_api import state_manager

    transition = state_manager.get_transition("ecs::task")
    if transition.get("progression") != "manual":
        state_manager.set_transition(
            model_name="ecs::task", transition={"progression": "manual", "times": 10**9}
        )


def _result(result: dict[str, list[str]]) -> object:
    from moto.core.responses import ActionResult

    return ActionResult(result)


def _list_tasks(self: _EcsResponse) -> object:
    tasks = self.ecs_backend.list_tasks(
        self._get_param("cluster", "default"),
        self._get_param("containerInstance"),
        self._get_param("family"),
        self._get_param("startedBy"),
        None,
        self._get_param("desiredStatus") or "RUNNING",
    )
    service = self._get_param("serviceName")
    if service:
        group = "service:" + str(service).split("/")[-1]
        tasks = [task for task in tasks if task.group == group]
    return _result({"taskArns": [task.task_arn for task in tasks]})


def _list_container_instances(self: _EcsResponse) -> object:
    status = self._get_param("status")
    cluster = str(self._get_param("cluster", "default")).split("/")[-1]
    instances = self.ecs_backend.container_instances.get(cluster, {}).values()
    arns = sorted(
        instance.container_instance_arn
        for instance in instances
        if (instance.status == status if status else instance.status != "INACTIVE")
    )
    return _result({"containerInstanceArns": arns})


def _keeping_placement(original: _Handler) -> _Handler:
    def create_service(self: _EcsResponse) -> object:
        result = original(self)
        cluster = str(self._get_param("cluster", "default")).split("/")[-1]
        name = self._get_param("serviceName")
        service = self.ecs_backend.services.get(f"{cluster}:{name}")
        if service is not None:
            constraints: list[PlacementConstraint] = self._get_param("placementConstraints")
            strategy: list[PlacementConstraint] = self._get_param("placementStrategy")
            service.placement_constraints = constraints or []
            service.placement_strategy = strategy or []
            configuration: DeploymentConfiguration = {
                "deploymentCircuitBreaker": {"enable": False, "rollback": False},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            }
            asked = self._get_param("deploymentConfiguration") or {}
            configuration.update(cast("DeploymentConfiguration", asked))
            service.deployment_configuration = configuration
        return result

    return create_service


def _keeping_counts(original: _UpdateService) -> _UpdateService:
    def update_service(self: EcsBackend, properties: dict[str, Any]) -> Service:
        # moto would rename the PRIMARY deployment in place; the scheduler makes a new one.
        force = bool(properties.pop("force_new_deployment", False))
        definition = properties.get("task_definition")
        cluster = self._get_cluster(properties.get("cluster", "default"))
        name = str(properties.get("service", "")).split("/")[-1]
        before = self.services.get(f"{cluster.name}:{name}")
        counts = (before.running_count, before.pending_count) if before else None
        service = original(self, properties)
        if counts is not None:
            service.running_count, service.pending_count = counts
        if definition:
            service.task_definition = self.describe_task_definition(definition).arn
        if force:
            setattr(service, _FORCED, True)
        return service

    return update_service


def _checking_roles(original: _Handler) -> _Handler:
    def register_task_definition(self: _EcsResponse) -> object:
        from moto.ecs.exceptions import EcsClientException
        from moto.iam.exceptions import NotFoundException
        from moto.iam.models import iam_backends

        iam = iam_backends[self.current_account]["global"]
        for field in ("executionRoleArn", "taskRoleArn"):
            arn = self._get_param(field)
            if not arn:
                continue
            try:
                iam.get_role_by_arn(str(arn))
            except NotFoundException:
                raise EcsClientException("Role is not valid") from None
        return original(self)

    return register_task_definition
