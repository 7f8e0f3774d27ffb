"""AWS events as hints (`core.events`): a corpus of message bodies, each parsed without
an exception into what it touches or a typed rejection, and table tests of the keys
what was touched maps to."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest
from core_builders import ACCOUNT, REGION, converge, empty_observed, walkthrough_desired
from hypothesis import given
from hypothesis import strategies as st

from controller.core.events import (
    MAX_MESSAGE_BYTES,
    KeyIndex,
    Rejected,
    Touched,
    cluster_name,
    keys_for,
    parse_event,
    service_pair,
)
from controller.core.states import (
    DEPLOYMENT_TAG,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    DesiredState,
    LiveContainerInstance,
    LiveService,
    LiveTask,
    ObservedState,
)

CLUSTER = "ecs-inf1-demo"
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{CLUSTER}"
SERVICE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/bert-inf1"
TASK_DEFINITION_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/ecs-neuron:3"
CONTAINER_INSTANCE_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:container-instance/{CLUSTER}/abc123"
TASK_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/{CLUSTER}/task0001"
INSTANCE = "i-00000000000000002"  # one of the walkthrough's, in `converge`'s model
SECURITY_GROUP = "sg-00000001"


def envelope(source: str, detail_type: str, detail: Any, resources: Any = ()) -> str:
    """An event as EventBridge delivers it to an SQS target."""
    return json.dumps(
        {
            "version": "0",
            "id": "6a7e8feb-b491-4cf7-a9f1-bf3703467718",
            "detail-type": detail_type,
            "source": source,
            "account": ACCOUNT,
            "time": "2026-12-02T01:00:00Z",
            "region": REGION,
            "resources": list(resources) if isinstance(resources, tuple) else resources,
            "detail": detail,
        }
    )


def api_call(source: str, event_name: str, request: Any, response: Any = None, **extra: Any) -> str:
    event_source = "ecs.amazonaws.com" if source == "aws.ecs" else "ec2.amazonaws.com"
    detail = {
        "eventVersion": "1.08",
        "eventSource": event_source,
        "eventName": event_name,
        "awsRegion": REGION,
        "requestParameters": request,
        "responseElements": response,
        **extra,
    }
    return envelope(source, "AWS API Call via CloudTrail", detail)


def task_state(**detail: Any) -> str:
    body = {
        "clusterArn": CLUSTER_ARN,
        "taskArn": TASK_ARN,
        "group": "service:bert-inf1",
        "taskDefinitionArn": TASK_DEFINITION_ARN,
        "containerInstanceArn": CONTAINER_INSTANCE_ARN,
        "lastStatus": "STOPPED",
        "desiredStatus": "STOPPED",
    }
    body.update(detail)
    return envelope("aws.ecs", "ECS Task State Change", body, (TASK_ARN,))


def touched(body: str) -> Touched:
    parsed = parse_event(body)
    assert isinstance(parsed, Touched), parsed
    return parsed


def rejected(body: str | bytes) -> Rejected:
    parsed = parse_event(body)
    assert isinstance(parsed, Rejected), parsed
    return parsed


# --- valid shapes ---------------------------------------------------------------------------


def test_a_task_state_change_touches_its_service_and_family() -> None:
    event = touched(task_state())
    assert event.source == "ecs" and event.kind == "ECS Task State Change"
    assert event.services == {(CLUSTER, "bert-inf1")}
    assert event.families == {"ecs-neuron"}
    assert not event.container_instances  # its placement is its deployment's business


def test_a_standalone_task_is_known_by_its_arn() -> None:
    event = touched(task_state(group="family:ecs-neuron"))
    assert event.services == frozenset() and event.tasks == {TASK_ARN}


@pytest.mark.parametrize("detail_type", ["ECS Service Action", "ECS Deployment State Change"])
def test_service_events_touch_the_service_of_their_resources(detail_type: str) -> None:
    detail = {"clusterArn": CLUSTER_ARN, "eventType": "INFO", "eventName": "SERVICE_STEADY_STATE"}
    event = touched(envelope("aws.ecs", detail_type, detail, (SERVICE_ARN,)))
    assert event.services == {(CLUSTER, "bert-inf1")} and not event.clusters


def test_an_old_format_service_arn_takes_the_cluster_of_the_detail() -> None:
    old = f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/bert-inf1"
    detail = {"clusterArn": CLUSTER_ARN, "eventName": "SERVICE_TASK_PLACEMENT_FAILURE"}
    event = touched(envelope("aws.ecs", "ECS Service Action", detail, (old,)))
    assert event.services == {(CLUSTER, "bert-inf1")}


def test_a_container_instance_state_change_touches_cluster_instance_and_itself() -> None:
    detail = {
        "clusterArn": CLUSTER_ARN,
        "containerInstanceArn": CONTAINER_INSTANCE_ARN,
        "ec2InstanceId": INSTANCE,
        "status": "DRAINING",
    }
    event = touched(envelope("aws.ecs", "ECS Container Instance State Change", detail))
    assert event.clusters == {CLUSTER}
    assert event.container_instances == {CONTAINER_INSTANCE_ARN}
    assert event.instance_ids == {INSTANCE}


@pytest.mark.parametrize(
    ("detail_type", "detail"),
    [
        ("EC2 Instance State-change Notification", {"instance-id": INSTANCE, "state": "stopping"}),
        (
            "EC2 Spot Instance Interruption Warning",
            {"instance-id": INSTANCE, "instance-action": "terminate"},
        ),
    ],
)
def test_ec2_events_touch_their_instance(detail_type: str, detail: dict[str, str]) -> None:
    event = touched(
        envelope("aws.ec2", detail_type, detail, (f"arn:aws:ec2:::instance/{INSTANCE}",))
    )
    assert event.source == "ec2" and event.instance_ids == {INSTANCE}


@pytest.mark.parametrize(
    ("name", "request_parameters", "response", "expected"),
    [
        (
            "UpdateService",
            {"cluster": CLUSTER, "service": "bert-inf1", "desiredCount": 3},
            None,
            {"services": {(CLUSTER, "bert-inf1")}},
        ),
        (
            "UpdateService",
            {"cluster": CLUSTER_ARN, "service": SERVICE_ARN},
            None,
            {"services": {(CLUSTER, "bert-inf1")}},
        ),
        (
            "DeleteService",
            {"service": "bert-inf1"},  # no cluster: ECS's default one
            None,
            {"services": {("default", "bert-inf1")}},
        ),
        (
            "CreateService",
            {"cluster": CLUSTER, "serviceName": "bert-inf1", "taskDefinition": "ecs-neuron:3"},
            {"service": {"serviceArn": SERVICE_ARN}},
            {"services": {(CLUSTER, "bert-inf1")}, "families": {"ecs-neuron"}},
        ),
        (
            "RegisterTaskDefinition",
            {"family": "ecs-neuron", "containerDefinitions": []},
            {"taskDefinition": {"taskDefinitionArn": TASK_DEFINITION_ARN}},
            {"families": {"ecs-neuron"}},
        ),
        (
            "DeregisterTaskDefinition",
            {"taskDefinition": TASK_DEFINITION_ARN},
            None,
            {"families": {"ecs-neuron"}},
        ),
        ("DeleteCluster", {"cluster": CLUSTER}, None, {"clusters": {CLUSTER}}),
        ("CreateCluster", {"clusterName": CLUSTER}, None, {"clusters": {CLUSTER}}),
        (
            "TagResource",
            {"resourceArn": SERVICE_ARN, "tags": [{"key": "x", "value": "y"}]},
            None,
            {"services": {(CLUSTER, "bert-inf1")}},
        ),
        (
            "UntagResource",
            {"resourceArn": CLUSTER_ARN, "tagKeys": ["ecs-infer:managed-by"]},
            None,
            {"clusters": {CLUSTER}},
        ),
        (
            "UpdateContainerInstancesState",
            {"cluster": CLUSTER, "containerInstances": ["abc123"], "status": "DRAINING"},
            None,
            {"clusters": {CLUSTER}, "container_instances": {"abc123"}},
        ),
        (
            "StopTask",
            {"cluster": CLUSTER, "task": TASK_ARN, "reason": "by hand"},
            None,
            {"tasks": {TASK_ARN}},
        ),
    ],
)
def test_ecs_api_calls(
    name: str, request_parameters: Any, response: Any, expected: dict[str, set[Any]]
) -> None:
    event = touched(api_call("aws.ecs", name, request_parameters, response))
    assert event.source == "api" and event.kind == f"api:{name}"
    for attribute in ("clusters", "services", "families", "container_instances", "tasks"):
        assert getattr(event, attribute) == expected.get(attribute, set()), attribute


@pytest.mark.parametrize(
    ("name", "request_parameters", "response", "instances", "groups"),
    [
        (
            "TerminateInstances",
            {"instancesSet": {"items": [{"instanceId": INSTANCE}, {"instanceId": "i-0b"}]}},
            None,
            {INSTANCE, "i-0b"},
            set(),
        ),
        (
            "StopInstances",
            {"instancesSet": {"items": [{"instanceId": INSTANCE}]}},
            None,
            {INSTANCE},
            set(),
        ),
        (
            "RebootInstances",
            {"instancesSet": {"items": [{"instanceId": INSTANCE}]}},
            None,
            {INSTANCE},
            set(),
        ),
        (
            "RunInstances",
            {"instanceType": "inf1.xlarge", "minCount": 1, "maxCount": 1},
            {"instancesSet": {"items": [{"instanceId": "i-0new"}]}},
            {"i-0new"},
            set(),
        ),
        (
            "CreateTags",
            {
                "resourcesSet": {
                    "items": [{"resourceId": INSTANCE}, {"resourceId": SECURITY_GROUP}]
                },
                "tagSet": {"items": [{"key": "owner", "value": "someone"}]},
            },
            None,
            {INSTANCE},
            {SECURITY_GROUP},
        ),
        (
            "DeleteTags",
            {"resourcesSet": {"items": [{"resourceId": "vol-0123"}, {"resourceId": INSTANCE}]}},
            None,
            {INSTANCE},
            set(),
        ),
        (
            "AuthorizeSecurityGroupIngress",
            {"groupId": SECURITY_GROUP, "ipPermissions": {"items": []}},
            None,
            set(),
            {SECURITY_GROUP},
        ),
        ("RevokeSecurityGroupEgress", {"groupId": SECURITY_GROUP}, None, set(), {SECURITY_GROUP}),
    ],
)
def test_ec2_api_calls(
    name: str, request_parameters: Any, response: Any, instances: set[str], groups: set[str]
) -> None:
    event = touched(api_call("aws.ec2", name, request_parameters, response))
    assert event.instance_ids == instances and event.security_groups == groups


def test_our_cluster_tag_on_a_launch_names_the_cluster() -> None:
    request = {
        "tagSpecificationSet": {
            "items": [
                {
                    "resourceType": "instance",
                    "tags": [{"key": "ecs-infer:cluster", "value": CLUSTER}],
                }
            ]
        }
    }
    response = {"instancesSet": {"items": [{"instanceId": "i-0new"}]}}
    event = touched(api_call("aws.ec2", "RunInstances", request, response))
    assert event.clusters == {CLUSTER} and event.instance_ids == {"i-0new"}


def test_one_sns_envelope_is_accepted() -> None:
    wrapped = json.dumps({"Type": "Notification", "MessageId": "m", "Message": task_state()})
    assert touched(wrapped).services == {(CLUSTER, "bert-inf1")}
    twice = json.dumps({"Type": "Notification", "Message": wrapped})
    assert rejected(twice).reason == "malformed"  # only one wrapping


# --- everything else: rejected, never raised --------------------------------------------


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("{not json", "malformed"),
        ("", "malformed"),
        (b"\xff\xfe\x00", "malformed"),
        ("[1, 2, 3]", "malformed"),
        ('"a string"', "malformed"),
        ("null", "malformed"),
        ("42", "malformed"),
        ("{}", "malformed"),
        (json.dumps({"source": "aws.ecs", "detail": {}}), "malformed"),
        (json.dumps({"source": "aws.ecs", "detail-type": "ECS Task State Change"}), "malformed"),
        (envelope("aws.ecs", "ECS Task State Change", "not an object"), "malformed"),
        (envelope("aws.ecs", "ECS Task State Change", [1]), "malformed"),
        (json.dumps({"source": 1, "detail-type": ["x"], "detail": {}}), "malformed"),
        (json.dumps({"Type": "Notification", "Message": "{oops"}), "malformed"),
        (json.dumps({"Type": "Notification", "Message": "[]"}), "malformed"),
        (envelope("aws.ecs", "ECS Cluster State Change", {"clusterArn": CLUSTER_ARN}), "unknown"),
        (envelope("aws.s3", "Object Created", {"bucket": {"name": "b"}}), "unknown"),
        (envelope("aws.ec2", "EBS Volume Notification", {}), "unknown"),
        (envelope("my.app", "ECS Task State Change", {"group": "service:x"}), "unknown"),
        (
            envelope(
                "aws.ecs",
                "AWS API Call via CloudTrail",
                {"eventSource": "s3.amazonaws.com", "eventName": "PutObject"},
            ),
            "unknown",
        ),
        (envelope("aws.ecs", "ECS Task State Change", {}), "irrelevant"),
        (
            envelope("aws.ecs", "ECS Task State Change", {"group": 7, "clusterArn": None}),
            "irrelevant",
        ),
        (
            envelope("aws.ec2", "EC2 Instance State-change Notification", {"instance-id": 5}),
            "irrelevant",
        ),
        (envelope("aws.ecs", "ECS Service Action", {"clusterArn": 3}, "not a list"), "irrelevant"),
        (
            api_call("aws.ecs", "DescribeServices", {"cluster": CLUSTER, "services": ["x"]}),
            "irrelevant",
        ),
        (api_call("aws.ecs", "ListClusters", None), "irrelevant"),
        (api_call("aws.ecs", "UpdateService", "not an object"), "irrelevant"),
        (api_call("aws.ec2", "CreateVolume", {"size": 8}, {"volumeId": "vol-1"}), "irrelevant"),
        (
            api_call(
                "aws.ecs",
                "UpdateService",
                {"cluster": CLUSTER, "service": "s"},
                errorCode="AccessDenied",
            ),
            "irrelevant",
        ),
        ("x" * (MAX_MESSAGE_BYTES + 1), "oversized"),
        (task_state(padding="x" * MAX_MESSAGE_BYTES), "oversized"),
    ],
)
def test_what_is_not_a_usable_event_is_rejected_with_its_reason(
    body: str | bytes, reason: str
) -> None:
    assert rejected(body).reason == reason


def test_irrelevant_events_of_a_known_source_say_which() -> None:
    assert rejected(api_call("aws.ecs", "ListClusters", None)).source == "api"
    assert (
        rejected(envelope("aws.ec2", "EC2 Instance State-change Notification", {})).source == "ec2"
    )
    assert rejected("{").source is None


def test_deeply_nested_json_is_a_value_not_an_exception() -> None:
    def nested(depth: int) -> str:
        inner = '{"instanceId": "i-0deep"}'
        request = '{"items": [' * depth + inner + "]}" * depth
        return api_call("aws.ec2", "TerminateInstances", {}).replace(
            '"requestParameters": {}', f'"requestParameters": {request}'
        )

    # Within the walk's bound the id is found; below it, it is not looked for.
    assert touched(nested(2)).instance_ids == {"i-0deep"}
    assert rejected(nested(50)).reason == "irrelevant"
    # Past Python's own nesting limit, the JSON is malformed.
    assert rejected(nested(100_000)).reason in ("malformed", "oversized")
    assert rejected(nested(20_000)).reason == "malformed"


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(),
        lambda inner: st.lists(inner) | st.dictionaries(st.text(), inner),
    )
)
def test_any_json_is_handled_without_an_exception(value: Any) -> None:
    for body in (json.dumps(value), envelope("aws.ecs", "ECS Task State Change", value)):
        assert isinstance(parse_event(body), Touched | Rejected)
    for name in ("UpdateService", "TerminateInstances"):
        source = "aws.ecs" if name == "UpdateService" else "aws.ec2"
        assert isinstance(parse_event(api_call(source, name, value, value)), Touched | Rejected)


def test_names_from_arns() -> None:
    assert cluster_name(CLUSTER_ARN) == CLUSTER and cluster_name(CLUSTER) == CLUSTER
    assert service_pair(SERVICE_ARN, cluster="x") == (CLUSTER, "bert-inf1")
    assert service_pair("bert-inf1", cluster="c") == ("c", "bert-inf1")


# --- keys ------------------------------------------------------------------------------------


@pytest.fixture
def world() -> tuple[DesiredState, ObservedState]:
    """The walkthrough converged, with a container instance, a task, and a managed
    service whose spec is gone (`old`, in the same cluster), beside one not ours."""
    desired = walkthrough_desired()
    observed = converge(desired, empty_observed())
    ours = {MANAGED_BY: MANAGED_BY_VALUE}

    def service(name: str, tags: dict[str, str]) -> LiveService:
        return LiveService(
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{CLUSTER}/{name}",
            name=name,
            cluster=CLUSTER,
            status="ACTIVE",
            desired_count=1,
            running_count=1,
            pending_count=0,
            task_definition=TASK_DEFINITION_ARN,
            deployments=(),
            placement_constraints=(),
            tags=tags,
        )

    observed = dataclasses.replace(
        observed,
        services={
            **observed.services,
            (CLUSTER, "old-svc"): service("old-svc", {**ours, DEPLOYMENT_TAG: "old"}),
            (CLUSTER, "theirs"): service("theirs", {DEPLOYMENT_TAG: "x"}),
        },
        container_instances={
            CLUSTER: (
                LiveContainerInstance(
                    arn=CONTAINER_INSTANCE_ARN,
                    cluster=CLUSTER,
                    ec2_instance_id="i-0registered",
                    status="ACTIVE",
                    agent_connected=True,
                    running_tasks=1,
                    pending_tasks=0,
                ),
            )
        },
        tasks={
            CLUSTER: (
                LiveTask(
                    arn=TASK_ARN,
                    cluster=CLUSTER,
                    group="service:bert-inf1",
                    task_definition=TASK_DEFINITION_ARN,
                    container_instance=CONTAINER_INSTANCE_ARN,
                    last_status="RUNNING",
                    desired_status="RUNNING",
                ),
            )
        },
    )
    return desired, observed


@pytest.mark.parametrize(
    ("what", "keys"),
    [
        (
            Touched(source="ecs", kind="t", services=frozenset({(CLUSTER, "bert-inf1")})),
            {"deployment/bert"},
        ),
        (
            Touched(source="ecs", kind="t", services=frozenset({(CLUSTER, "old-svc")})),
            {"deployment/old"},
        ),
        (Touched(source="ecs", kind="t", services=frozenset({(CLUSTER, "theirs")})), set()),
        (Touched(source="ecs", kind="t", services=frozenset({("other", "bert-inf1")})), set()),
        (Touched(source="api", kind="t", families=frozenset({"ecs-neuron"})), {"deployment/bert"}),
        (Touched(source="api", kind="t", families=frozenset({"someone-elses"})), set()),
        (
            Touched(source="ec2", kind="t", instance_ids=frozenset({INSTANCE})),
            {f"cluster/{CLUSTER}"},
        ),
        (
            Touched(source="ec2", kind="t", instance_ids=frozenset({"i-0registered"})),
            {f"cluster/{CLUSTER}"},
        ),
        (Touched(source="ec2", kind="t", instance_ids=frozenset({"i-0stranger"})), set()),
        (
            Touched(
                source="ecs", kind="t", container_instances=frozenset({CONTAINER_INSTANCE_ARN})
            ),
            {f"cluster/{CLUSTER}"},
        ),
        (
            Touched(source="api", kind="t", container_instances=frozenset({"abc123"})),
            {f"cluster/{CLUSTER}"},
        ),
        (
            Touched(
                source="ecs",
                kind="t",
                container_instances=frozenset(
                    {f"arn:aws:ecs:r:a:container-instance/{CLUSTER}/new"}
                ),
            ),
            {f"cluster/{CLUSTER}"},
        ),
        (
            Touched(
                source="ecs",
                kind="t",
                container_instances=frozenset({"arn:aws:ecs:r:a:container-instance/x/1"}),
            ),
            set(),
        ),
        (
            Touched(source="api", kind="t", security_groups=frozenset({SECURITY_GROUP})),
            {f"cluster/{CLUSTER}"},
        ),
        (Touched(source="api", kind="t", security_groups=frozenset({"sg-theirs"})), set()),
        (Touched(source="api", kind="t", clusters=frozenset({CLUSTER})), {f"cluster/{CLUSTER}"}),
        (Touched(source="api", kind="t", clusters=frozenset({"default"})), set()),
        (Touched(source="api", kind="t", tasks=frozenset({TASK_ARN})), {"deployment/bert"}),
        (Touched(source="api", kind="t", tasks=frozenset({"task0001"})), {"deployment/bert"}),
        (Touched(source="api", kind="t", tasks=frozenset({"unknown-task"})), set()),
        (
            Touched(
                source="ecs",
                kind="t",
                clusters=frozenset({CLUSTER}),
                services=frozenset({(CLUSTER, "bert-inf1")}),
            ),
            {f"cluster/{CLUSTER}", "deployment/bert"},
        ),
    ],
)
def test_keys_for(world: tuple[DesiredState, ObservedState], what: Touched, keys: set[str]) -> None:
    desired, observed = world
    assert keys_for(what, desired, observed) == keys


def test_parsed_events_map_to_their_keys(world: tuple[DesiredState, ObservedState]) -> None:
    desired, observed = world
    index = KeyIndex.of(desired, observed)
    corpus = {
        task_state(): {"deployment/bert"},
        envelope("aws.ec2", "EC2 Spot Instance Interruption Warning", {"instance-id": INSTANCE}): {
            f"cluster/{CLUSTER}"
        },
        api_call("aws.ecs", "UpdateService", {"cluster": CLUSTER_ARN, "service": "bert-inf1"}): {
            "deployment/bert"
        },
        api_call("aws.ec2", "AuthorizeSecurityGroupIngress", {"groupId": SECURITY_GROUP}): {
            f"cluster/{CLUSTER}"
        },
        # Not ours: another account's busy cluster.
        task_state(
            clusterArn="arn:aws:ecs:r:a:cluster/payments",
            group="service:api",
            taskDefinitionArn="arn:aws:ecs:r:a:task-definition/api:9",
        ): set(),
        envelope(
            "aws.ec2", "EC2 Instance State-change Notification", {"instance-id": "i-0x"}
        ): set(),
    }
    for body, keys in corpus.items():
        assert index.keys(touched(body)) == keys, body


def test_a_cluster_whose_spec_is_gone_is_still_ours_while_managed() -> None:
    desired = walkthrough_desired()
    observed = converge(desired, empty_observed())
    nothing = DesiredState(clusters={}, deployments={})
    event = Touched(source="api", kind="t", clusters=frozenset({CLUSTER}))
    assert keys_for(event, nothing, observed) == {f"cluster/{CLUSTER}"}
    assert keys_for(event, nothing, empty_observed()) == set()


def test_an_api_call_name_is_kept_short() -> None:
    event = touched(api_call("aws.ecs", "UpdateService" + "x" * 10_000, {"cluster": CLUSTER}))
    assert len(event.kind) <= len("api:") + 100


def test_an_api_call_says_who_made_it() -> None:
    identity = {"type": "AssumedRole", "arn": "arn:aws:sts::1:assumed-role/r/s"}
    body = api_call("aws.ecs", "DeleteCluster", {"cluster": CLUSTER}, userIdentity=identity)
    assert touched(body).actor == "arn:aws:sts::1:assumed-role/r/s"
    assert touched(api_call("aws.ecs", "DeleteCluster", {"cluster": CLUSTER})).actor is None
    odd = api_call("aws.ecs", "DeleteCluster", {"cluster": CLUSTER}, userIdentity="x")
    assert touched(odd).actor is None
    assert touched(task_state()).actor is None
