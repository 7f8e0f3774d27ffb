"""The service scheduler: tasks to match each service's desiredCount, deployments, events.

Owns: starting and stopping a service's tasks like the ECS rolling-update scheduler; its
deployments (a new PRIMARY per task definition change or forced deployment, older ones
drained and removed); the counts of the service and its deployments; rolloutState; the
service's events; and the pause after a task of the service fails to start or crashes.
Must not: choose instances or ports (placement's), or read the controller's specs.

- **Service scheduler.** Every ACTIVE service gets tasks started and stopped to match
  its desiredCount (minimumHealthyPercent 100, maximumPercent 200 unless the service's
  deploymentConfiguration says otherwise). Tasks carry `group = "service:<name>"`,
  `startedBy = <deployment id>`. A task that cannot be placed is not created, as on ECS:
  runningCount stays below desiredCount, the deployment stays IN_PROGRESS, and the
  service gets the event "(service X) was unable to place a task because no container
  instance met all of its requirements. …" (repeated at most every 30 s).
- **Deployments.** A service whose task definition changes (or `forceNewDeployment`)
  gets a new PRIMARY deployment; the previous one becomes ACTIVE, its tasks are stopped
  as the new ones run, and it is removed once drained. `rolloutState` goes IN_PROGRESS →
  COMPLETED when the PRIMARY deployment alone runs desiredCount tasks. `runningCount`,
  `pendingCount` of the service and its deployments are counted from the tasks; the
  service logs ECS's events (started / stopped tasks, steady state).
- A task stopped through the API (`stop_task`), or whose container instance is
  deregistered, is replaced; after a task fails to start or crashes, its service waits a
  few seconds before starting another, and its deployment's `failedTasks` counts it.

- **Events** (`notifications`, to EventBridge): ECS Service Action `SERVICE_STEADY_STATE`
  (INFO) when the service reaches a steady state and `SERVICE_TASK_PLACEMENT_FAILURE`
  (WARN) with each "unable to place" service event; ECS Deployment State Change
  `SERVICE_DEPLOYMENT_IN_PROGRESS` once per PRIMARY deployment IN_PROGRESS and
  `SERVICE_DEPLOYMENT_COMPLETED` when its rollout completes.

Gaps: no deployment circuit breaker (rolloutState never FAILED, so no
SERVICE_DEPLOYMENT_FAILED), no capacity providers, FARGATE services are placed on
instances like EC2 ones.
"""

from __future__ import annotations

import math
import time
import uuid

from controller.sandbox.ecs import notifications
from controller.sandbox.ecs.backends import (
    Deployment,
    DeploymentConfiguration,
    Ec2Backend,
    EcsBackend,
    Service,
    Task,
    created_at_of,
    deployment_configuration_of,
    now,
    short,
)
from controller.sandbox.ecs.patches import take_forced_deployment
from controller.sandbox.ecs.placement import Placer
from controller.sandbox.ecs.tasks import live_tasks, stop_task

_EVENTS_KEPT = 100


def rollout_bounds(desired: int, configuration: DeploymentConfiguration) -> tuple[int, int]:
    """(most tasks, fewest RUNNING tasks) a service may have during a rolling update."""
    maximum = math.floor(desired * int(configuration.get("maximumPercent", 200)) / 100)
    minimum_healthy = math.ceil(
        desired * int(configuration.get("minimumHealthyPercent", 100)) / 100
    )
    return maximum, minimum_healthy


def new_deployment(service: Service, task_definition_arn: str) -> Deployment:
    """A PRIMARY deployment of `task_definition_arn`, IN_PROGRESS, with no tasks yet."""
    from moto.moto_api._internal import mock_random

    deployment_id = f"ecs-svc/{mock_random.randint(10**18, 10**19 - 1)}"
    created = now()
    return {
        "id": deployment_id,
        "status": "PRIMARY",
        "taskDefinition": task_definition_arn,
        "desiredCount": service.desired_count,
        "pendingCount": 0,
        "runningCount": 0,
        "failedTasks": 0,
        "createdAt": created,
        "updatedAt": created,
        "launchType": service.launch_type or "EC2",
        "rolloutState": "IN_PROGRESS",
        "rolloutStateReason": f"ECS deployment {deployment_id} in progress.",
    }


class ServiceScheduler:
    """The replica scheduler of every service of the account."""

    def __init__(
        self, *, placer: Placer, event_repeat_s: float, start_failure_backoff_s: float
    ) -> None:
        self._placer = placer
        self._event_repeat_s = event_repeat_s
        self._start_failure_backoff_s = start_failure_backoff_s
        self._last_event: dict[tuple[str, str], float] = {}  # (service ARN, message) -> t
        self._start_failed_at: dict[str, float] = {}  # service key -> monotonic time
        self._steady: dict[str, bool] = {}  # service key -> steady at the last tick
        self._announced: dict[str, str] = {}  # service key -> deployment told IN_PROGRESS

    def note_start_failure(self, ecs: EcsBackend, task: Task) -> None:
        """A task failed to start or crashed: its service pauses, its deployment counts it."""
        for key, service in ecs.services.items():
            same_cluster = service.cluster_name == task.cluster_name
            if same_cluster and task.group == f"service:{service.name}":
                self._start_failed_at[key] = time.monotonic()
                for deployment in service.deployments:
                    if deployment.get("id") == task.started_by:
                        deployment["failedTasks"] = int(deployment.get("failedTasks") or 0) + 1

    def schedule_all(self, ecs: EcsBackend, ec2: Ec2Backend) -> None:
        for key, service in list(ecs.services.items()):
            self.schedule(ecs, ec2, key, service)

    def _event(self, service: Service, message: str, *, repeat_key: str | None = None) -> bool:
        """Log a service event; False when it was logged too recently to repeat."""
        if repeat_key is not None:
            key = (service.arn, repeat_key)
            moment = time.monotonic()
            if moment - self._last_event.get(key, -math.inf) < self._event_repeat_s:
                return False
            self._last_event[key] = moment
        service.events.insert(0, {"id": str(uuid.uuid4()), "createdAt": now(), "message": message})
        del service.events[_EVENTS_KEPT:]
        return True

    def schedule(self, ecs: EcsBackend, ec2: Ec2Backend, key: str, service: Service) -> None:
        """One step of one service towards desiredCount tasks of its task definition."""
        cluster = ecs.clusters.get(service.cluster_name)
        group = f"service:{service.name}"
        tasks = [task for task in live_tasks(ecs, service.cluster_name) if task.group == group]
        if service.status != "ACTIVE" or cluster is None or cluster.status != "ACTIVE":
            for task in tasks:
                stop_task(ecs, task, reason="Service deleted", code="ServiceSchedulerInitiated")
            if tasks and service.status != "ACTIVE":
                service.running_count = service.pending_count = 0
            return
        if not service.task_definition:
            return
        try:
            wanted_definition = ecs.describe_task_definition(service.task_definition)
        except Exception:  # deregistered and gone: nothing to start from
            return

        deployments = service.deployments
        primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
        forced = take_forced_deployment(service)
        if primary is None or primary.get("taskDefinition") != wanted_definition.arn or forced:
            for deployment in deployments:
                if deployment.get("status") == "PRIMARY":
                    deployment["status"] = "ACTIVE"
                    deployment["updatedAt"] = now()
            primary = new_deployment(service, wanted_definition.arn)
            deployments.insert(0, primary)
            self._steady[key] = False
        primary["desiredCount"] = service.desired_count
        primary_id = primary["id"]
        if primary.get("rolloutState") == "IN_PROGRESS" and self._announced.get(key) != primary_id:
            self._announced[key] = primary_id
            notifications.deployment_changed(
                ecs, service, primary, "SERVICE_DEPLOYMENT_IN_PROGRESS"
            )

        desired = service.desired_count
        maximum, minimum_healthy = rollout_bounds(desired, deployment_configuration_of(service))
        primary_tasks = [t for t in tasks if t.started_by == primary_id]
        old_tasks = [t for t in tasks if t.started_by != primary_id]
        stopped: list[Task] = []
        scaling = f"Scaling activity initiated by (deployment {primary_id})"

        # Scale the primary deployment down: pending tasks first, then the newest.
        excess = len(primary_tasks) - desired
        if excess > 0:
            victims = [t for t in primary_tasks if t.last_status != "RUNNING"][:excess]
            running_newest_first = sorted(
                (t for t in primary_tasks if t.last_status == "RUNNING"),
                key=created_at_of,
                reverse=True,
            )
            victims += running_newest_first[: excess - len(victims)]
            for task in victims:
                stop_task(ecs, task, reason=scaling, code="ServiceSchedulerInitiated")
                stopped.append(task)
            primary_tasks = [t for t in primary_tasks if t not in victims]

        # Drain older deployments as far as minimumHealthyPercent allows.
        healthy = sum(1 for t in primary_tasks + old_tasks if t.last_status == "RUNNING")
        for task in sorted(old_tasks, key=lambda t: t.last_status == "RUNNING"):
            if task.last_status == "RUNNING":
                if healthy - 1 < minimum_healthy:
                    continue
                healthy -= 1
            stop_task(ecs, task, reason=scaling, code="ServiceSchedulerInitiated")
            stopped.append(task)
        old_tasks = [t for t in old_tasks if t not in stopped]
        if stopped:
            self._event(
                service,
                f"(service {service.name}) has stopped {len(stopped)} running tasks: "
                + " ".join(f"(task {short(t.task_arn)})." for t in stopped),
            )

        # Start primary tasks, within maximumPercent and the start-failure backoff.
        missing = min(desired - len(primary_tasks), maximum - len(primary_tasks) - len(old_tasks))
        failed_at = self._start_failed_at.get(key, -math.inf)
        if time.monotonic() - failed_at < self._start_failure_backoff_s:
            missing = 0
        started: list[Task] = []
        for _ in range(max(0, missing)):
            placed = self._placer.place(
                ecs,
                ec2,
                cluster=cluster,
                service=service,
                task_definition=wanted_definition,
                deployment_id=primary_id,
            )
            if isinstance(placed, str):
                if self._event(
                    service,
                    f"(service {service.name}) was unable to place a task because no container "
                    f"instance met all of its requirements. {placed} For more information, see "
                    "the Troubleshooting section of the Amazon ECS Developer Guide.",
                    repeat_key="unable-to-place",
                ):
                    notifications.service_action(
                        ecs, service, "SERVICE_TASK_PLACEMENT_FAILURE", event_type="WARN"
                    )
                break
            started.append(placed)
            primary_tasks.append(placed)
        if started:
            self._last_event.pop((service.arn, "unable-to-place"), None)
            self._event(
                service,
                f"(service {service.name}) has started {len(started)} tasks: "
                + " ".join(f"(task {short(t.task_arn)})." for t in started),
            )

        # Counts, drained deployments, rollout state, steady state.
        counted = now()
        for deployment in list(deployments):
            own = [
                t
                for t in (primary_tasks if deployment is primary else old_tasks)
                if deployment is primary or t.started_by == deployment["id"]
            ]
            running = sum(1 for t in own if t.last_status == "RUNNING")
            pending = len(own) - running
            if deployment is not primary:
                if not own:
                    deployments.remove(deployment)
                    continue
                deployment["desiredCount"] = len(own)
            if (deployment["runningCount"], deployment["pendingCount"]) != (running, pending):
                deployment["runningCount"], deployment["pendingCount"] = running, pending
                deployment["updatedAt"] = counted
        live = primary_tasks + old_tasks
        service.running_count = sum(1 for t in live if t.last_status == "RUNNING")
        service.pending_count = len(live) - service.running_count
        steady = (
            len(deployments) == 1
            and primary["runningCount"] == desired
            and primary["pendingCount"] == 0
        )
        if steady and primary.get("rolloutState") == "IN_PROGRESS":
            primary["rolloutState"] = "COMPLETED"
            primary["rolloutStateReason"] = f"ECS deployment {primary_id} completed."
            primary["updatedAt"] = counted
            self._event(
                service,
                f"(service {service.name}) (deployment {primary_id}) deployment completed.",
            )
            notifications.deployment_changed(ecs, service, primary, "SERVICE_DEPLOYMENT_COMPLETED")
        if steady and not self._steady.get(key, False):
            self._event(service, f"(service {service.name}) has reached a steady state.")
            notifications.service_action(ecs, service, "SERVICE_STEADY_STATE")
        self._steady[key] = steady
