"""The lifecycle of tasks, as the ECS agent reports it: PENDING, RUNNING, STOPPED, forgotten.

Owns: which tasks are live; stopping a task (its resources go back to its container
instance, its containers exit); marking a started task RUNNING; making tasks stopped
through moto's API look like ECS's stopped tasks; stopping the tasks of a container
instance that is gone; forgetting stopped tasks after the retention; and the running and
pending counts of clusters and container instances, counted from the tasks. Must not:
decide which tasks should exist (that is the scheduler's) or where (placement's).

Tasks start PENDING and become RUNNING once their model server listens (`mark_running`);
a task whose server cannot start, or whose essential container exits, is stopped with
ECS's stop code. A task whose container instance is deregistered or INACTIVE stops (a
service's are then replaced elsewhere). Stopped tasks stay visible for an hour.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
from collections.abc import Iterator, Sequence

from controller.sandbox.ecs.backends import (
    EcsBackend,
    Task,
    now,
    short,
    stop_code_of,
    stopped_at_of,
)

log = logging.getLogger(__name__)


def live_tasks(ecs: EcsBackend, cluster_name: str) -> list[Task]:
    """The tasks of a cluster that are meant to run (desiredStatus RUNNING)."""
    return [
        task
        for task in ecs.tasks.get(cluster_name, {}).values()
        if task.desired_status == "RUNNING"
    ]


def all_live_tasks(ecs: EcsBackend) -> Iterator[Task]:
    for cluster_name in list(ecs.tasks):
        yield from live_tasks(ecs, cluster_name)


def tasks_by_arn(ecs: EcsBackend, arns: Sequence[str]) -> Iterator[Task]:
    wanted = set(arns)
    for tasks in ecs.tasks.values():
        for arn, task in tasks.items():
            if arn in wanted:
                yield task


def stop_task(ecs: EcsBackend, task: Task, *, reason: str, code: str) -> None:
    """Stop a live task as its agent would: resources released, containers exited."""
    if task.desired_status == "STOPPED":
        return
    cluster_instances = ecs.container_instances.get(task.cluster_name, {})
    container_instance = cluster_instances.get(short(task.container_instance_arn or ""))
    if container_instance is not None and task.resource_requirements:
        with contextlib.suppress(ValueError, KeyError, TypeError):
            ecs.update_container_instance_resources(
                container_instance, task.resource_requirements, removing=True
            )
    stopped = now()
    task.desired_status = "STOPPED"
    task.last_status = "STOPPED"
    task.stopped_reason = reason
    task.stop_code = code
    task.stopping_at = task.execution_stopped_at = task.stopped_at = stopped
    for container in task.containers:
        container.last_status = "STOPPED"
        container.exitCode = 137 if code != "EssentialContainerExited" else 1
    log.info("task %s (%s) stopped: %s", short(task.task_arn), task.group, reason)


def mark_running(task: Task) -> None:
    """A PENDING task whose containers have started is RUNNING."""
    if task.last_status == "PENDING" and task.desired_status == "RUNNING":
        started = now()
        task.last_status = "RUNNING"
        task.pull_started_at = task.pull_stopped_at = task.started_at = started
        for container in task.containers:
            container.last_status = "RUNNING"


def settle_stopped(ecs: EcsBackend) -> None:
    """Tasks stopped through the API (moto's stop_task) look like ECS's stopped tasks."""
    for tasks in ecs.tasks.values():
        for task in tasks.values():
            if task.desired_status == "STOPPED" and stopped_at_of(task) is None:
                task.stopping_at = task.execution_stopped_at = task.stopped_at = now()
                task.stop_code = stop_code_of(task) or "UserInitiated"
                for container in task.containers:
                    container.last_status = "STOPPED"


def stop_orphaned(ecs: EcsBackend) -> None:
    """Tasks whose container instance was deregistered or went INACTIVE stop (a
    service's are then replaced elsewhere)."""
    for cluster_name in list(ecs.tasks):
        instances = ecs.container_instances.get(cluster_name, {})
        for task in live_tasks(ecs, cluster_name):
            if not task.container_instance_arn:
                continue
            instance = instances.get(short(task.container_instance_arn))
            if instance is None or instance.status == "INACTIVE":
                stop_task(
                    ecs,
                    task,
                    reason="Container instance deregistered",
                    code="ServiceSchedulerInitiated",
                )


def forget_stopped(ecs: EcsBackend, *, retention_s: float) -> None:
    """Stopped tasks disappear `retention_s` after they stopped."""
    horizon = now() - dt.timedelta(seconds=retention_s)
    for tasks in ecs.tasks.values():
        for arn, task in list(tasks.items()):
            stopped_at = stopped_at_of(task)
            if task.desired_status == "STOPPED" and stopped_at and stopped_at < horizon:
                del tasks[arn]


def count_tasks(ecs: EcsBackend) -> None:
    """Running and pending counts of every cluster and container instance, from its tasks."""
    for name, cluster in ecs.clusters.items():
        live = live_tasks(ecs, name)
        cluster.running_tasks_count = sum(1 for t in live if t.last_status == "RUNNING")
        cluster.pending_tasks_count = sum(1 for t in live if t.last_status != "RUNNING")
        instances = ecs.container_instances.get(name, {}).values()
        cluster.registered_container_instances_count = sum(
            1 for ci in instances if ci.status != "INACTIVE"
        )
        cluster.active_services_count = sum(
            1 for s in ecs.services.values() if s.cluster_name == name and s.status == "ACTIVE"
        )
        for ci in instances:
            mine = [t for t in live if t.container_instance_arn == ci.container_instance_arn]
            ci.running_tasks_count = sum(1 for t in mine if t.last_status == "RUNNING")
            ci.pending_tasks_count = len(mine) - ci.running_tasks_count
