"""Rollouts: the one judgement of where a service's rollout stands.

Owns: telling a finished rollout from one in progress, one that failed, one that was
rolled back (a PRIMARY deployment on another revision than the one we set: the circuit
breaker, or someone else), and a missing service, from the service as observed.
Must not: poll or read AWS (`controller.aws.waiting` polls and hands each read here).

A service is done when it is ACTIVE, has exactly one deployment, that PRIMARY deployment
runs the expected task definition with `rolloutState` COMPLETED (or no rollout state at
all, for ECS without the deployment circuit breaker), and running equals desired.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from controller.core.states import TASK_DEFINITION_TAG, LiveService

RolloutState = Literal["stable", "in-progress", "failed", "rolled-back", "missing"]


@dataclass(frozen=True, kw_only=True)
class Rollout:
    state: RolloutState
    detail: str = ""
    desired_count: int = 0
    running_count: int = 0


def rollout_of(service: LiveService | None, *, expected: str | None = None) -> Rollout:
    """Where the rollout of `service` stands. `expected`: the task-definition ARN it must
    reach; None = the one we recorded on it (`TASK_DEFINITION_TAG`), else its own."""
    if service is None or service.status != "ACTIVE":
        return Rollout(state="missing", detail="service not found")
    target = expected or service.tags.get(TASK_DEFINITION_TAG) or service.task_definition
    desired, running = service.desired_count, service.running_count
    primary = next((d for d in service.deployments if d.status == "PRIMARY"), None)
    if primary is None:
        return Rollout(
            state="in-progress",
            detail="no deployment",
            desired_count=desired,
            running_count=running,
        )
    rollout = primary.rollout_state
    reason = primary.rollout_state_reason or ""
    if rollout == "FAILED":
        return Rollout(state="failed", detail=reason, desired_count=desired, running_count=running)
    if primary.task_definition != target:
        return Rollout(
            state="rolled-back",
            detail=f"PRIMARY runs {primary.task_definition}, not {target}. {reason}",
            desired_count=desired,
            running_count=running,
        )
    done = (
        len(service.deployments) == 1
        and rollout in (None, "COMPLETED")
        and running == desired
        and primary.running_count == desired
    )
    if done:
        return Rollout(state="stable", desired_count=desired, running_count=running)
    count = len(service.deployments)
    return Rollout(
        state="in-progress",
        detail=f"rollout {rollout or 'n/a'}, {running}/{desired} running, {count} deployments",
        desired_count=desired,
        running_count=running,
    )
