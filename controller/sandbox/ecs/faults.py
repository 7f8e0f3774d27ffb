"""Fault injection by tags, as any AWS client can set them (`ecs tag-resource`,
`ec2 create-tags`).

Owns: the tags and what they mean; reading a task's faults for its model server;
crashing the tasks tagged to crash; and interrupting the EC2 instances tagged to be
interrupted. Must not: replace a crashed task or count its failure against a deployment
(the scheduler does, from the tasks `crash_tasks` returns), or stop the tasks of an
interrupted instance (its agent does, as for any terminated instance).

A service's tags reach its new tasks when it has `propagateTags=SERVICE`.

- `sandbox:delay=<duration>` (`250ms`, `1.5s`, `2`): every Predict of that task takes
  that much longer (as if the model were slow; counted in `x-compute-us`);
- `sandbox:fail=true`: Predict answers UNAVAILABLE (GetModelStatus still works);
- `sandbox:crash=true`: the task's essential container exits: the task stops
  (stopCode EssentialContainerExited) and the service scheduler replaces it.

On an EC2 instance:

- `sandbox:interrupt=true`: a spot interruption. The instance (running) gets EC2's "EC2
  Spot Instance Interruption Warning" event (`instance-action: terminate`), then, after
  the data plane's `spot_interruption_notice_s` (2 s in the sandbox; AWS gives two
  minutes), it is terminated with StateReason `Server.SpotInstanceTermination`, whether
  spot or not and despite termination protection, as AWS would take it: its container
  instance goes INACTIVE and its tasks stop, like any terminated instance's. Once warned,
  removing the tag does not save it (nor does it on AWS).

Removing the tag (`untag-resource`) removes the fault. Changes apply on the next tick.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping
from dataclasses import dataclass

from controller.sandbox.ecs import notifications
from controller.sandbox.ecs.backends import (
    Ec2Backend,
    EcsBackend,
    Instance,
    Task,
    new_state_reason,
    tags_of,
)
from controller.sandbox.ecs.tasks import all_live_tasks, stop_task

DELAY_TAG = "sandbox:delay"
FAIL_TAG = "sandbox:fail"
CRASH_TAG = "sandbox:crash"
INTERRUPT_TAG = "sandbox:interrupt"
SPOT_TERMINATION = "Server.SpotInstanceTermination"

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m)?\s*$")


def parse_duration(text: str) -> float:
    """`250ms`, `1.5s`, `2m`, or plain seconds; ValueError otherwise."""
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "s"
    return value * {"ms": 0.001, "s": 1.0, "m": 60.0}[unit]


def truthy(text: str | None) -> bool:
    return (text or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class TaskFaults:
    """What a task's model server must do wrong."""

    delay_s: float = 0.0
    fail: bool = False


def faults_of(tags: dict[str, str]) -> TaskFaults:
    """The faults a task's tags ask for; a delay that is not a duration is no delay."""
    try:
        delay_s = parse_duration(tags.get(DELAY_TAG, "0"))
    except ValueError:
        delay_s = 0.0
    return TaskFaults(delay_s=delay_s, fail=truthy(tags.get(FAIL_TAG)))


def crash_tasks(ecs: EcsBackend) -> list[Task]:
    """Stop the RUNNING tasks tagged `sandbox:crash` as if their essential container
    exited; the tasks crashed."""
    crashed: list[Task] = []
    for task in all_live_tasks(ecs):
        if task.last_status == "RUNNING" and truthy(tags_of(task).get(CRASH_TAG)):
            stop_task(
                ecs,
                task,
                reason="Essential container in task exited",
                code="EssentialContainerExited",
            )
            crashed.append(task)
    return crashed


class SpotInterruptions:
    """The instances tagged `sandbox:interrupt`: warned, then taken away."""

    def __init__(self, *, notice_s: float) -> None:
        self._notice_s = notice_s
        self._due: dict[str, float] = {}  # instance id -> monotonic time of termination

    def run(self, ec2: Ec2Backend, instances: Mapping[str, Instance]) -> None:
        moment = time.monotonic()
        for instance_id in list(self._due):
            if instance_id not in instances:  # the account was reset
                del self._due[instance_id]
        for instance_id, instance in instances.items():
            due = self._due.get(instance_id)
            if due is None:
                tagged = truthy(ec2.tags.get(instance_id, {}).get(INTERRUPT_TAG))
                if tagged and instance.state == "running":
                    self._due[instance_id] = moment + self._notice_s
                    notifications.spot_interruption_warning(ec2, instance_id)
            elif moment >= due:
                del self._due[instance_id]
                if instance.state not in ("shutting-down", "terminated"):
                    instance.terminate()
                    instance.state_reason = new_state_reason(
                        SPOT_TERMINATION, f"{SPOT_TERMINATION}: Spot instance termination"
                    )
