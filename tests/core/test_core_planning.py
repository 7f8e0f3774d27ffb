"""Planning, table by table: each case is a model of AWS, the specs, and the actions."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import pytest
from core_builders import (
    FACTS,
    INF1_AMI,
    apply_to_model,
    cluster,
    converge,
    deployment,
    empty_observed,
    plan_against,
    specs,
    summary,
    task_definition_arn,
    view,
    walkthrough_cluster,
    walkthrough_deployment,
    walkthrough_desired,
)

from controller.core.desired import desired_state
from controller.core.diffs import merge_ranges
from controller.core.payloads import (
    CreateService,
    ExistingRevision,
    NewRevision,
    RegisterTaskDefinition,
    ReplaceInstance,
    UpdateService,
)
from controller.core.planning import (
    EMPTY_SPECS_WARNING,
    NEW_REVISION,
    PHASES,
    families_to_read,
    plan,
    plan_cluster,
    plan_deployment,
)
from controller.core.plans import FieldChange, Plan
from controller.core.states import (
    DELETION_POLICY_TAG,
    FLEET_SIZE_TAG,
    MANAGED_BY,
    RETIRED_TAG,
    TASK_DEFINITION_TAG,
    DesiredState,
    IngressRule,
    LiveCluster,
    LiveInstance,
    ObservedState,
)

DEMO = "ecs-inf1-demo"
SERVICE = (DEMO, "bert-inf1")
Mutation = Callable[[ObservedState], ObservedState]


def in_sync(desired: DesiredState | None = None) -> ObservedState:
    """AWS after the controller has converged on `desired` from an empty account."""
    return converge(desired or walkthrough_desired(), empty_observed())


def with_service(model: ObservedState, **changes: object) -> ObservedState:
    services = dict(model.services)
    services[SERVICE] = dataclasses.replace(services[SERVICE], **changes)  # type: ignore[arg-type]
    return dataclasses.replace(model, services=services)


def service_tags(model: ObservedState, **changes: str) -> dict[str, str]:
    return {**model.services[SERVICE].tags, **changes}


def with_instances(model: ObservedState, **changes: object) -> ObservedState:
    instances = tuple(
        dataclasses.replace(i, **changes)  # type: ignore[arg-type]
        for i in model.instances[DEMO]
    )
    return dataclasses.replace(model, instances={**model.instances, DEMO: instances})


def desired_with(
    *,
    cluster_spec: dict[str, object] | None = None,
    **deployment_spec: object,
) -> DesiredState:
    base_cluster = walkthrough_cluster()
    base_deployment = walkthrough_deployment()
    return desired_state(
        specs(
            base_cluster.model_copy(
                update={"spec": base_cluster.spec.model_copy(update=cluster_spec or {})}
            ),
            base_deployment.model_copy(
                update={"spec": base_deployment.spec.model_copy(update=deployment_spec)}
            ),
        ),
        FACTS,
    )


# --- from nothing, and in sync ----------------------------------------------------------


def test_from_an_empty_account_the_walkthrough_is_created_in_order() -> None:
    result = plan_against(walkthrough_desired(), empty_observed())

    assert summary(result) == [
        ("create", "cluster", DEMO, "missing"),
        ("create", "security-group", "ecs-infer-ecs-inf1-demo", "missing"),
        ("create", "instance", f"{DEMO}/instance-1", "missing"),
        ("create", "instance", f"{DEMO}/instance-2", "missing"),
        ("create", "task-definition", "ecs-neuron", "missing"),
        ("create", "service", "bert-inf1", "missing"),
        # Last: the fleet size recorded once the instances it counts are launched.
        ("update", "fleet", DEMO, "missing"),
    ]
    service = result.actions[-2]
    # the revision registered just before
    assert isinstance(service.payload, CreateService)
    assert isinstance(service.payload.revision, NewRevision)
    assert service.fields == (
        FieldChange("desiredCount", None, 1),
        FieldChange("taskDefinition", None, NEW_REVISION),
    )
    assert [a.key for a in result.actions] == (
        [f"cluster/{DEMO}"] * 4 + ["deployment/bert"] * 2 + [f"cluster/{DEMO}"]
    )
    assert result.warnings == ()


def test_in_sync_plans_nothing_and_reads_no_family() -> None:
    desired = walkthrough_desired()
    model = in_sync(desired)

    assert families_to_read(desired, view(model, ())) == set()
    assert plan(desired, view(model, ())) == Plan()


# --- deployments ------------------------------------------------------------------------

DEPLOYMENT_CASES: list[tuple[str, DesiredState, Mutation, list[tuple[str, str, str, str]]]] = [
    (
        "replicas changed in the spec",
        desired_with(replicas=3),
        lambda m: m,
        [
            ("create", "instance", f"{DEMO}/instance-3", "missing"),
            ("update", "service", "bert-inf1", "spec change"),
            ("update", "fleet", DEMO, "spec change"),
        ],
    ),
    (
        "desired count changed behind our back",
        walkthrough_desired(),
        lambda m: with_service(m, desired_count=3),
        [("update", "service", "bert-inf1", "drift")],
    ),
    (
        "service pointed at another revision",
        walkthrough_desired(),
        lambda m: with_service(m, task_definition=task_definition_arn("ecs-neuron", 7)),
        [("update", "service", "bert-inf1", "drift")],
    ),
    (
        "image changed in the spec",
        desired_with(
            model=walkthrough_deployment().spec.model.model_copy(
                update={"image": "example.com/bert:2"}
            )
        ),
        lambda m: m,
        [
            ("create", "task-definition", "ecs-neuron", "spec change"),
            ("update", "service", "bert-inf1", "spec change"),
        ],
    ),
    (
        "service deleted behind our back",
        walkthrough_desired(),
        lambda m: with_service(m, status="INACTIVE"),
        [("create", "service", "bert-inf1", "drift")],
    ),
    (
        "service never seen, revision already registered",
        walkthrough_desired(),
        lambda m: dataclasses.replace(m, services={}),
        [("create", "service", "bert-inf1", "missing")],
    ),
    (
        "managed-by tag removed from the service",
        walkthrough_desired(),
        lambda m: with_service(
            m, tags={k: v for k, v in service_tags(m).items() if k != MANAGED_BY}
        ),
        [],
    ),
    (
        "deletion policy changed in the spec",
        desired_with(deletionPolicy="retain"),
        lambda m: m,
        [("update", "service", "bert-inf1", "spec change")],
    ),
]


@pytest.mark.parametrize(
    ("desired", "mutate", "expected"),
    [case[1:] for case in DEPLOYMENT_CASES],
    ids=[case[0] for case in DEPLOYMENT_CASES],
)
def test_deployment_changes(
    desired: DesiredState, mutate: Mutation, expected: list[tuple[str, str, str, str]]
) -> None:
    model = mutate(in_sync())
    result = plan_against(desired, model)

    assert summary(result) == expected
    assert summary(plan_against(desired, apply_to_model(result, model))) == []


def test_a_drifted_desired_count_is_shown_field_by_field() -> None:
    result = plan_against(walkthrough_desired(), with_service(in_sync(), desired_count=3))

    [update] = result.actions
    assert update.fields == (FieldChange("desiredCount", 3, 1),)
    assert isinstance(update.payload, UpdateService)
    assert update.payload.revision == ExistingRevision(
        arn=in_sync().services[SERVICE].task_definition
    )
    # exactly the one write: the count
    assert (update.payload.desired_count, update.payload.set_task_definition) == (1, False)
    assert update.payload.placement_constraints is None


def test_a_service_pointed_elsewhere_goes_back_to_our_revision_without_a_read() -> None:
    desired = walkthrough_desired()
    ours = in_sync().services[SERVICE].task_definition
    model = with_service(in_sync(), task_definition=task_definition_arn("ecs-neuron", 7))

    assert families_to_read(desired, view(model, ())) == set()
    [update] = plan(desired, view(model, ())).actions
    assert isinstance(update.payload, UpdateService)
    assert update.payload.revision == ExistingRevision(arn=ours)
    assert update.payload.set_task_definition
    assert update.fields == (
        FieldChange("taskDefinition", task_definition_arn("ecs-neuron", 7), ours),
    )


def test_a_spec_change_registers_a_revision_and_points_the_service_at_it() -> None:
    desired = desired_with(memoryReservation=2000)
    model = in_sync()

    assert families_to_read(desired, view(model, ())) == {"ecs-neuron"}
    create, update = plan_against(desired, model).actions
    assert isinstance(create.payload, RegisterTaskDefinition)
    assert create.payload.desired is desired.deployments["bert"].task_definition
    assert isinstance(update.payload, UpdateService)
    assert isinstance(update.payload.revision, NewRevision)
    assert update.fields == (
        FieldChange("taskDefinition", task_definition_arn("ecs-neuron", 1), NEW_REVISION),
    )


def test_a_rollback_reuses_the_registered_revision() -> None:
    original = walkthrough_desired()
    changed = desired_with(memoryReservation=2000)
    model = converge(changed, in_sync(original))

    result = plan_against(original, model)

    assert summary(result) == [("update", "service", "bert-inf1", "spec change")]
    payload = result.actions[0].payload
    assert isinstance(payload, UpdateService)
    assert payload.revision == ExistingRevision(arn=task_definition_arn("ecs-neuron", 1))


def test_detect_policy_reports_drift_without_correcting_it() -> None:
    desired = desired_with(driftPolicy="detect")
    model = with_service(in_sync(desired), desired_count=5)

    result = plan_against(desired, model)

    assert result.actions == ()
    assert [(a.verb, a.id, a.reason) for a in result.detected_drift] == [
        ("update", "bert-inf1", "drift")
    ]


def test_detect_policy_still_applies_spec_changes() -> None:
    model = in_sync(desired_with(driftPolicy="detect"))
    result = plan_against(desired_with(driftPolicy="detect", replicas=2), model)

    assert ("update", "service", "bert-inf1", "spec change") in summary(result)
    assert result.detected_drift == ()


def test_a_service_we_do_not_own_is_never_touched() -> None:
    model = with_service(in_sync(), tags={"team": "search"}, desired_count=9)
    result = plan_against(walkthrough_desired(), model)

    assert result.actions == ()
    assert result.warnings == (
        "service bert-inf1 in cluster ecs-inf1-demo exists and is not managed by ecs-infer: "
        "nothing is planned for deployment bert",
    )


def test_old_revisions_beyond_three_are_deregistered_never_the_one_in_use() -> None:
    model = in_sync()  # the service runs revision 1
    [first] = model.task_definitions["ecs-neuron"]
    others = tuple(
        dataclasses.replace(
            first,
            arn=task_definition_arn("ecs-neuron", number),
            revision=number,
            content={**first.content, "memory": 1000 + number},
        )
        for number in (2, 3, 4, 5)
    )
    unmanaged = dataclasses.replace(
        first, arn=task_definition_arn("ecs-neuron", 6), revision=6, tags={}
    )
    model = dataclasses.replace(model, task_definitions={"ecs-neuron": (first, *others, unmanaged)})

    result = plan_against(desired_with(memoryReservation=9999), model)

    assert summary(result) == [
        ("create", "task-definition", "ecs-neuron", "spec change"),
        ("update", "service", "bert-inf1", "spec change"),
        # kept: 4, 5 and the new one (the newest three), and 1, which the service runs
        ("delete", "task-definition", task_definition_arn("ecs-neuron", 2), "orphan"),
        ("delete", "task-definition", task_definition_arn("ecs-neuron", 3), "orphan"),
    ]


# --- removed specs ----------------------------------------------------------------------


def _two_clusters() -> DesiredState:
    return desired_state(
        specs(
            walkthrough_cluster(),
            walkthrough_deployment(),
            cluster("other", capacity={"minInstances": 1}),
            deployment("resnet", cluster="other", model={"name": "resnet"}),
        ),
        FACTS,
    )


def test_a_removed_deployment_is_deleted_with_its_revisions() -> None:
    model = converge(desired_with(memoryReservation=2000), in_sync())  # two revisions
    remaining = desired_state(specs(walkthrough_cluster()), FACTS)

    result = plan_against(remaining, model)

    assert summary(result) == [
        # no deployment left in the cluster: no model port to open
        ("update", "security-group", model.security_groups[DEMO].group_id, "spec change"),
        ("delete", "service", "bert-inf1", "orphan"),
        ("delete", "task-definition", task_definition_arn("ecs-neuron", 1), "orphan"),
        ("delete", "task-definition", task_definition_arn("ecs-neuron", 2), "orphan"),
    ]
    assert [a.key for a in result.actions] == [f"cluster/{DEMO}"] + ["deployment/bert"] * 3


def test_a_renamed_deployment_takes_over_its_service() -> None:
    renamed = walkthrough_deployment().model_copy(
        update={"metadata": walkthrough_deployment().metadata.model_copy(update={"name": "bert2"})}
    )
    desired = desired_state(specs(walkthrough_cluster(), renamed), FACTS)

    result = plan_against(desired, in_sync())

    # Same content and service name: the service is re-tagged, not deleted.
    assert summary(result) == [("update", "service", "bert-inf1", "spec change")]
    assert [c.path for c in result.actions[0].fields] == ["tags.ecs-infer:deployment"]
    assert {a.key for a in result.actions} == {"deployment/bert2"}


def test_a_moved_deployment_gets_a_new_service_and_loses_the_old_one() -> None:
    model = in_sync(_two_clusters())
    moved = walkthrough_deployment().model_copy(
        update={"spec": walkthrough_deployment().spec.model_copy(update={"cluster": "other"})}
    )
    desired = desired_state(
        specs(
            walkthrough_cluster(),
            moved,
            cluster("other", capacity={"minInstances": 1}),
            deployment("resnet", cluster="other", model={"name": "resnet"}),
        ),
        FACTS,
    )

    result = plan_against(desired, model)

    rows = [
        (v, r, i, reason) for v, r, i, reason in summary(result) if r not in ("instance", "fleet")
    ]
    assert rows == [
        # bert's ports leave the old cluster's group (the new one already opens them)
        ("update", "security-group", model.security_groups[DEMO].group_id, "spec change"),
        # same content: the revision registered for the old cluster is reused
        ("create", "service", "bert-inf1", "missing"),
        ("delete", "service", "bert-inf1", "orphan"),
    ]
    assert [a.cluster for a in result.actions if a.resource == "service"] == [
        "other",
        DEMO,
    ]


def test_a_removed_deployment_with_retain_is_kept() -> None:
    retained = desired_with(deletionPolicy="retain")
    model = in_sync(retained)
    result = plan_against(desired_state(specs(walkthrough_cluster()), FACTS), model)

    assert [a for a in result.actions if a.resource in ("service", "task-definition")] == []
    assert any("deletionPolicy is retain" in w for w in result.warnings)


def test_a_removed_cluster_is_torn_down_inside_out() -> None:
    model = in_sync(_two_clusters())
    remaining = desired_state(
        specs(
            cluster("other", capacity={"minInstances": 1}),
            deployment("resnet", cluster="other", model={"name": "resnet"}),
        ),
        FACTS,
    )
    group = model.security_groups[DEMO].group_id
    newest, oldest = sorted(model.instances[DEMO], key=lambda i: -i.launch_time)

    result = plan_against(remaining, model)

    assert summary(result) == [
        ("delete", "service", "bert-inf1", "orphan"),
        ("delete", "task-definition", task_definition_arn("ecs-neuron", 1), "orphan"),
        ("delete", "instance", newest.instance_id, "orphan"),
        ("delete", "instance", oldest.instance_id, "orphan"),
        ("delete", "security-group", group, "orphan"),
        ("delete", "cluster", DEMO, "orphan"),
    ]
    assert summary(plan_against(remaining, apply_to_model(result, model))) == []


def test_a_removed_cluster_holding_a_service_we_do_not_own_is_kept() -> None:
    model = in_sync(_two_clusters())
    foreign = dataclasses.replace(
        model.services[SERVICE], name="legacy", arn="arn:legacy", tags={"team": "search"}
    )
    model = dataclasses.replace(model, services={**model.services, (DEMO, "legacy"): foreign})
    remaining = desired_state(specs(cluster("other", capacity={"minInstances": 1})), FACTS)

    result = plan_against(remaining, model)

    assert ("delete", "cluster", DEMO, "orphan") not in summary(result)
    assert ("delete", "service", "bert-inf1", "orphan") in summary(result)
    assert any("still holds services legacy" in w for w in result.warnings)


def test_a_removed_cluster_with_retain_is_kept() -> None:
    retained = desired_state(
        specs(
            cluster(DEMO, deletionPolicy="retain"),
            cluster("other", capacity={"minInstances": 1}),
        ),
        FACTS,
    )
    model = in_sync(retained)
    result = plan_against(
        desired_state(specs(cluster("other", capacity={"minInstances": 1})), FACTS), model
    )

    assert result.actions == ()
    assert any("cluster ecs-inf1-demo was removed" in w for w in result.warnings)


def test_an_empty_spec_folder_never_deletes_anything() -> None:
    model = in_sync()
    empty = desired_state(specs(), FACTS)

    for result in (
        plan_against(empty, model),
        plan_cluster(DEMO, empty, model),
        plan_deployment("bert", empty, model),
    ):
        assert result.actions == ()
        assert result.warnings[0] == EMPTY_SPECS_WARNING
    assert families_to_read(empty, model) == set()


# --- clusters and instances -------------------------------------------------------------


def test_a_cluster_we_do_not_own_is_never_touched() -> None:
    foreign = LiveCluster(name=DEMO, arn="arn:demo", status="ACTIVE", tags={})
    model = dataclasses.replace(empty_observed(), clusters={DEMO: foreign})

    result = plan_against(walkthrough_desired(), model)

    assert result.actions == ()
    assert result.warnings == (
        "cluster ecs-inf1-demo exists and is not managed by ecs-infer: nothing is planned for it",
        "deployment bert: cluster ecs-inf1-demo is not managed by ecs-infer: nothing is planned",
    )


def test_a_deleted_cluster_is_recreated_as_drift() -> None:
    model = in_sync()
    gone = dataclasses.replace(model.clusters[DEMO], status="INACTIVE")
    model = dataclasses.replace(model, clusters={DEMO: gone})

    assert summary(plan_against(walkthrough_desired(), model)) == [
        ("create", "cluster", DEMO, "drift"),
        ("update", "fleet", DEMO, "missing"),  # the new cluster's record
    ]


def test_a_removed_cluster_tag_is_restored_as_drift() -> None:
    model = in_sync()
    live = model.clusters[DEMO]
    stripped = dataclasses.replace(
        live, tags={k: v for k, v in live.tags.items() if k != DELETION_POLICY_TAG}
    )
    model = dataclasses.replace(model, clusters={DEMO: stripped})

    [update] = plan_against(walkthrough_desired(), model).actions
    assert (update.verb, update.resource, update.reason) == ("update", "cluster", "drift")
    assert update.fields == (FieldChange(f"tags.{DELETION_POLICY_TAG}", None, "delete"),)


def _instance(model: ObservedState, index: int) -> LiveInstance:
    return model.instances[DEMO][index]


INSTANCE_CASES: list[
    tuple[str, DesiredState, Mutation, Callable[[ObservedState], list[tuple[str, str, str, str]]]]
] = [
    (
        "instance type changed in the spec",
        desired_with(
            cluster_spec={
                "capacity": walkthrough_cluster().spec.capacity.model_copy(
                    update={"instanceType": "inf1.2xlarge"}
                )
            }
        ),
        lambda m: m,
        lambda m: [
            ("replace", "instance", _instance(m, 0).instance_id, "spec change"),
            ("replace", "instance", _instance(m, 1).instance_id, "spec change"),
            ("create", "task-definition", "ecs-neuron", "spec change"),
            ("update", "service", "bert-inf1", "spec change"),
        ],
    ),
    (
        "spot spec with fallback accepts on-demand",
        walkthrough_desired(),
        lambda m: with_instances(m, lifecycle="on-demand"),
        lambda m: [],
    ),
    (
        "spot spec without fallback replaces on-demand",
        desired_with(
            cluster_spec={
                "capacity": walkthrough_cluster().spec.capacity.model_copy(
                    update={"onDemandFallback": False}
                )
            }
        ),
        lambda m: with_instances(m, lifecycle="on-demand"),
        lambda m: [
            ("replace", "instance", _instance(m, 0).instance_id, "spec change"),
            ("replace", "instance", _instance(m, 1).instance_id, "spec change"),
        ],
    ),
    (
        "an instance gone from view behind our back is relaunched as drift",
        walkthrough_desired(),
        lambda m: dataclasses.replace(m, instances={DEMO: m.instances[DEMO][:1]}),
        lambda m: [("create", "instance", f"{DEMO}/instance-2", "drift")],
    ),
    (
        "an instance terminated behind our back is replaced as drift",
        walkthrough_desired(),
        lambda m: dataclasses.replace(
            m,
            instances={
                DEMO: (_instance(m, 0), dataclasses.replace(_instance(m, 1), state="terminated"))
            },
        ),
        lambda m: [("replace", "instance", _instance(m, 1).instance_id, "drift")],
    ),
    (
        "an instance we retired is not drift",
        desired_with(
            cluster_spec={
                "capacity": walkthrough_cluster().spec.capacity.model_copy(
                    update={"minInstances": 1}
                )
            }
        ),
        lambda m: dataclasses.replace(
            m,
            clusters={
                DEMO: dataclasses.replace(
                    m.clusters[DEMO], tags={**m.clusters[DEMO].tags, FLEET_SIZE_TAG: "1"}
                )
            },
            instances={
                DEMO: (
                    _instance(m, 0),
                    dataclasses.replace(
                        _instance(m, 1),
                        state="terminated",
                        tags={**_instance(m, 1).tags, RETIRED_TAG: "true"},
                    ),
                )
            },
        ),
        lambda m: [],
    ),
    (
        "a stopped instance is replaced as drift",
        walkthrough_desired(),
        lambda m: dataclasses.replace(
            m,
            instances={
                DEMO: (_instance(m, 0), dataclasses.replace(_instance(m, 1), state="stopped"))
            },
        ),
        lambda m: [("replace", "instance", _instance(m, 1).instance_id, "drift")],
    ),
    (
        "a tag removed from an instance is restored as drift",
        walkthrough_desired(),
        lambda m: dataclasses.replace(
            m,
            instances={
                DEMO: (
                    _instance(m, 0),
                    dataclasses.replace(
                        _instance(m, 1),
                        tags={k: v for k, v in _instance(m, 1).tags.items() if k != "Name"},
                    ),
                )
            },
        ),
        lambda m: [("update", "instance", _instance(m, 1).instance_id, "drift")],
    ),
    (
        "scale in deletes the newest first",
        desired_with(
            cluster_spec={
                "capacity": walkthrough_cluster().spec.capacity.model_copy(
                    update={"minInstances": 1}
                )
            }
        ),
        lambda m: m,
        lambda m: [
            ("delete", "instance", _instance(m, 1).instance_id, "spec change"),
            ("update", "fleet", DEMO, "spec change"),
        ],
    ),
    (
        "scale in deletes misfits before fitting instances",
        desired_with(
            cluster_spec={
                "capacity": walkthrough_cluster().spec.capacity.model_copy(
                    update={"minInstances": 1}
                )
            }
        ),
        lambda m: dataclasses.replace(
            m,
            instances={
                DEMO: (dataclasses.replace(_instance(m, 0), image_id="ami-0old"), _instance(m, 1))
            },
        ),
        lambda m: [
            ("delete", "instance", _instance(m, 0).instance_id, "spec change"),
            ("update", "fleet", DEMO, "spec change"),
        ],
    ),
    (
        "an instance of someone else is ignored",
        walkthrough_desired(),
        lambda m: dataclasses.replace(
            m,
            instances={
                DEMO: (
                    *m.instances[DEMO],
                    dataclasses.replace(
                        _instance(m, 0), instance_id="i-0ffffffffffffffff", tags={}
                    ),
                )
            },
        ),
        lambda m: [],
    ),
]


@pytest.mark.parametrize(
    ("desired", "mutate", "expected"),
    [case[1:] for case in INSTANCE_CASES],
    ids=[case[0] for case in INSTANCE_CASES],
)
def test_instance_changes(
    desired: DesiredState,
    mutate: Mutation,
    expected: Callable[[ObservedState], list[tuple[str, str, str, str]]],
) -> None:
    model = mutate(in_sync())
    result = plan_against(desired, model)

    assert summary(result) == expected(model)
    assert summary(plan_against(desired, apply_to_model(result, model))) == []


def test_a_replace_names_the_fields_that_differ() -> None:
    model = with_instances(in_sync(), image_id="ami-0old")
    replace = plan_against(walkthrough_desired(), model).actions[0]

    assert replace.fields == (FieldChange("imageId", "ami-0old", INF1_AMI),)
    assert isinstance(replace.payload, ReplaceInstance)
    assert replace.payload.instance_id == _instance(model, 0).instance_id
    assert replace.payload.launch.fleet == walkthrough_desired().clusters[DEMO].fleet


# --- security groups --------------------------------------------------------------------


def test_a_revoked_ingress_rule_is_restored_as_drift() -> None:
    model = in_sync()
    group = model.security_groups[DEMO]
    narrowed = dataclasses.replace(
        group, ranges=merge_ranges({IngressRule(port=8500, cidr="172.31.0.0/16")})
    )
    model = dataclasses.replace(model, security_groups={DEMO: narrowed})

    [update] = plan_against(walkthrough_desired(), model).actions
    assert (update.verb, update.resource, update.id, update.reason) == (
        "update",
        "security-group",
        group.group_id,
        "drift",
    )
    assert update.fields == (FieldChange("ingress", None, "tcp/8501 from 172.31.0.0/16"),)


def test_new_allowed_cidrs_update_the_group_as_a_spec_change() -> None:
    desired = desired_with(cluster_spec={"allowedCidrs": ("10.9.0.0/16",)})
    [update] = plan_against(desired, in_sync()).actions

    assert (update.resource, update.reason) == ("security-group", "spec change")
    assert set(update.fields) == {
        FieldChange("ingress", None, "tcp/8500 from 10.9.0.0/16"),
        FieldChange("ingress", None, "tcp/8501 from 10.9.0.0/16"),
        FieldChange("ingress", "tcp/8500 from 172.31.0.0/16", None),
        FieldChange("ingress", "tcp/8501 from 172.31.0.0/16", None),
    }


def test_naming_own_groups_retires_the_managed_one() -> None:
    model = in_sync()
    desired = desired_with(cluster_spec={"securityGroupIds": ("sg-0abc",)})

    assert summary(plan_against(desired, model)) == [
        ("delete", "security-group", model.security_groups[DEMO].group_id, "orphan")
    ]


# --- the plan as a whole ----------------------------------------------------------------


def test_actions_follow_the_phase_order_and_keys_partition_the_plan() -> None:
    model = in_sync(_two_clusters())
    changed = desired_state(
        specs(
            walkthrough_cluster(),
            deployment("bert2", model={"name": "bert2", "grpcPort": 9500, "restPort": 9501}),
        ),
        FACTS,
    )
    result = plan_against(changed, model)

    phases = [PHASES[(a.resource, a.verb)] for a in result.actions]
    assert phases == sorted(phases)
    keys = {a.key for a in result.actions}
    assert keys == {
        f"cluster/{DEMO}",
        "cluster/other",
        "deployment/bert2",
        "deployment/bert",
        "deployment/resnet",
    }
    for key in keys:
        assert result.for_key(key).actions == tuple(a for a in result.actions if a.key == key)


def test_per_key_plans_add_up_to_the_whole_plan() -> None:
    desired = _two_clusters()
    model = empty_observed()
    whole = plan_against(desired, model)
    parts = [
        *plan_cluster(DEMO, desired, model).actions,
        *plan_cluster("other", desired, model).actions,
        *plan_deployment("bert", desired, model).actions,
        *plan_deployment("resnet", desired, model).actions,
    ]
    assert sorted(whole.actions, key=repr) == sorted(parts, key=repr)


def test_plan_json_has_the_contract_shape() -> None:
    result = plan_against(walkthrough_desired(), with_service(in_sync(), desired_count=3))
    assert result.to_json()["changes"] == [
        {
            "action": "update",
            "resource": "service",
            "id": "bert-inf1",
            "cluster": DEMO,
            "deployment": "bert",
            "reason": "drift",
            "fields": [{"path": "desiredCount", "from": 3, "to": 1}],
        }
    ]


def _many(count: int) -> DesiredState:
    return desired_state(
        specs(
            cluster(DEMO, capacity={"instanceType": "inf1.24xlarge", "maxInstances": 1000}),
            *(
                deployment(f"model-{n:04d}", replicas=1 + n % 3, neuronCores=1 + n % 4)
                for n in range(count)
            ),
        ),
        FACTS,
    )


def _best_of_three(work: Callable[[], object]) -> float:
    """Seconds of the fastest of three runs: other work on a shared machine is noise."""
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def test_planning_a_thousand_deployments_takes_under_a_second() -> None:
    desired = _many(1000)
    empty = empty_observed()
    from_empty = plan(desired, empty)
    model = apply_to_model(from_empty, empty)
    unread = view(model, ())

    def plan_in_sync() -> Plan:
        return plan(desired, view(model, families_to_read(desired, unread)))

    # the cluster, its group, its instances, the fleet record, 1000 x (revision, service)
    assert len(from_empty.actions) == 1 + 1 + desired.clusters[DEMO].fleet.count + 1 + 2000
    assert (families_to_read(desired, unread), plan_in_sync().actions) == (set(), ())
    assert _best_of_three(lambda: plan(desired, empty)) < 1.0
    assert _best_of_three(plan_in_sync) < 1.0


def test_services_hold_their_live_service_for_the_shell() -> None:
    model = with_service(in_sync(), desired_count=3)
    [update] = plan_against(walkthrough_desired(), model).actions
    assert isinstance(update.payload, UpdateService)
    recorded = model.services[SERVICE].tags[TASK_DEFINITION_TAG]
    assert update.payload.revision == ExistingRevision(arn=recorded)


# --- specs the account cannot resolve --------------------------------------------------


def test_an_unresolved_cluster_is_an_error_on_its_keys_and_never_read_as_removed() -> None:
    both = specs(
        walkthrough_cluster(),
        walkthrough_deployment(),
        cluster("other", ami="ami-0123abcd"),
        deployment("other-bert", cluster="other", serviceName="other-bert"),
    )
    model = converge(desired_state(both, FACTS), empty_observed())
    # The walkthrough's AMI parameter vanishes from SSM; the other cluster names its AMI.
    facts = dataclasses.replace(FACTS, ami_ids={})
    desired = desired_state(both, facts)
    assert set(desired.unresolved_clusters) == {"ecs-inf1-demo"}
    planned = plan_against(desired, dataclasses.replace(model, facts=facts))
    assert planned.actions == ()  # nothing deleted, nothing else disturbed
    assert set(planned.errors) == {"cluster/ecs-inf1-demo", "deployment/bert"}
    assert "was not found in SSM" in planned.errors["cluster/ecs-inf1-demo"]
    assert planned.for_key("deployment/bert").errors == {
        "deployment/bert": planned.errors["deployment/bert"]
    }
    assert planned.for_key("deployment/other-bert").errors == {}


def test_an_unresolved_cluster_with_nothing_live_yet_is_still_reported() -> None:
    facts = dataclasses.replace(FACTS, ami_ids={})
    desired = desired_state(specs(walkthrough_cluster(), walkthrough_deployment()), facts)
    planned = plan_against(desired, empty_observed(facts))
    assert planned.actions == ()
    assert set(planned.errors) == {"cluster/ecs-inf1-demo", "deployment/bert"}
    assert EMPTY_SPECS_WARNING not in planned.warnings
