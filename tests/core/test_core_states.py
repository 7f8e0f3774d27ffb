"""Derived values of the observed model."""

from __future__ import annotations

import pytest

from controller.core.states import LiveService


@pytest.mark.parametrize(
    ("desired", "running", "pending", "not_running"),
    [
        (1, 1, 0, 0),
        (3, 1, 2, 2),  # two placed, starting
        (3, 1, 0, 2),  # two that ECS could not place: it counts them nowhere
        (1, 2, 0, 0),  # scaling in: more running than wanted is not "pending"
        (0, 0, 0, 0),
    ],
)
def test_replicas_not_running_counts_unplaced_ones(
    desired: int, running: int, pending: int, not_running: int
) -> None:
    service = LiveService(
        arn="arn:aws:ecs:us-east-1:123456789012:service/c/s",
        name="s",
        cluster="c",
        status="ACTIVE",
        desired_count=desired,
        running_count=running,
        pending_count=pending,
        task_definition="arn:aws:ecs:us-east-1:123456789012:task-definition/f:1",
        deployments=(),
        placement_constraints=(),
        tags={},
    )
    assert service.replicas_not_running == not_running
