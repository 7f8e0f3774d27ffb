"""The order in which a plan is applied: creations outside-in, deletions inside-out.

Owns: `PHASES` and sorting a plan's actions by them. Must not: decide what to plan.

    cluster create/update → security group create/update/replace → instance
    create/replace/update → task-definition create → service create/update → service
    delete → task-definition delete → instance delete → security group delete → cluster
    delete → the fleet's size recorded (last: only once what it records is done)
"""

from __future__ import annotations

from collections.abc import Iterable

from controller.core.plans import Action

PHASES: dict[tuple[str, str], int] = {
    ("cluster", "create"): 0,
    ("cluster", "update"): 0,
    ("security-group", "create"): 1,
    ("security-group", "update"): 1,
    ("security-group", "replace"): 1,
    ("instance", "create"): 2,
    ("instance", "replace"): 2,
    ("instance", "update"): 2,
    ("task-definition", "create"): 3,
    ("task-definition", "replace"): 3,
    ("service", "create"): 4,
    ("service", "update"): 4,
    ("service", "delete"): 5,
    ("task-definition", "delete"): 6,
    ("instance", "delete"): 7,
    ("security-group", "delete"): 8,
    ("cluster", "delete"): 9,
    ("fleet", "update"): 10,
}


def in_phase_order(actions: Iterable[Action]) -> tuple[Action, ...]:
    # sorted() is stable: within a phase, actions keep the order they were planned in.
    return tuple(sorted(actions, key=lambda action: PHASES[(action.resource, action.verb)]))
