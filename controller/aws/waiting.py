"""Waiting for services to settle after an apply (`ecs-infer apply --wait`).

Owns: polling `describe_services` until every service is stable *and* its rollout
reached the task definition we set, and raising for a rollout that failed or was rolled
back. Must not: change anything in AWS, or judge a rollout itself: the one judgement is
`controller.core.rollouts.rollout_of` (a FAILED or rolled-back rollout is an error).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from controller.aws.clients import AwsClients
from controller.aws.errors import TerminalError, TransientError, translating_errors
from controller.aws.observing import describe_services, live_service
from controller.core import rollouts
from controller.core.rollouts import RolloutState
from controller.settings import WaitSettings

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class ServiceTarget:
    cluster: str
    name: str
    task_definition: str | None = None
    """The ARN the rollout must reach; None = the one we recorded on the service
    (`TASK_DEFINITION_TAG`), else the service's own `taskDefinition`."""


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
    """Where one service's rollout stands, from its describe_services entry (judged by
    `controller.core.rollouts`)."""
    service = live_service(raw, cluster=target.cluster) if raw is not None else None
    judged = rollouts.rollout_of(service, expected=target.task_definition)
    return ServiceRollout(
        target=target,
        state=judged.state,
        detail=judged.detail,
        desired_count=judged.desired_count,
        running_count=judged.running_count,
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
