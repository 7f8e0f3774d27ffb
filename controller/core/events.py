"""AWS events as hints: which keys to look at now, never what the state is.

Owns: `parse_event`, which reads one SQS message body (an EventBridge event, or one SNS
envelope around one) into what it touches (`Touched`: clusters, services, task-definition
families, EC2 instances, container instances, security groups, tasks) or a typed
`Rejected` reason (`malformed`, `unknown`, `oversized`, `irrelevant`), and never raises;
and `keys_for`, which maps what was touched to work-queue keys through the desired and
observed state (most of an account's events touch nothing of ours and map to no key).
Must not: do I/O, or be read as state. A reconcile reads the level from AWS as always;
an event only says which key is worth reading now (the resync stays the fallback).

Shapes understood (AWS's EventBridge envelope: `version`, `id`, `detail-type`,
`source`, `account`, `time`, `region`, `resources`, `detail`):

    aws.ecs  ECS Task State Change               detail.clusterArn, group, taskArn,
                                                 taskDefinitionArn, containerInstanceArn
    aws.ecs  ECS Service Action,                 resources [serviceArn], detail.clusterArn
             ECS Deployment State Change
    aws.ecs  ECS Container Instance State Change detail.clusterArn, containerInstanceArn,
                                                 ec2InstanceId
    aws.ec2  EC2 Instance State-change           detail["instance-id"]
             Notification, EC2 Spot Instance
             Interruption Warning
    aws.ecs / aws.ec2  AWS API Call via CloudTrail   detail.eventSource, eventName,
                                                 requestParameters, responseElements

ECS API calls carry the camelCase request (`cluster`, `service`, `taskDefinition`, ...,
each a name or an ARN); EC2 ones CloudTrail's nested sets (`instancesSet.items[]`,
`resourcesSet.items[]`, `groupId`), read here by the id keys they hold at any depth.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from controller.core.planning import cluster_key, deployment_key
from controller.core.states import (
    CLUSTER_TAG,
    DEPLOYMENT_TAG,
    DesiredState,
    ObservedState,
    family_of,
    is_managed,
)

Source = Literal["ecs", "ec2", "api"]
Reason = Literal["malformed", "unknown", "oversized", "irrelevant"]

MAX_MESSAGE_BYTES = 256 * 1024
"""SQS's own limit on a message: anything longer did not come from EventBridge."""
DEFAULT_CLUSTER = "default"
"""The cluster ECS assumes when a request names none."""

ECS_TASK_STATE = "ECS Task State Change"
ECS_SERVICE_ACTION = "ECS Service Action"
ECS_DEPLOYMENT_STATE = "ECS Deployment State Change"
ECS_CONTAINER_INSTANCE_STATE = "ECS Container Instance State Change"
EC2_INSTANCE_STATE = "EC2 Instance State-change Notification"
EC2_SPOT_INTERRUPTION = "EC2 Spot Instance Interruption Warning"
API_CALL = "AWS API Call via CloudTrail"

ECS_DETAIL_TYPES = (
    ECS_TASK_STATE,
    ECS_SERVICE_ACTION,
    ECS_DEPLOYMENT_STATE,
    ECS_CONTAINER_INSTANCE_STATE,
)
EC2_DETAIL_TYPES = (EC2_INSTANCE_STATE, EC2_SPOT_INTERRUPTION)
API_EVENT_SOURCES = ("ecs.amazonaws.com", "ec2.amazonaws.com")

# Read-only calls change nothing (EventBridge does not deliver them; be sure anyway).
_READ_ONLY_PREFIXES = ("Describe", "List", "Get")
MAX_NAME_CHARS = 100
"""An API call's `eventName` is cut to this (AWS's are below 60 characters)."""
# How deep the id keys of an EC2 request are looked for: CloudTrail nests them 3 to 5
# levels down (`tagSpecificationSet.items[].tags[]`); a bound keeps a hostile body cheap.
_MAX_DEPTH = 8


@dataclass(frozen=True, kw_only=True)
class Touched:
    """What one event says was touched. Names are plain names (ARNs are read back into
    them), except container instances and tasks, which are known by ARN or id."""

    source: Source
    kind: str
    """The detail-type, or `api:<eventName>` for an API call."""
    clusters: frozenset[str] = frozenset()
    services: frozenset[tuple[str, str]] = frozenset()
    """(cluster name, service name)."""
    families: frozenset[str] = frozenset()
    """Task-definition families."""
    instance_ids: frozenset[str] = frozenset()
    """EC2 instance ids (`i-...`)."""
    container_instances: frozenset[str] = frozenset()
    """Container-instance ARNs (or bare ids, as an API call may give them)."""
    security_groups: frozenset[str] = frozenset()
    """Security-group ids (`sg-...`)."""
    tasks: frozenset[str] = frozenset()
    """Task ARNs (or bare ids) whose service is not said by the event itself."""
    actor: str | None = None
    """Who made an API call (`userIdentity.arn`); None for state changes."""

    @property
    def empty(self) -> bool:
        return not (
            self.clusters
            or self.services
            or self.families
            or self.instance_ids
            or self.container_instances
            or self.security_groups
            or self.tasks
        )


@dataclass(frozen=True, kw_only=True)
class Rejected:
    """A message that says nothing usable, and why."""

    reason: Reason
    detail: str
    source: Source | None = None
    """Set when the event was of a known source (`irrelevant` ones)."""


# --- names out of ARNs ------------------------------------------------------------------


def arn_resource(value: str) -> str:
    """`arn:aws:ecs:r:a:service/c/n` -> `service/c/n`; anything else as it is."""
    if value.startswith("arn:"):
        parts = value.split(":", 5)
        if len(parts) == 6:
            return parts[5]
    return value


def cluster_name(value: str) -> str:
    """A cluster's name from its name or its ARN (`...:cluster/<name>`)."""
    return arn_resource(value).removeprefix("cluster/")


def service_pair(value: str, *, cluster: str) -> tuple[str, str]:
    """(cluster, name) of a service named by name or ARN. The new ARN format holds the
    cluster (`service/<cluster>/<name>`); the old one (`service/<name>`) and a bare name
    take `cluster`."""
    resource = arn_resource(value)
    if resource.startswith("service/"):
        parts = resource.split("/")
        if len(parts) >= 3:
            return parts[1], parts[-1]
        return cluster, parts[-1]
    return cluster, resource


def cluster_of_arn(value: str) -> str | None:
    """The cluster a new-format container-instance or task ARN names
    (`container-instance/<cluster>/<id>`, `task/<cluster>/<id>`); None otherwise."""
    resource = arn_resource(value)
    parts = resource.split("/")
    if len(parts) == 3 and parts[0] in ("container-instance", "task"):
        return parts[1]
    return None


# --- parsing ------------------------------------------------------------------------------


def parse_event(body: str | bytes, *, max_bytes: int = MAX_MESSAGE_BYTES) -> Touched | Rejected:
    """What one SQS message body touches, or why it touches nothing usable. Never raises."""
    try:
        return _parse(body, max_bytes=max_bytes)
    except Exception as exc:  # the body is anyone's: nothing in it may stop the loop
        return Rejected(reason="malformed", detail=f"{type(exc).__name__}: {exc}")


def _parse(body: str | bytes, *, max_bytes: int) -> Touched | Rejected:
    size = len(body) if isinstance(body, bytes) else len(body.encode("utf-8", "replace"))
    if size > max_bytes:
        return Rejected(reason="oversized", detail=f"{size} bytes > {max_bytes}")
    try:
        event = json.loads(body)
    except ValueError as exc:
        return Rejected(reason="malformed", detail=f"not JSON: {exc}")
    if not isinstance(event, dict):
        return Rejected(reason="malformed", detail=f"not a JSON object: {type(event).__name__}")
    if event.get("Type") == "Notification" and isinstance(event.get("Message"), str):
        # One SNS envelope (a topic between the rule and the queue); no more than one.
        try:
            event = json.loads(event["Message"])
        except ValueError as exc:
            return Rejected(reason="malformed", detail=f"SNS Message is not JSON: {exc}")
        if not isinstance(event, dict):
            return Rejected(reason="malformed", detail="SNS Message is not a JSON object")
    source, detail_type, detail = event.get("source"), event.get("detail-type"), event.get("detail")
    if not isinstance(source, str) or not isinstance(detail_type, str):
        return Rejected(reason="malformed", detail="no source or detail-type")
    if not isinstance(detail, dict):
        return Rejected(reason="malformed", detail="detail is not an object")
    resources = [value for value in _list(event.get("resources")) if isinstance(value, str)]

    touched: Touched
    if detail_type == API_CALL and source in ("aws.ecs", "aws.ec2"):
        return _api_call(detail)
    if source == "aws.ecs" and detail_type in ECS_DETAIL_TYPES:
        touched = _ecs_event(detail_type, detail, resources)
    elif source == "aws.ec2" and detail_type in EC2_DETAIL_TYPES:
        instance = _str(detail.get("instance-id"))
        touched = Touched(
            source="ec2", kind=detail_type, instance_ids=frozenset([instance] if instance else [])
        )
    else:
        return Rejected(reason="unknown", detail=f"{source}: {detail_type}"[:200])
    if touched.empty:
        return Rejected(
            reason="irrelevant", detail=f"{detail_type}: names nothing", source=touched.source
        )
    return touched


def _ecs_event(detail_type: str, detail: Mapping[str, Any], resources: list[str]) -> Touched:
    cluster_arn = _str(detail.get("clusterArn"))
    cluster = cluster_name(cluster_arn) if cluster_arn else None
    clusters: set[str] = set()
    services: set[tuple[str, str]] = set()
    families: set[str] = set()
    instances: set[str] = set()
    container_instances: set[str] = set()
    tasks: set[str] = set()
    if detail_type == ECS_TASK_STATE:
        group = _str(detail.get("group"))
        if group and group.startswith("service:") and cluster:
            services.add((cluster, group.removeprefix("service:")))
        elif task := _str(detail.get("taskArn")):
            tasks.add(task)
        if task_definition := _str(detail.get("taskDefinitionArn")):
            families.add(family_of(task_definition))
        # Not its container instance: a task's placement is its deployment's business,
        # and the instance's own state changes have their events.
    elif detail_type in (ECS_SERVICE_ACTION, ECS_DEPLOYMENT_STATE):
        for resource in resources:
            if arn_resource(resource).startswith("service/") and (
                cluster or len(arn_resource(resource).split("/")) >= 3
            ):
                services.add(service_pair(resource, cluster=cluster or DEFAULT_CLUSTER))
        if not services and cluster:
            clusters.add(cluster)
    elif detail_type == ECS_CONTAINER_INSTANCE_STATE:
        if cluster:
            clusters.add(cluster)
        if container_instance := _str(detail.get("containerInstanceArn")):
            container_instances.add(container_instance)
        if instance := _str(detail.get("ec2InstanceId")):
            instances.add(instance)
    return Touched(
        source="ecs",
        kind=detail_type,
        clusters=frozenset(clusters),
        services=frozenset(services),
        families=frozenset(families),
        instance_ids=frozenset(instances),
        container_instances=frozenset(container_instances),
        tasks=frozenset(tasks),
    )


def _api_call(detail: Mapping[str, Any]) -> Touched | Rejected:
    event_source = _str(detail.get("eventSource"))
    # Anyone's text, bound for logs and labels of nothing: kept short.
    event_name = (_str(detail.get("eventName")) or "?")[:MAX_NAME_CHARS]
    if event_source not in API_EVENT_SOURCES:
        return Rejected(reason="unknown", detail=f"API call of {event_source}"[:200])
    if event_name.startswith(_READ_ONLY_PREFIXES):
        return Rejected(reason="irrelevant", detail=f"{event_name}: read only", source="api")
    if detail.get("errorCode"):
        return Rejected(reason="irrelevant", detail=f"{event_name}: failed", source="api")
    request = _dict(detail.get("requestParameters"))
    response = _dict(detail.get("responseElements"))
    if event_source == "ecs.amazonaws.com":
        touched = _ecs_call(event_name, request, response)
    else:
        touched = _ec2_call(event_name, request, response)
    if touched.empty:
        return Rejected(reason="irrelevant", detail=f"{event_name}: names nothing", source="api")
    actor = _str(_dict(detail.get("userIdentity")).get("arn"))
    return dataclasses.replace(touched, actor=actor) if actor else touched


def _ecs_call(name: str, request: Mapping[str, Any], response: Mapping[str, Any]) -> Touched:
    given = _str(request.get("cluster")) or _str(request.get("clusterName"))
    cluster = cluster_name(given) if given else DEFAULT_CLUSTER
    clusters: set[str] = set()
    services: set[tuple[str, str]] = set()
    families: set[str] = set()
    container_instances: set[str] = set()
    tasks: set[str] = set()
    for value in (_str(request.get("service")), _str(request.get("serviceName"))):
        if value:
            services.add(service_pair(value, cluster=cluster))
    for value in (_str(request.get("taskDefinition")), _str(request.get("family"))):
        if value:
            families.add(family_of(value))
    for value in [*_list(request.get("containerInstances")), request.get("containerInstance")]:
        if isinstance(value, str) and value:
            container_instances.add(value)
    for value in [*_list(request.get("tasks")), request.get("task")]:
        if isinstance(value, str) and value:
            tasks.add(value)
    # What was created is named in the response (CreateService, RegisterTaskDefinition).
    arns = [
        _str(_dict(response.get("service")).get("serviceArn")),
        _str(_dict(response.get("cluster")).get("clusterArn")),
        _str(_dict(response.get("taskDefinition")).get("taskDefinitionArn")),
        _str(request.get("resourceArn")),  # TagResource, UntagResource
    ]
    for arn in arns:
        if not arn:
            continue
        resource = arn_resource(arn)
        kind = resource.partition("/")[0]
        if kind == "service":
            services.add(service_pair(arn, cluster=cluster))
        elif kind == "cluster":
            clusters.add(cluster_name(arn))
        elif kind == "task-definition":
            families.add(family_of(arn))
        elif kind == "container-instance":
            container_instances.add(arn)
        elif kind == "task":
            tasks.add(arn)
    if given and not (services or families or tasks):
        # A call on the cluster itself (CreateCluster, PutClusterCapacityProviders) or on
        # its instances; one that names a service or a task is that resource's business.
        clusters.add(cluster)
    return Touched(
        source="api",
        kind=f"api:{name}",
        clusters=frozenset(clusters),
        services=frozenset(services),
        families=frozenset(families),
        container_instances=frozenset(container_instances),
        tasks=frozenset(tasks),
    )


def _ec2_call(name: str, request: Mapping[str, Any], response: Mapping[str, Any]) -> Touched:
    instances: set[str] = set()
    groups: set[str] = set()
    clusters: set[str] = set()
    for key, value in [*_pairs(request, 0), *_pairs(response, 0)]:
        if key in ("instanceId", "resourceId", "groupId") and isinstance(value, str):
            if value.startswith("i-"):
                instances.add(value)
            elif value.startswith("sg-"):
                groups.add(value)
        elif key == "tag" and isinstance(value, Mapping) and value.get("key") == CLUSTER_TAG:
            # Our cluster tag on what was launched or tagged: it names the cluster even
            # before the instance was ever observed.
            cluster = value.get("value")
            if isinstance(cluster, str) and cluster:
                clusters.add(cluster)
    return Touched(
        source="api",
        kind=f"api:{name}",
        clusters=frozenset(clusters),
        instance_ids=frozenset(instances),
        security_groups=frozenset(groups),
    )


def _pairs(node: Any, depth: int) -> Iterator[tuple[str, Any]]:
    """Every (key, value) at any depth below `node` (up to `_MAX_DEPTH`); a mapping with
    a `key` member (a CloudTrail tag) is also given as ("tag", mapping)."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, Mapping):
        if "key" in node:
            yield "tag", node
        for key, value in node.items():
            yield str(key), value
            yield from _pairs(value, depth + 1)
    elif isinstance(node, list):
        for item in node:
            yield from _pairs(item, depth + 1)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


# --- keys ----------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class KeyIndex:
    """Lookups from the names events give to work-queue keys, built once per level
    (`KeyIndex.of(desired, observed)`) and asked per event (`keys`)."""

    clusters: frozenset[str]
    """Our clusters: those of the specs, and managed ones (a removed spec's)."""
    services: Mapping[tuple[str, str], str]
    """(cluster, service) -> deployment key: the specs', then managed services' tags."""
    families: Mapping[str, str]
    """Task-definition family -> deployment key."""
    instances: Mapping[str, str]
    """EC2 instance id -> cluster key (managed instances, container instances)."""
    container_instances: Mapping[str, str]
    """Container-instance ARN, and its bare id -> cluster key."""
    security_groups: Mapping[str, str]
    """Managed security-group id -> cluster key."""
    tasks: Mapping[str, tuple[str, str]]
    """Task ARN, and its bare id -> (cluster, service)."""

    @classmethod
    def of(cls, desired: DesiredState, observed: ObservedState) -> KeyIndex:
        clusters = set(desired.clusters) | set(desired.unresolved_clusters)
        clusters |= {name for name, live in observed.clusters.items() if is_managed(live.tags)}
        services: dict[tuple[str, str], str] = {}
        for (cluster, name), live in observed.services.items():
            owner = live.tags.get(DEPLOYMENT_TAG)
            if is_managed(live.tags) and owner:
                services[(cluster, name)] = deployment_key(owner)
        families: dict[str, str] = {}
        for family, revisions in observed.task_definitions.items():
            for revision in revisions:
                owner = revision.tags.get(DEPLOYMENT_TAG)
                if is_managed(revision.tags) and owner:
                    families[family] = deployment_key(owner)
        for deployment in desired.deployments.values():  # the specs win over tags
            key = deployment_key(deployment.name)
            services[(deployment.service.cluster, deployment.service.name)] = key
            families[deployment.task_definition.family] = key
        instances = {
            instance.instance_id: cluster_key(cluster)
            for cluster, found in observed.instances.items()
            for instance in found
        }
        container_instances: dict[str, str] = {}
        for cluster, registered in observed.container_instances.items():
            if cluster not in clusters:
                continue
            for container_instance in registered:
                key = cluster_key(cluster)
                container_instances[container_instance.arn] = key
                container_instances[_last_part(container_instance.arn)] = key
                instances.setdefault(container_instance.ec2_instance_id, key)
        security_groups = {
            group.group_id: cluster_key(cluster)
            for cluster, group in observed.security_groups.items()
        }
        tasks: dict[str, tuple[str, str]] = {}
        for running in observed.tasks.values():
            for task in running:
                if task.service:
                    tasks[task.arn] = tasks[_last_part(task.arn)] = (task.cluster, task.service)
        return cls(
            clusters=frozenset(clusters),
            services=services,
            families=families,
            instances=instances,
            container_instances=container_instances,
            security_groups=security_groups,
            tasks=tasks,
        )

    def keys(self, touched: Touched) -> set[str]:
        """The keys of what `touched` names that is ours; empty when nothing is."""
        keys = {cluster_key(name) for name in touched.clusters if name in self.clusters}
        services = set(touched.services)
        services |= {self.tasks[task] for task in touched.tasks if task in self.tasks}
        keys |= {self.services[pair] for pair in services if pair in self.services}
        keys |= {self.families[name] for name in touched.families if name in self.families}
        keys |= {self.instances[i] for i in touched.instance_ids if i in self.instances}
        keys |= {
            self.security_groups[group]
            for group in touched.security_groups
            if group in self.security_groups
        }
        for container_instance in touched.container_instances:
            key = self.container_instances.get(container_instance)
            cluster = cluster_of_arn(container_instance)
            if key is None and cluster is not None and cluster in self.clusters:
                key = cluster_key(cluster)
            if key is not None:
                keys.add(key)
        return keys


def keys_for(touched: Touched, desired: DesiredState, observed: ObservedState) -> set[str]:
    """The work-queue keys an event's touched resources belong to; empty when none is
    ours. A service (by spec, or by a managed service's deployment tag) and a
    task-definition family map to their deployment; an instance, a container instance or
    a security group to its cluster; a cluster to itself when it is ours. (For many
    events of one level, build the `KeyIndex` once.)"""
    return KeyIndex.of(desired, observed).keys(touched)


def _last_part(arn: str) -> str:
    return arn.rsplit("/", 1)[-1]
