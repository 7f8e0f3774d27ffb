"""Waiting for rollouts: stable only on the desired revision with COMPLETED rollout.

moto has no scheduler, so these tests play ECS's part on the service object itself.
"""

from __future__ import annotations

import pytest
from aws_helpers import CLUSTER, SERVICE, demo_specs, settle_service

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.waiting import RolloutFailed, ServiceTarget, WaitTimedOut, wait_until_stable
from controller.pipeline import reconcile_pass
from controller.settings import WaitSettings

FAST = WaitSettings(poll_interval_s=0.05, timeout_s=5)
TARGET = ServiceTarget(cluster=CLUSTER, name=SERVICE)


async def test_stable_once_the_rollout_completes(clients: AwsClients) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    settle_service()
    rollouts = await wait_until_stable(clients, services=[TARGET], settings=FAST)
    assert [r.state for r in rollouts] == ["stable"]
    assert rollouts[0].running_count == 1


async def test_times_out_while_in_progress(clients: AwsClients, counter: RequestCounter) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    counter.reset()
    with pytest.raises(WaitTimedOut) as caught:
        await wait_until_stable(clients, services=[TARGET], timeout=0.3, settings=FAST)
    assert caught.value.rollouts[0].state == "in-progress"
    assert counter.count("ecs.DescribeServices") >= 2  # it polled
    assert counter.writes() == {}


async def test_failed_rollout_is_an_error(clients: AwsClients) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    settle_service(rollout="FAILED")
    with pytest.raises(RolloutFailed, match="failed"):
        await wait_until_stable(clients, services=[TARGET], settings=FAST)


async def test_rolled_back_rollout_is_an_error_not_success(clients: AwsClients) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    old = "arn:aws:ecs:us-east-1:123456789012:task-definition/ecs-neuron:0"
    # The circuit breaker rolled back: the PRIMARY deployment runs the old revision and
    # looks perfectly stable.
    settle_service(task_definition=old)
    with pytest.raises(RolloutFailed, match="rolled-back") as caught:
        await wait_until_stable(clients, services=[TARGET], settings=FAST)
    assert caught.value.rollouts[0].state == "rolled-back"


async def test_missing_service_is_an_error(clients: AwsClients) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    with pytest.raises(RolloutFailed, match="missing"):
        await wait_until_stable(
            clients, services=[ServiceTarget(cluster=CLUSTER, name="nope")], settings=FAST
        )
