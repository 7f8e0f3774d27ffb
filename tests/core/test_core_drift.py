"""Drift on every managed field: what is drift, what `detect` and `spec.ignore` do with
it, and that what AWS fills in by default never is (CONTRACT §7, issue 10)."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from typing import Any

import pytest
from core_builders import (
    FACTS,
    apply_to_model,
    converge,
    empty_observed,
    plan_against,
    summary,
    task_definition_arn,
    walkthrough_cluster,
    walkthrough_deployment,
    walkthrough_desired,
)

from controller.aws.observing import live_service, live_task_definition
from controller.core.desired import desired_state
from controller.core.diffs import FieldChange, merge_ranges, revision_delta, service_delta
from controller.core.normalising import normalise_task_definition
from controller.core.payloads import RegisterTaskDefinition, UpdateService
from controller.core.plans import Plan
from controller.core.states import (
    DEPLOYMENT_TAG,
    TASK_DEFINITION_TAG,
    DesiredState,
    IngressRule,
    LiveTaskDefinition,
    ObservedState,
)
from controller.metrics import Metrics
from controller.runner.drifting import FIGHT_CORRECTIONS, DriftReporter
from controller.specs.loading import SpecSet

DEMO = "ecs-inf1-demo"
SERVICE = (DEMO, "bert-inf1")
FAMILY = "ecs-neuron"


def desired_with(*, cluster_spec: dict[str, Any] | None = None, **spec: Any) -> DesiredState:
    base_cluster, base_deployment = walkthrough_cluster(), walkthrough_deployment()
    return desired_state(
        SpecSet(
            clusters={
                DEMO: base_cluster.model_copy(
                    update={"spec": base_cluster.spec.model_copy(update=cluster_spec or {})}
                )
            },
            deployments={
                "bert": base_deployment.model_copy(
                    update={"spec": base_deployment.spec.model_copy(update=spec)}
                )
            },
        ),
        FACTS,
    )


def in_sync(desired: DesiredState | None = None) -> ObservedState:
    return converge(desired or walkthrough_desired(), empty_observed())


def with_service(model: ObservedState, **changes: Any) -> ObservedState:
    services = dict(model.services)
    services[SERVICE] = dataclasses.replace(services[SERVICE], **changes)
    return dataclasses.replace(model, services=services)


# --- services: every managed field --------------------------------------------------------

SERVICE_DRIFT = [
    ("desiredCount", {"desired_count": 3}, FieldChange("desiredCount", 3, 1)),
    (
        "placementStrategy",
        {"placement_strategy": ({"type": "binpack", "field": "memory"},)},
        FieldChange("placementStrategy", [{"type": "binpack", "field": "memory"}], []),
    ),
    (
        "placementConstraints",
        {"placement_constraints": ({"type": "distinctInstance"},)},
        FieldChange("placementConstraints", [{"type": "distinctInstance"}], []),
    ),
    (
        "circuit breaker",
        {
            "deployment_configuration": {
                "deploymentCircuitBreaker": {"enable": False, "rollback": False},
                "maximumPercent": 200,
                "minimumHealthyPercent": 100,
            }
        },
        FieldChange("deploymentConfiguration.deploymentCircuitBreaker.enable", False, True),
    ),
    (
        "minimum healthy percent",
        {
            "deployment_configuration": {
                "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                "maximumPercent": 200,
                "minimumHealthyPercent": 50,
            }
        },
        FieldChange("deploymentConfiguration.minimumHealthyPercent", 50, 100),
    ),
]


@pytest.mark.parametrize(
    ("changes", "expected"), [c[1:] for c in SERVICE_DRIFT], ids=[c[0] for c in SERVICE_DRIFT]
)
def test_a_service_field_changed_behind_our_back_is_drift_named_to_the_field(
    changes: dict[str, Any], expected: FieldChange
) -> None:
    model = with_service(in_sync(), **changes)
    [action] = plan_against(walkthrough_desired(), model).actions

    assert (action.verb, action.resource, action.reason) == ("update", "service", "drift")
    assert expected in action.fields
    # and the correction writes exactly that field back
    settled = apply_to_model(Plan(actions=(action,)), model)
    assert plan_against(walkthrough_desired(), settled).actions == ()


def test_an_ownership_tag_removed_from_a_service_is_restored_as_drift() -> None:
    model = in_sync()
    tags = {k: v for k, v in model.services[SERVICE].tags.items() if k != DEPLOYMENT_TAG}
    [action] = plan_against(walkthrough_desired(), with_service(model, tags=tags)).actions

    assert action.reason == "drift"
    assert action.fields == (FieldChange(f"tags.{DEPLOYMENT_TAG}", None, "bert"),)


def test_a_deleted_service_is_recreated_as_drift_with_its_status() -> None:
    model = with_service(in_sync(), status="INACTIVE")
    [action] = plan_against(walkthrough_desired(), model).actions

    assert (action.verb, action.reason) == ("create", "drift")
    assert action.fields[0] == FieldChange("status", "INACTIVE", "ACTIVE")


# --- no false drift: the shapes AWS answers with ---------------------------------------------

NOW = datetime(2026, 12, 2, tzinfo=UTC)


def described_service(model: ObservedState) -> dict[str, Any]:
    """What `describe_services` returns for our service, every default AWS fills in
    included (botocore's Service shape)."""
    live = model.services[SERVICE]
    return {
        "serviceArn": live.arn,
        "serviceName": live.name,
        "clusterArn": f"arn:aws:ecs:us-east-1:123456789012:cluster/{DEMO}",
        "loadBalancers": [],
        "serviceRegistries": [],
        "status": "ACTIVE",
        "desiredCount": live.desired_count,
        "runningCount": live.desired_count,
        "pendingCount": 0,
        "launchType": "EC2",
        "taskDefinition": live.task_definition,
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
            "maximumPercent": 200,
            "minimumHealthyPercent": 100,
            "alarms": {"alarmNames": [], "rollback": False, "enable": False},
            "strategy": "ROLLING",
        },
        "deployments": [
            {
                "id": "ecs-svc/1",
                "status": "PRIMARY",
                "taskDefinition": live.task_definition,
                "desiredCount": live.desired_count,
                "pendingCount": 0,
                "runningCount": live.desired_count,
                "failedTasks": 0,
                "createdAt": NOW,
                "updatedAt": NOW,
                "launchType": "EC2",
                "rolloutState": "COMPLETED",
                "rolloutStateReason": "ECS deployment ecs-svc/1 completed.",
            }
        ],
        "roleArn": "arn:aws:iam::123456789012:role/aws-service-role/ecs.amazonaws.com/"
        "AWSServiceRoleForECS",
        "events": [],
        "createdAt": NOW,
        "placementConstraints": [],
        "placementStrategy": [],
        "healthCheckGracePeriodSeconds": 0,
        "schedulingStrategy": "REPLICA",
        "deploymentController": {"type": "ECS"},
        "createdBy": "arn:aws:iam::123456789012:user/ci",
        "enableECSManagedTags": False,
        "propagateTags": "NONE",
        "enableExecuteCommand": False,
        "availabilityZoneRebalancing": "DISABLED",
        "tags": [{"key": k, "value": v} for k, v in live.tags.items()],
    }


def test_a_service_as_ecs_describes_it_is_not_drift() -> None:
    desired = walkthrough_desired()
    model = in_sync(desired)
    raw = described_service(model)
    live = live_service(raw, cluster=DEMO)
    wanted = desired.deployments["bert"].service

    assert not service_delta(wanted, live, revision=live.tags[TASK_DEFINITION_TAG])


def test_a_service_without_a_deployment_configuration_reads_as_the_defaults() -> None:
    model = in_sync()
    raw = {k: v for k, v in described_service(model).items() if k != "deploymentConfiguration"}
    live = live_service(raw, cluster=DEMO)
    assert live.deployment_configuration == {
        "deploymentCircuitBreaker": {"enable": False, "rollback": False},
        "maximumPercent": 200,
        "minimumHealthyPercent": 100,
    }


def described_revision(desired: DesiredState) -> dict[str, Any]:
    """What `describe_task_definition(include=["TAGS"])` returns for the revision we
    registered: the request echoed, with every default ECS fills in."""
    content = desired.deployments["bert"].task_definition.content
    containers = []
    for container in content["containerDefinitions"]:
        filled = {
            "cpu": 0,
            "essential": True,
            "environment": [],
            "mountPoints": [],
            "volumesFrom": [],
            "systemControls": [],
            **container,
        }
        filled["portMappings"] = [
            {"protocol": "tcp", **mapping} for mapping in container.get("portMappings", ())
        ]
        containers.append(filled)
    return {
        "taskDefinition": {
            **content,
            "taskDefinitionArn": task_definition_arn(FAMILY, 1),
            "containerDefinitions": containers,
            "revision": 1,
            "volumes": content.get("volumes", []),
            "status": "ACTIVE",
            "requiresAttributes": [{"name": "com.amazonaws.ecs.capability.docker-remote-api.1.17"}],
            "placementConstraints": content.get("placementConstraints", []),
            "compatibilities": ["EXTERNAL", "EC2"],
            "networkMode": content.get("networkMode", "bridge"),
            "registeredAt": NOW,
            "registeredBy": "arn:aws:iam::123456789012:user/ci",
        },
        "tags": [],
    }


def test_a_revision_as_ecs_describes_it_is_not_drift() -> None:
    desired = walkthrough_desired()
    live = live_task_definition(described_revision(desired))
    assert live is not None
    assert not revision_delta(desired.deployments["bert"].task_definition, live)


# --- a revision registered out of band ------------------------------------------------------


def out_of_band(
    model: ObservedState, *, image: str, tags: dict[str, str] | None = None
) -> ObservedState:
    """Someone registered revision 9 of our family with another image."""
    ours = model.task_definitions[FAMILY][-1] if FAMILY in model.task_definitions else None
    content = dict(ours.content) if ours else {}
    containers = [
        {**c, "image": image} if c["name"] == "bert" else c for c in content["containerDefinitions"]
    ]
    revision = LiveTaskDefinition(
        arn=task_definition_arn(FAMILY, 9),
        family=FAMILY,
        revision=9,
        status="ACTIVE",
        content=normalise_task_definition({**content, "containerDefinitions": containers}),
        tags=tags or {},
    )
    return dataclasses.replace(
        model,
        newest_revisions={FAMILY: revision.arn},
        described_revisions={revision.arn: revision},
    )


def test_a_revision_registered_out_of_band_is_drift_down_to_the_image() -> None:
    model = out_of_band(in_sync(), image="evil.example.com/bert:1")
    [action] = plan_against(walkthrough_desired(), model).actions

    assert (action.verb, action.resource, action.id, action.reason) == (
        "replace",
        "task-definition",
        task_definition_arn(FAMILY, 9),
        "drift",
    )
    [change] = action.fields
    assert change.path == "containerDefinitions[bert].image"
    assert change.before == "evil.example.com/bert:1"
    # the correction registers the spec's content: the family's newest is ours again
    assert isinstance(action.payload, RegisterTaskDefinition)
    assert action.payload.desired == walkthrough_desired().deployments["bert"].task_definition


def test_detect_reports_the_out_of_band_revision_and_registers_nothing() -> None:
    desired = desired_with(driftPolicy="detect")
    model = out_of_band(in_sync(desired), image="evil.example.com/bert:1")
    result = plan_against(desired, model)

    assert result.actions == ()
    [drift] = result.detected_drift
    assert drift.drift_json() == {
        "deployment": "bert",
        "cluster": DEMO,
        "resource": "task-definition",
        "id": task_definition_arn(FAMILY, 9),
        "fields": [
            {
                "path": "containerDefinitions[bert].image",
                "from": "evil.example.com/bert:1",
                "to": walkthrough_deployment().spec.model.image,
            }
        ],
    }


# --- spec.ignore ---------------------------------------------------------------------------------


def test_ignore_replicas_leaves_an_autoscaled_count_alone_even_through_a_spec_change() -> None:
    desired = desired_with(ignore=["replicas"])
    model = with_service(in_sync(desired), desired_count=7)  # Application Auto Scaling
    assert plan_against(desired, model).actions == ()

    changed = desired_with(ignore=["replicas"], memoryReservation=2000, replicas=2)
    result = plan_against(changed, model)
    [update] = [a for a in result.actions if a.resource == "service"]
    assert isinstance(update.payload, UpdateService)
    assert update.payload.desired_count is None
    assert all(change.path != "desiredCount" for change in update.fields)
    settled = apply_to_model(result, model)
    assert settled.services[SERVICE].desired_count == 7


def test_ignore_placement_leaves_the_strategy_alone() -> None:
    desired = desired_with(ignore=["placement"])
    model = with_service(
        in_sync(desired), placement_strategy=({"type": "spread", "field": "instanceId"},)
    )
    assert plan_against(desired, model).actions == ()


def ci_deployed(model: ObservedState, desired: DesiredState, *, image: str) -> ObservedState:
    """A CI pipeline registered revision 9 with a new image and pointed the service at it."""
    model = out_of_band(model, image=image)
    return with_service(model, task_definition=task_definition_arn(FAMILY, 9))


def test_ignore_image_keeps_what_ci_deployed_and_carries_it_into_spec_changes() -> None:
    desired = desired_with(ignore=["image"])
    model = ci_deployed(in_sync(desired), desired, image="ci.example.com/bert:42")
    assert plan_against(desired, model).actions == ()

    changed = desired_with(ignore=["image"], memoryReservation=2000)
    [register] = [
        a for a in plan_against(changed, model).actions if a.resource == "task-definition"
    ]
    assert isinstance(register.payload, RegisterTaskDefinition)
    [bert] = [
        c for c in register.payload.desired.content["containerDefinitions"] if c["name"] == "bert"
    ]
    assert bert["image"] == "ci.example.com/bert:42"


def test_without_ignore_image_a_ci_deploy_is_drift() -> None:
    desired = walkthrough_desired()
    model = ci_deployed(in_sync(desired), desired, image="ci.example.com/bert:42")
    actions = plan_against(desired, model).actions
    assert {(a.resource, a.reason) for a in actions} == {
        ("task-definition", "drift"),
        ("service", "drift"),
    }


# --- clusters under detect --------------------------------------------------------------------


def test_a_deleted_cluster_under_detect_is_reported_and_nothing_is_written() -> None:
    desired = desired_with(cluster_spec={"driftPolicy": "detect"})
    model = in_sync(desired)
    gone = dataclasses.replace(model.clusters[DEMO], status="INACTIVE")
    result = plan_against(desired, dataclasses.replace(model, clusters={DEMO: gone}))

    assert result.actions == ()
    [drift] = result.detected_drift
    assert drift.fields == (FieldChange("status", "INACTIVE", "ACTIVE"),)


def test_a_port_opened_to_the_world_is_drift_and_detect_only_reports_it() -> None:
    for policy, corrected in (("enforce", True), ("detect", False)):
        desired = desired_with(cluster_spec={"driftPolicy": policy})
        model = in_sync(desired)
        group = model.security_groups[DEMO]
        opened = dataclasses.replace(
            group, ranges=group.ranges | merge_ranges({IngressRule(port=22, cidr="0.0.0.0/0")})
        )
        result = plan_against(desired, dataclasses.replace(model, security_groups={DEMO: opened}))
        found = result.actions if corrected else result.detected_drift
        [action] = found
        assert action.reason == "drift"
        assert FieldChange("ingress", "tcp/22 from 0.0.0.0/0", None) in action.fields


def test_an_instance_lost_under_detect_is_reported_and_not_replaced() -> None:
    desired = desired_with(cluster_spec={"driftPolicy": "detect"})
    model = in_sync(desired)
    [first, second] = model.instances[DEMO]
    model = dataclasses.replace(
        model, instances={DEMO: (first, dataclasses.replace(second, state="terminated"))}
    )
    result = plan_against(desired, model)
    assert summary(result) == []
    [drift] = result.detected_drift
    assert (drift.resource, drift.id) == ("instance", second.instance_id)
    assert drift.fields == (FieldChange("state", "terminated", "running"),)


# --- the daemon's report of it ------------------------------------------------------------------


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


def test_drift_gauges_logs_and_a_fight_after_repeated_corrections() -> None:
    metrics = Metrics()
    reporter = DriftReporter(metrics)
    model = with_service(in_sync(), desired_count=3)
    plan = plan_against(walkthrough_desired(), model)
    reporter.publish(plan, deployments=["bert"], clusters=[DEMO])

    assert sample(metrics, "ecsinfer_drift", deployment="bert", resource="service") == 1
    assert sample(metrics, "ecsinfer_drift", deployment="bert", resource="task-definition") == 0
    assert sample(metrics, "ecsinfer_cluster_drift", cluster=DEMO, resource="instance") == 0
    assert reporter.report("deployment/bert")["drift"] == ["service.desiredCount"]

    for n in range(FIGHT_CORRECTIONS):
        reporter.corrected("deployment/bert", plan.actions, now=1000.0 + n)
    [fight] = reporter.report("deployment/bert")["fights"]
    assert (fight["path"], fight["corrections"]) == ("desiredCount", FIGHT_CORRECTIONS)
    assert (
        sample(metrics, "ecsinfer_drift_corrections_total", deployment="bert", resource="service")
        == FIGHT_CORRECTIONS
    )

    reporter.publish(Plan(), deployments=["bert"], clusters=[DEMO])
    assert sample(metrics, "ecsinfer_drift", deployment="bert", resource="service") == 0


def test_an_instance_in_our_cluster_without_our_tag_is_left_alone_and_said() -> None:
    from controller.core.states import LiveContainerInstance

    model = in_sync()
    stranger = LiveContainerInstance(
        arn="arn:aws:ecs:us-east-1:123456789012:container-instance/ecs-inf1-demo/x",
        cluster=DEMO,
        ec2_instance_id="i-0stranger",
        status="ACTIVE",
        agent_connected=True,
        running_tasks=0,
        pending_tasks=0,
    )
    model = dataclasses.replace(model, container_instances={DEMO: (stranger,)})
    result = plan_against(walkthrough_desired(), model)
    assert result.actions == ()
    assert any("i-0stranger" in warning and "left alone" in warning for warning in result.warnings)


def test_an_instance_whose_cluster_tag_was_removed_is_found_by_registration() -> None:
    from controller.aws.observing import by_registration
    from controller.core.states import CLUSTER_TAG, LiveContainerInstance

    model = in_sync()
    first, second = model.instances[DEMO]
    stripped = dataclasses.replace(
        second, tags={k: v for k, v in second.tags.items() if k != CLUSTER_TAG}
    )
    member = LiveContainerInstance(
        arn="arn:ci",
        cluster=DEMO,
        ec2_instance_id=second.instance_id,
        status="ACTIVE",
        agent_connected=True,
        running_tasks=1,
        pending_tasks=0,
    )
    found = by_registration({DEMO: (first,), "": (stripped,)}, {DEMO: (member,)})
    model = dataclasses.replace(model, instances=found)
    [action] = plan_against(walkthrough_desired(), model).actions
    assert (action.verb, action.resource, action.id, action.reason) == (
        "update",
        "instance",
        second.instance_id,
        "drift",
    )
    assert action.fields == (FieldChange(f"tags.{CLUSTER_TAG}", None, DEMO),)
