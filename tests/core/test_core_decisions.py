"""The decisions that used to be made in the shell, one table each: launch attempts,
subnets by load, the revision a service runs, rollout judgement, the empty-folder guard,
and what the payloads tell the shell to write."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from core_builders import (
    FACTS,
    converge,
    empty_observed,
    plan_against,
    task_definition_arn,
    walkthrough_desired,
)

from controller.core.desired import desired_state
from controller.core.payloads import (
    ExistingRevision,
    LaunchAttempt,
    LaunchInstance,
    NewRevision,
    UpdateService,
)
from controller.core.planning import EMPTY_SPECS_WARNING
from controller.core.planning.deployments import is_registered, revision_target
from controller.core.planning.disruption import disruption
from controller.core.planning.fleets import launch_attempts, subnets_by_load
from controller.core.planning.pruning import guard_empty_folder
from controller.core.plans import Action, Plan
from controller.core.rollouts import rollout_of
from controller.core.states import (
    MANAGED_BY,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredFleet,
    LiveDeployment,
    LiveInstance,
    LiveService,
)

DEMO = "ecs-inf1-demo"
SERVICE = (DEMO, "bert-inf1")


def _fleet(**changes: Any) -> DesiredFleet:
    return dataclasses.replace(walkthrough_desired().clusters[DEMO].fleet, **changes)


# --- launch attempts: market x subnet ---------------------------------------------------

ATTEMPT_CASES: list[tuple[str, dict[str, Any], dict[str, int], list[tuple[str, str | None]]]] = [
    (
        "spot with fallback: spot everywhere first, then on-demand",
        {"market": "spot", "on_demand_fallback": True, "subnet_ids": ("a", "b")},
        {},
        [("spot", "a"), ("spot", "b"), ("on-demand", "a"), ("on-demand", "b")],
    ),
    (
        "spot without fallback: spot only",
        {"market": "spot", "on_demand_fallback": False, "subnet_ids": ("a", "b")},
        {},
        [("spot", "a"), ("spot", "b")],
    ),
    (
        "on-demand: on-demand only, whatever the fallback says",
        {"market": "on-demand", "on_demand_fallback": True, "subnet_ids": ("a",)},
        {},
        [("on-demand", "a")],
    ),
    (
        "the least loaded subnet first, in every market",
        {"market": "spot", "on_demand_fallback": True, "subnet_ids": ("a", "b")},
        {"a": 2, "b": 1},
        [("spot", "b"), ("spot", "a"), ("on-demand", "b"), ("on-demand", "a")],
    ),
    (
        "no subnet named: the default subnet",
        {"market": "spot", "on_demand_fallback": True, "subnet_ids": ()},
        {},
        [("spot", None), ("on-demand", None)],
    ),
]


@pytest.mark.parametrize(
    ("fleet", "load", "expected"),
    [case[1:] for case in ATTEMPT_CASES],
    ids=[case[0] for case in ATTEMPT_CASES],
)
def test_launch_attempts(
    fleet: dict[str, Any], load: dict[str, int], expected: list[tuple[str, str | None]]
) -> None:
    attempts = launch_attempts(_fleet(**fleet), load=load)
    assert [(a.market, a.subnet_id) for a in attempts] == expected


SUBNET_CASES: list[tuple[str, tuple[str, ...], dict[str, int], tuple[str | None, ...]]] = [
    ("spec order on a tie", ("c", "a", "b"), {}, ("c", "a", "b")),
    ("fewest instances first", ("a", "b", "c"), {"a": 1, "b": 0, "c": 3}, ("b", "a", "c")),
    ("load elsewhere does not count", ("a", "b"), {"z": 9, "a": 1}, ("b", "a")),
    ("none named", (), {"a": 1}, (None,)),
]


@pytest.mark.parametrize(
    ("subnets", "load", "expected"),
    [case[1:] for case in SUBNET_CASES],
    ids=[case[0] for case in SUBNET_CASES],
)
def test_subnets_by_load(
    subnets: tuple[str, ...], load: dict[str, int], expected: tuple[str | None, ...]
) -> None:
    assert subnets_by_load(subnets, load) == expected


def test_the_launches_of_one_plan_spread_across_subnets() -> None:
    desired = walkthrough_desired()
    fleet = desired.clusters[DEMO].fleet
    assert len(fleet.subnet_ids) >= 2
    launches = [
        a.payload for a in plan_against(desired, empty_observed()).actions if a.verb == "create"
    ]
    firsts = [p.attempts[0] for p in launches if isinstance(p, LaunchInstance)]
    assert firsts == [
        LaunchAttempt(market="spot", subnet_id=fleet.subnet_ids[0]),
        LaunchAttempt(market="spot", subnet_id=fleet.subnet_ids[1]),
    ]
    # the model launches where the first attempt says: the next plan sees them there
    model = converge(desired, empty_observed())
    assert sorted(i.subnet_id or "" for i in model.instances[DEMO]) == sorted(fleet.subnet_ids[:2])


# --- fleet disruption -------------------------------------------------------------------


def _instance(number: int, **changes: Any) -> LiveInstance:
    fleet = _fleet()
    return LiveInstance(
        instance_id=f"i-{number}",
        state="running",
        instance_type=changes.get("instance_type", fleet.instance_type),
        image_id=changes.get("image_id", fleet.image_id),
        lifecycle=changes.get("lifecycle", fleet.market),
        private_ip=None,
        launch_time=float(number),
        tags=dict(fleet.tags),
    )


DISRUPTION_CASES: list[tuple[str, int, list[LiveInstance], list[str], list[str], int]] = [
    ("in size: nothing", 2, [_instance(1), _instance(2)], [], [], 2),
    ("scale in: the newest goes", 1, [_instance(1), _instance(2)], ["i-2"], [], 1),
    (
        "scale in: a misfit before a newer fitting one",
        1,
        [_instance(1, image_id="ami-0old"), _instance(2)],
        ["i-1"],
        [],
        1,
    ),
    (
        "misfits kept are replaced oldest first",
        2,
        [_instance(1, image_id="ami-0old"), _instance(2, image_id="ami-0old")],
        [],
        ["i-1", "i-2"],
        2,
    ),
    ("short: nothing goes", 3, [_instance(1)], [], [], 1),
]


@pytest.mark.parametrize(
    ("count", "alive", "remove", "replace", "kept"),
    [case[1:] for case in DISRUPTION_CASES],
    ids=[case[0] for case in DISRUPTION_CASES],
)
def test_disruption(
    count: int, alive: list[LiveInstance], remove: list[str], replace: list[str], kept: int
) -> None:
    decided = disruption(_fleet(count=count), alive)
    assert [i.instance_id for i in decided.remove] == remove
    assert [i.instance_id for i in decided.replace] == replace
    assert decided.kept == kept


# --- the revision a service runs --------------------------------------------------------


def _in_sync() -> tuple[Any, Any]:
    desired = walkthrough_desired()
    return desired, converge(desired, empty_observed())


def test_revision_target_table() -> None:
    desired, model = _in_sync()
    deployment = desired.deployments["bert"]
    service = model.services[SERVICE]
    [revision] = model.task_definitions["ecs-neuron"]
    untagged = dataclasses.replace(service, tags={})
    other_content = dataclasses.replace(
        revision, content={**revision.content, "memory": 1}, arn=task_definition_arn("x", 9)
    )
    unmanaged = dataclasses.replace(revision, tags={})
    new = NewRevision(family="ecs-neuron", content_hash=deployment.task_definition.content_hash)

    cases = [
        # (service, revisions read, the revision the service should run)
        (service, (), ExistingRevision(arn=service.tags[TASK_DEFINITION_TAG])),
        (untagged, (revision,), ExistingRevision(arn=revision.arn)),
        (None, (revision,), ExistingRevision(arn=revision.arn)),
        (None, (other_content,), new),
        (None, (unmanaged,), new),
        (None, (dataclasses.replace(revision, status="INACTIVE"),), new),
        (None, (), new),
    ]
    for live, revisions, expected in cases:
        assert revision_target(deployment, live, revisions) == expected, (live, revisions)


def test_is_registered_table() -> None:
    _, model = _in_sync()
    [revision] = model.task_definitions["ecs-neuron"]
    content_hash = revision.tags[TASK_DEFINITION_HASH_TAG]
    new = NewRevision(family="ecs-neuron", content_hash=content_hash)
    cases = [
        (revision, True),
        (None, False),
        (dataclasses.replace(revision, status="INACTIVE"), False),
        (dataclasses.replace(revision, tags={TASK_DEFINITION_HASH_TAG: content_hash}), False),
        (dataclasses.replace(revision, family="other"), False),
        (
            dataclasses.replace(
                revision, tags={MANAGED_BY: "ecs-infer", TASK_DEFINITION_HASH_TAG: "other"}
            ),
            False,
        ),
    ]
    for candidate, expected in cases:
        assert is_registered(candidate, new) is expected, candidate


# --- rollout judgement ------------------------------------------------------------------

ARN = task_definition_arn("ecs-neuron", 2)
OLD = task_definition_arn("ecs-neuron", 1)


def _deployment(**changes: Any) -> LiveDeployment:
    fields: dict[str, Any] = {
        "id": "d-1",
        "status": "PRIMARY",
        "task_definition": ARN,
        "desired_count": 2,
        "running_count": 2,
        "pending_count": 0,
        "rollout_state": "COMPLETED",
        "rollout_state_reason": None,
    }
    return LiveDeployment(**{**fields, **changes})


def _service(*deployments: LiveDeployment, **changes: Any) -> LiveService:
    fields: dict[str, Any] = {
        "arn": "arn:svc",
        "name": "bert-inf1",
        "cluster": DEMO,
        "status": "ACTIVE",
        "desired_count": 2,
        "running_count": 2,
        "pending_count": 0,
        "task_definition": ARN,
        "deployments": deployments,
        "placement_constraints": (),
        "tags": {TASK_DEFINITION_TAG: ARN},
    }
    return LiveService(**{**fields, **changes})


ROLLOUT_CASES: list[tuple[str, LiveService | None, str | None, str]] = [
    ("completed on the recorded revision", _service(_deployment()), None, "stable"),
    (
        "no circuit breaker: no rollout state",
        _service(_deployment(rollout_state=None)),
        None,
        "stable",
    ),
    ("gone", None, None, "missing"),
    ("draining", _service(_deployment(), status="DRAINING"), None, "missing"),
    ("no deployment yet", _service(), None, "in-progress"),
    (
        "still starting",
        _service(_deployment(rollout_state="IN_PROGRESS", running_count=1), running_count=1),
        None,
        "in-progress",
    ),
    (
        "two deployments: the old one still draining",
        _service(_deployment(), _deployment(id="d-0", status="ACTIVE", task_definition=OLD)),
        None,
        "in-progress",
    ),
    ("failed", _service(_deployment(rollout_state="FAILED")), None, "failed"),
    ("rolled back", _service(_deployment(task_definition=OLD)), None, "rolled-back"),
    ("another revision expected", _service(_deployment()), OLD, "rolled-back"),
    (
        "no record: the service's own revision",
        _service(_deployment(), tags={}),
        None,
        "stable",
    ),
]


@pytest.mark.parametrize(
    ("service", "expected_arn", "state"),
    [case[1:] for case in ROLLOUT_CASES],
    ids=[case[0] for case in ROLLOUT_CASES],
)
def test_rollout_judgement(
    service: LiveService | None, expected_arn: str | None, state: str
) -> None:
    assert rollout_of(service, expected=expected_arn).state == state


# --- the empty-folder guard -------------------------------------------------------------


def test_the_empty_folder_guard_is_one_table() -> None:
    empty = desired_state(_specs(), FACTS)
    action = Action(verb="create", resource="cluster", id=DEMO, reason="missing", cluster=DEMO)
    planned = Plan(actions=(action,), warnings=("w",))

    guarded = guard_empty_folder(planned, empty)
    assert (guarded.actions, guarded.warnings) == ((), (EMPTY_SPECS_WARNING, "w"))
    # idempotent: the warning is not doubled
    assert guard_empty_folder(guarded, empty).warnings == (EMPTY_SPECS_WARNING, "w")
    # a folder with specs: actions kept, the desired state's warnings first
    desired = dataclasses.replace(walkthrough_desired(), warnings=("spec",))
    kept = guard_empty_folder(planned, desired)
    assert (kept.actions, kept.warnings) == ((action,), ("spec", "w"))


def _specs() -> Any:
    from core_builders import specs

    return specs()


# --- the payload says exactly what to write ---------------------------------------------


def test_an_ignored_desired_count_is_not_written_while_the_rest_is() -> None:
    desired, model = _in_sync()
    ignoring = dataclasses.replace(
        desired,
        deployments={
            "bert": dataclasses.replace(
                desired.deployments["bert"], ignore=frozenset({"desiredCount"})
            )
        },
    )
    service = model.services[SERVICE]
    drifted = dataclasses.replace(service, desired_count=7, task_definition=ARN)
    model = dataclasses.replace(model, services={**model.services, SERVICE: drifted})

    [update] = plan_against(ignoring, model).actions
    assert isinstance(update.payload, UpdateService)
    assert update.payload.desired_count is None
    assert update.payload.set_task_definition
    assert [c.path for c in update.fields] == ["taskDefinition"]
