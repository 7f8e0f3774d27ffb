"""Fault injection by task tags, as any AWS client can set them (`ecs tag-resource`).

Owns: the tags and what they mean; reading a task's faults for its model server; and
crashing the tasks tagged to crash. Must not: replace a crashed task or count its failure
against a deployment (the scheduler does, from the tasks `crash_tasks` returns).

A service's tags reach its new tasks when it has `propagateTags=SERVICE`.

- `sandbox:delay=<duration>` (`250ms`, `1.5s`, `2`): every Predict of that task takes
  that much longer (as if the model were slow; counted in `x-compute-us`);
- `sandbox:fail=true`: Predict answers UNAVAILABLE (GetModelStatus still works);
- `sandbox:crash=true`: the task's essential container exits: the task stops
  (stopCode EssentialContainerExited) and the service scheduler replaces it.

Removing the tag (`untag-resource`) removes the fault. Changes apply on the next tick.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from controller.sandbox.ecs.backends import EcsBackend, Task, tags_of
from controller.sandbox.ecs.tasks import all_live_tasks, stop_task

DELAY_TAG = "sandbox:delay"
FAIL_TAG = "sandbox:fail"
CRASH_TAG = "sandbox:crash"

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
