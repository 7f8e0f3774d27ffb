"""Waiting for services to settle after an apply (`ecs-infer apply --wait`).

Owns: polling `describe_services` until every service is stable *and* its rollout
reached the task definition we set, and telling success from a rollout that failed or
was rolled back. Must not: change anything in AWS.

A service is done when it is ACTIVE, has exactly one deployment, that PRIMARY deployment
runs the expected task definition with `rolloutState` COMPLETED (or no rollout state at
all, for ECS without the deployment circuit breaker), and running equals desired.
A PRIMARY deployment on another task definition means the circuit breaker rolled back
(or someone else changed the service): that, like a FAILED rollout, is an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import structlog

from controller.aws.clients import AwsClients
from controller.aws.errors import TerminalError, TransientError, translating_errors
from controller.aws.observing import describe_services, ecs_tags
from controller.core.states import TASK_DEFINITION_TAG
from controller.settings import WaitSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class ServiceTarget:
    cluster: str
    name: str
    task_definition: str | None = None
    """The ARN the rollout must reach; None = the one we recorded on the service
    (`TASK_DEFINITION_TAG`), else the service's own `taskDefinition`."""


RolloutState = Literal["stable", "in-progress", "failed", "rolled-back", "missing"]


@dataclass(frozen=True, kw_only=True)
class ServiceRollout:
    target: ServiceTarget
    state: RolloutState
    detail: str = ""
    desired_count: int = 0
    running_count: int = 0


class RolloutFailed(TerminalError):
    """A rollout failed or was rolled back; waiting longer will not fix it."""

    def __init__(self, message: str, *, rollouts: tuple[ServiceRollout, ...]) -> None:
        super().__init__(message, service="ecs", operation="DescribeServices")
        self.rollouts = rollouts


class WaitTimedOut(TransientError):
    def __init__(self, message: str, *, rollouts: tuple[ServiceRollout, ...]) -> None:
        super().__init__(message, service="ecs", operation="DescribeServices")
        self.rollouts = rollouts


def rollout_of(target: ServiceTarget, raw: Mapping[str, Any] | None) -> ServiceRollout:
    """Where one service's rollout stands, from its describe_services entry."""
    if raw is None or raw.get("status") != "ACTIVE":
        return ServiceRollout(target=target, state="missing", detail="service not found")
    expected = (
        target.task_definition
        or ecs_tags(raw.get("tags")).get(TASK_DEFINITION_TAG)
        or str(raw.get("taskDefinition", ""))
    )
    desired = int(raw.get("desiredCount", 0))
    running = int(raw.get("runningCount", 0))
    deployments = list(raw.get("deployments", ()))
    primary = next((d for d in deployments if d.get("status") == "PRIMARY"), None)
    if primary is None:
        return ServiceRollout(
            target=target,
            state="in-progress",
            detail="no deployment",
            desired_count=desired,
            running_count=running,
        )
    rollout = primary.get("rolloutState")
    reason = primary.get("rolloutStateReason") or ""
    if rollout == "FAILED":
        return ServiceRollout(
            target=target,
            state="failed",
            detail=reason,
            desired_count=desired,
            running_count=running,
        )
    if primary.get("taskDefinition") != expected:
        return ServiceRollout(
            target=target,
            state="rolled-back",
            detail=f"PRIMARY runs {primary.get('taskDefinition')}, not {expected}. {reason}",
            desired_count=desired,
            running_count=running,
        )
    done = (
        len(deployments) == 1
        and rollout in (None, "COMPLETED")
        and running == desired
        and int(primary.get("runningCount", running)) == desired
    )
    if done:
        return ServiceRollout(
            target=target, state="stable", desired_count=desired, running_count=running
        )
    detail = (
        f"rollout {rollout or 'n/a'}, {running}/{desired} running, {len(deployments)} deployments"
    )
    return ServiceRollout(
        target=target,
        state="in-progress",
        detail=detail,
        desired_count=desired,
        running_count=running,
    )


async def read_rollouts(
    clients: AwsClients, *, services: Iterable[ServiceTarget]
) -> tuple[ServiceRollout, ...]:
    targets = list(services)
    by_cluster: dict[str, list[ServiceTarget]] = {}
    for target in targets:
        by_cluster.setdefault(target.cluster, []).append(target)
    found: dict[tuple[str, str], Mapping[str, Any]] = {}
    with translating_errors():
        for cluster, members in by_cluster.items():
            raws = await describe_services(
                clients, cluster=cluster, services=sorted({t.name for t in members})
            )
            for raw in raws:
                key = (cluster, str(raw.get("serviceName")))
                if raw.get("status") == "ACTIVE" or key not in found:
                    found[key] = raw
    return tuple(rollout_of(t, found.get((t.cluster, t.name))) for t in targets)


async def wait_until_stable(
    clients: AwsClients,
    *,
    services: Iterable[ServiceTarget],
    timeout: float | None = None,  # noqa: ASYNC109 - a deadline over many polls, not one call
    settings: WaitSettings | None = None,
) -> tuple[ServiceRollout, ...]:
    """Poll until every service is stable on its expected task definition.

    Raises RolloutFailed (terminal) for a failed or rolled-back rollout or a missing
    service, WaitTimedOut (transient) when `timeout` (default: the settings') passes.
    """
    settings = settings or WaitSettings()
    targets = tuple(services)
    deadline = time.monotonic() + (timeout if timeout is not None else settings.timeout_s)
    while True:
        rollouts = await read_rollouts(clients, services=targets)
        bad = [r for r in rollouts if r.state in ("failed", "rolled-back", "missing")]
        if bad:
            raise RolloutFailed(
                "; ".join(f"service {r.target.name}: {r.state}: {r.detail}" for r in bad),
                rollouts=rollouts,
            )
        waiting = [r for r in rollouts if r.state != "stable"]
        if not waiting:
            return rollouts
        if time.monotonic() >= deadline:
            raise WaitTimedOut(
                "timed out waiting for "
                + "; ".join(f"service {r.target.name}: {r.detail}" for r in waiting),
                rollouts=rollouts,
            )
        log.info("wait.polling", waiting=[r.target.name for r in waiting])
        await asyncio.sleep(min(settings.poll_interval_s, max(deadline - time.monotonic(), 0)))
