"""The one delta: field paths with from / to, and the ignore list that plan and apply share."""

from __future__ import annotations

import dataclasses

import pytest
from core_builders import converge, empty_observed, plan_against, summary, walkthrough_desired

from controller.core.diffs import (
    BOOKKEEPING_TAGS,
    Delta,
    FieldChange,
    delta,
    fits,
    instance_delta,
    is_ignored,
    service_delta,
)
from controller.core.states import (
    SPEC_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredState,
    ObservedState,
)

DEMO = "ecs-inf1-demo"
SERVICE = (DEMO, "bert-inf1")


def _ignoring(desired: DesiredState, *paths: str) -> DesiredState:
    deployments = {
        name: dataclasses.replace(d, ignore=frozenset(paths))
        for name, d in desired.deployments.items()
    }
    return dataclasses.replace(desired, deployments=deployments)


def _with_service(model: ObservedState, **changes: object) -> ObservedState:
    services = dict(model.services)
    services[SERVICE] = dataclasses.replace(services[SERVICE], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(model, services=services)


IGNORED_PATHS = [
    ("desiredCount", "desiredCount", True),
    ("desiredCount", "desiredCount.x", True),
    ("tags", "tags.team", True),
    ("placementConstraints", "placementConstraints[0]", True),
    ("desired", "desiredCount", False),
    ("tags.team", "tags", False),
]


@pytest.mark.parametrize(("ignored", "path", "expected"), IGNORED_PATHS)
def test_an_ignored_path_covers_what_lies_below_it(ignored: str, path: str, expected: bool) -> None:
    assert is_ignored(path, frozenset({ignored})) is expected


def test_delta_drops_ignored_paths_and_keeps_the_rest() -> None:
    changes = [FieldChange("desiredCount", 3, 1), FieldChange("tags.team", None, "x")]
    assert delta(changes, ignore=frozenset({"desiredCount"})) == Delta(
        changes=(FieldChange("tags.team", None, "x"),)
    )
    assert not delta(changes, ignore=frozenset({"desiredCount", "tags"}))


# (what is ignored, how AWS drifted, the actions planned)
IGNORE_CASES: list[tuple[str, frozenset[str], dict[str, object], list[tuple[str, ...]]]] = [
    (
        "a desired count changed by an autoscaler is left alone",
        frozenset({"desiredCount"}),
        {"desired_count": 7},
        [],
    ),
    (
        "the same drift is corrected when not ignored",
        frozenset(),
        {"desired_count": 7},
        [("update", "service", "bert-inf1", "drift")],
    ),
    (
        "placement set by someone else is left alone",
        frozenset({"placementConstraints"}),
        {"placement_constraints": ({"type": "distinctInstance"},)},
        [],
    ),
    (
        "an ignored field does not hide another one that drifted",
        frozenset({"desiredCount"}),
        {"desired_count": 7, "task_definition": "arn:aws:ecs:us-east-1:1:task-definition/x:9"},
        [("update", "service", "bert-inf1", "drift")],
    ),
]


@pytest.mark.parametrize(
    ("ignore", "drift", "expected"),
    [case[1:] for case in IGNORE_CASES],
    ids=[case[0] for case in IGNORE_CASES],
)
def test_ignored_fields_are_neither_drift_nor_corrected(
    ignore: frozenset[str], drift: dict[str, object], expected: list[tuple[str, ...]]
) -> None:
    desired = _ignoring(walkthrough_desired(), *ignore)
    model = _with_service(converge(desired, empty_observed()), **drift)

    result = plan_against(desired, model)

    assert summary(result) == expected
    assert result.detected_drift == ()
    for action in result.actions:
        assert not any(is_ignored(change.path, ignore) for change in action.fields)


def test_service_delta_names_each_field_and_the_recorded_revision() -> None:
    desired = walkthrough_desired()
    model = converge(desired, empty_observed())
    live = dataclasses.replace(model.services[SERVICE], desired_count=3, tags={})
    revision = model.services[SERVICE].task_definition

    found = service_delta(desired.deployments["bert"].service, live, revision=revision)

    paths = [change.path for change in found.changes]
    assert paths[0] == "desiredCount"
    assert f"tags.{TASK_DEFINITION_TAG}" in paths and f"tags.{SPEC_HASH_TAG}" in paths
    assert found.tags()[TASK_DEFINITION_TAG] == revision
    # a reader sees the user's change, not our bookkeeping
    readable = [c.path for c in found.readable()]
    assert "desiredCount" in readable
    assert not {f"tags.{tag}" for tag in BOOKKEEPING_TAGS} & set(readable)
    only_bookkeeping = service_delta(
        desired.deployments["bert"].service,
        dataclasses.replace(model.services[SERVICE], tags={}),
        revision=revision,
        ignore=frozenset(p for p in paths if p.removeprefix("tags.") not in BOOKKEEPING_TAGS),
    )
    assert only_bookkeeping.readable() == only_bookkeeping.changes != ()


INSTANCE_FITS = [
    ("the fleet's own kind", {}, True, []),
    ("another image", {"image_id": "ami-0old"}, False, ["imageId"]),
    ("on-demand standing in for spot", {"lifecycle": "on-demand"}, True, []),
    (
        "on-demand of another type: the replacement is spot",
        {"lifecycle": "on-demand", "instance_type": "inf1.2xlarge"},
        False,
        ["instanceType", "market"],
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected_fit", "paths"),
    [case[1:] for case in INSTANCE_FITS],
    ids=[case[0] for case in INSTANCE_FITS],
)
def test_an_instance_fits_its_fleet_when_its_delta_is_empty(
    changes: dict[str, object], expected_fit: bool, paths: list[str]
) -> None:
    desired = walkthrough_desired()
    fleet = desired.clusters[DEMO].fleet
    model = converge(desired, empty_observed())
    instance = dataclasses.replace(model.instances[DEMO][0], **changes)  # type: ignore[arg-type]

    assert fits(instance, fleet) is expected_fit
    assert [c.path for c in instance_delta(instance, fleet).changes] == paths
