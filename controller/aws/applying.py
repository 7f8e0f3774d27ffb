"""Carrying out a plan: each action, in order, as AWS writes.

Owns: the write calls (create/update/delete of clusters, security groups, instances,
task definitions and services), their idempotency, and the ownership check before any
change. Must not: decide what to change (`controller.core.planning` did), or wait for
services to settle (`waiting`).

Idempotency cannot rest on AWS: moto ignores client tokens, `create_cluster` and
`create_service` with an existing name *replace* the resource, and a crash between a
write and the next observe leaves an intent half done. So every create reads first,
right before it writes, by name or by tags, and turns into "unchanged" when the intent
is already met; an instance launch counts the cluster's live matching instances just
before `run_instances`. Every update or delete re-reads the live tags and refuses a
resource without the managed-by tag (CONTRACT §5).

A failing action stops the plan: later actions often depend on earlier ones (a service
on its task definition). The report says what was done, what failed, and what was not
attempted; `ApplyReport.raise_for_error()` turns a failure into the exception the runner
retries or gives up on.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog
from botocore.exceptions import ClientError

from controller.aws.clients import AwsClients
from controller.aws.errors import (
    SPOT_CAPACITY_CODES,
    AwsError,
    TerminalError,
    TransientError,
    error_code,
    map_error,
    translating_errors,
)
from controller.aws.observing import (
    IngressRange,
    describe_managed_instances,
    ec2_tags,
    ecs_tags,
    ingress_ranges,
    managed_filter,
)
from controller.core.plans import PAST_TENSE, Action, Plan
from controller.core.states import (
    CLUSTER_TAG,
    MANAGED_BY,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredCluster,
    DesiredFleet,
    DesiredSecurityGroup,
    DesiredService,
    DesiredTaskDefinition,
    IngressRule,
    LiveCluster,
    LiveInstance,
    LiveSecurityGroup,
    LiveService,
    LiveTaskDefinition,
    ObservedState,
    is_managed,
)

if TYPE_CHECKING:
    from types_aiobotocore_ec2.type_defs import IpPermissionTypeDef
    from types_aiobotocore_ec2.type_defs import TagTypeDef as Ec2Tag
    from types_aiobotocore_ecs.type_defs import TagTypeDef as EcsTag

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

# On an instance launched by a `replace`: the instance it replaces, so that a pass that
# crashed between the launch and the termination does not launch a second replacement.
REPLACES_TAG = "ecs-infer:replaces"

Outcome = Literal["created", "updated", "replaced", "deleted", "unchanged"]
ALIVE_STATES = ("pending", "running")
SPOT_OPTIONS = {
    "MarketType": "spot",
    "SpotOptions": {"SpotInstanceType": "one-time", "InstanceInterruptionBehavior": "terminate"},
}


@dataclass(frozen=True, kw_only=True)
class AppliedAction:
    """One action carried out. `unchanged` means the intent was already met when the
    action re-read AWS (another pass, or one that crashed, got there first)."""

    action: Action
    outcome: Outcome
    resource_id: str  # what AWS calls the resource: name, id or ARN
    detail: str = ""
    duration_s: float = 0.0

    def sentence(self) -> str:
        text = f"{self.action.resource} {self.resource_id} has been {self.outcome}"
        return f"{text} ({self.detail})" if self.detail else text


@dataclass(frozen=True, kw_only=True)
class ApplyReport:
    applied: tuple[AppliedAction, ...] = ()
    failed: Action | None = None
    error: AwsError | None = None
    not_attempted: tuple[Action, ...] = ()

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def changed(self) -> bool:
        return any(item.outcome != "unchanged" for item in self.applied)

    def counts(self) -> dict[str, int]:
        counts = Counter(item.outcome for item in self.applied)
        return {outcome: counts[outcome] for outcome in sorted(counts)}

    def raise_for_error(self) -> None:
        if self.error is not None:
            raise self.error

    def for_key(self, key: str) -> ApplyReport:
        failed = self.failed if self.failed is not None and self.failed.key == key else None
        return ApplyReport(
            applied=tuple(item for item in self.applied if item.action.key == key),
            failed=failed,
            error=self.error if failed is not None else None,
            not_attempted=tuple(a for a in self.not_attempted if a.key == key),
        )

    def lines(self) -> list[str]:
        lines = [item.sentence() for item in self.applied]
        if self.failed is not None:
            lines.append(
                f"{self.failed.resource} {self.failed.id} could not be "
                f"{PAST_TENSE[self.failed.verb]}: {self.error}"
            )
        lines.extend(
            f"{a.resource} {a.id} was not {PAST_TENSE[a.verb]} (not attempted)"
            for a in self.not_attempted
        )
        return lines


@dataclass
class _Context:
    """What earlier actions of the same apply learnt, for later ones to use."""

    clients: AwsClients
    observed: ObservedState | None
    security_groups: dict[str, str] = field(default_factory=dict)  # cluster -> group id
    revisions: dict[tuple[str, str], str] = field(default_factory=dict)  # (family, hash) -> ARN


async def apply_plan(
    clients: AwsClients, plan: Plan, *, observed: ObservedState | None = None
) -> ApplyReport:
    """Carry out `plan.actions` in order; stop at the first failure.

    `observed` (the state the plan was made from) saves reads: the managed security
    group's id and the ARN of a task-definition revision a service should run.
    """
    context = _Context(clients=clients, observed=observed)
    applied: list[AppliedAction] = []
    actions = list(plan.actions)
    for index, action in enumerate(actions):
        started = time.monotonic()
        try:
            with translating_errors():
                outcome, resource_id, detail = await _carry_out(context, action)
        except Exception as exc:
            error = map_error(exc)
            if error is None:
                raise
            log.warning(
                "apply.action_failed",
                verb=action.verb,
                resource=action.resource,
                id=action.id,
                key=action.key,
                error=str(error),
                transient=isinstance(error, TransientError),
            )
            return ApplyReport(
                applied=tuple(applied),
                failed=action,
                error=error,
                not_attempted=tuple(actions[index + 1 :]),
            )
        item = AppliedAction(
            action=action,
            outcome=outcome,
            resource_id=resource_id,
            detail=detail,
            duration_s=time.monotonic() - started,
        )
        log.info(
            "apply.action",
            verb=action.verb,
            resource=action.resource,
            id=resource_id,
            key=action.key,
            outcome=outcome,
            detail=detail or None,
        )
        applied.append(item)
    return ApplyReport(applied=tuple(applied))


_Result = tuple[Outcome, str, str]


async def _carry_out(context: _Context, action: Action) -> _Result:
    match action.resource, action.verb:
        case "cluster", "create":
            return await _create_cluster(context, _desired(action, DesiredCluster))
        case "cluster", "update" | "replace":
            return await _update_cluster(context, _desired(action, DesiredCluster))
        case "cluster", "delete":
            return await _delete_cluster(context, _live_name(action, LiveCluster))
        case "security-group", "create":
            return await _create_security_group(context, _desired(action, DesiredSecurityGroup))
        case "security-group", "replace":
            return await _replace_security_group(
                context, _desired(action, DesiredSecurityGroup), _live(action, LiveSecurityGroup)
            )
        case "security-group", "update":
            return await _update_security_group(
                context, _desired(action, DesiredSecurityGroup), action.live
            )
        case "security-group", "delete":
            return await _delete_security_group(context, _live(action, LiveSecurityGroup))
        case "instance", "create":
            return await _create_instance(context, _fleet(action))
        case "instance", "replace":
            return await _replace_instance(context, _fleet(action), _live(action, LiveInstance))
        case "instance", "update":
            return await _retag_instance(context, _fleet(action), _live(action, LiveInstance))
        case "instance", "delete":
            return await _terminate_instance(context, _live(action, LiveInstance).instance_id)
        case "task-definition", "create" | "replace":
            return await _register(context, _desired(action, DesiredTaskDefinition))
        case "task-definition", "update":
            return await _retag_revision(
                context, _desired(action, DesiredTaskDefinition), _live(action, LiveTaskDefinition)
            )
        case "task-definition", "delete":
            return await _deregister(context, _live(action, LiveTaskDefinition).arn)
        case "service", "create":
            return await _create_service(context, _desired(action, DesiredService), action)
        case "service", "update":
            return await _update_service(context, _desired(action, DesiredService), action)
        case "service", "replace":
            return await _replace_service(context, _desired(action, DesiredService), action)
        case "service", "delete":
            return await _delete_service(context, _live(action, LiveService))
    raise TerminalError(f"cannot {action.verb} a {action.resource}: no such action")


def _desired(action: Action, kind: type[_T]) -> _T:
    if not isinstance(action.desired, kind):
        raise TerminalError(
            f"{action.verb} {action.resource} {action.id}: expected a {kind.__name__}, "
            f"got {type(action.desired).__name__}"
        )
    return action.desired


def _live(action: Action, kind: type[_T]) -> _T:
    if not isinstance(action.live, kind):
        raise TerminalError(
            f"{action.verb} {action.resource} {action.id}: expected a {kind.__name__}, "
            f"got {type(action.live).__name__}"
        )
    return action.live


def _live_name(action: Action, kind: type[LiveCluster]) -> str:
    return action.live.name if isinstance(action.live, kind) else action.id


def _fleet(action: Action) -> DesiredFleet:
    if isinstance(action.desired, DesiredCluster):
        return action.desired.fleet
    return _desired(action, DesiredFleet)


def _refuse_unmanaged(tags: Mapping[str, str], what: str) -> None:
    if not is_managed(tags):
        raise TerminalError(
            f"refusing to change {what}: it exists without the tag {MANAGED_BY}=ecs-infer, "
            "so it is not ours"
        )


def ecs_tag_list(tags: Mapping[str, str]) -> list[EcsTag]:
    return [{"key": key, "value": value} for key, value in sorted(tags.items())]


def ec2_tag_list(tags: Mapping[str, str]) -> list[Ec2Tag]:
    return [{"Key": key, "Value": value} for key, value in sorted(tags.items())]


def _missing_tags(live: Mapping[str, str], desired: Mapping[str, str]) -> dict[str, str]:
    return {key: value for key, value in desired.items() if live.get(key) != value}


# --- clusters -------------------------------------------------------------------------


async def _describe_cluster(context: _Context, name: str) -> Mapping[str, Any] | None:
    response = await context.clients.ecs.describe_clusters(clusters=[name], include=["TAGS"])
    found = [c for c in response.get("clusters", ()) if c.get("clusterName") == name]
    active = [c for c in found if c.get("status") != "INACTIVE"]
    candidates = active or found
    return candidates[0] if candidates else None


async def _create_cluster(context: _Context, desired: DesiredCluster) -> _Result:
    ecs = context.clients.ecs
    live = await _describe_cluster(context, desired.name)
    if live is not None and live.get("status") != "INACTIVE":
        # create_cluster on an existing name would replace it (moto) and drop its tags.
        tags = ecs_tags(live.get("tags"))
        _refuse_unmanaged(tags, f"cluster {desired.name}")
        missing = _missing_tags(tags, desired.tags)
        if missing:
            await ecs.tag_resource(resourceArn=live["clusterArn"], tags=ecs_tag_list(missing))
            return "updated", desired.name, "existed; tags refreshed"
        return "unchanged", desired.name, "already exists"
    await ecs.create_cluster(clusterName=desired.name, tags=ecs_tag_list(desired.tags))
    return "created", desired.name, ""


async def _update_cluster(context: _Context, desired: DesiredCluster) -> _Result:
    live = await _describe_cluster(context, desired.name)
    if live is None or live.get("status") == "INACTIVE":
        return await _create_cluster(context, desired)
    tags = ecs_tags(live.get("tags"))
    _refuse_unmanaged(tags, f"cluster {desired.name}")
    missing = _missing_tags(tags, desired.tags)
    if not missing:
        return "unchanged", desired.name, ""
    await context.clients.ecs.tag_resource(
        resourceArn=live["clusterArn"], tags=ecs_tag_list(missing)
    )
    return "updated", desired.name, "tags"


async def _delete_cluster(context: _Context, name: str) -> _Result:
    live = await _describe_cluster(context, name)
    if live is None or live.get("status") == "INACTIVE":
        return "unchanged", name, "already gone"
    _refuse_unmanaged(ecs_tags(live.get("tags")), f"cluster {name}")
    await context.clients.ecs.delete_cluster(cluster=name)
    return "deleted", name, ""


# --- security groups ------------------------------------------------------------------


def _desired_ranges(rules: Iterable[IngressRule]) -> set[IngressRange]:
    """The rules with neighbouring ports of one protocol and CIDR merged into ranges, so
    that deployments on ports 8500, 8501, ... take one rule of the group's limit (60 by
    default), not one each."""
    ports: dict[tuple[str, str], list[int]] = {}
    for rule in rules:
        ports.setdefault((rule.protocol, rule.cidr), []).append(rule.port)
    ranges: set[IngressRange] = set()
    for (protocol, cidr), found in ports.items():
        if protocol == "-1" or -1 in found:
            ranges.add(IngressRange(protocol, -1, -1, cidr))
            continue
        run: list[int] = []
        for port in sorted(set(found)):
            if run and port != run[-1] + 1:
                ranges.add(IngressRange(protocol, run[0], run[-1], cidr))
                run = []
            run.append(port)
        if run:
            ranges.add(IngressRange(protocol, run[0], run[-1], cidr))
    return ranges


def _permissions(ranges: Iterable[IngressRange], *, describe: bool) -> list[IpPermissionTypeDef]:
    grouped: dict[tuple[str, int, int], list[str]] = {}
    for found in sorted(ranges):
        grouped.setdefault((found.protocol, found.first, found.last), []).append(found.cidr)
    permissions: list[IpPermissionTypeDef] = []
    for (protocol, first, last), cidrs in grouped.items():
        permission: IpPermissionTypeDef = {"IpProtocol": protocol}
        if first >= 0 and protocol != "-1":
            permission["FromPort"] = first
            permission["ToPort"] = last
        permission["IpRanges"] = [
            {"CidrIp": cidr, **({"Description": "ecs-infer model port"} if describe else {})}
            for cidr in cidrs
        ]
        permissions.append(permission)
    return permissions


async def _describe_groups(context: _Context, **kwargs: Any) -> list[Mapping[str, Any]]:
    groups: list[Mapping[str, Any]] = []
    async for page in context.clients.ec2.get_paginator("describe_security_groups").paginate(
        **kwargs
    ):
        groups.extend(page.get("SecurityGroups", ()))
    return groups


async def _sync_ingress(
    context: _Context,
    group_id: str,
    live: Iterable[Mapping[str, Any]],
    desired: Iterable[IngressRule],
) -> list[str]:
    """Make the group's ingress exactly `desired`, given its `IpPermissions` as read.

    Compared rule by rule as EC2 stores them (port ranges), so that what is revoked is
    exactly what was read. New rules are authorized before old ones are revoked: a port
    that stays open while its range changes is never closed in between."""
    ec2 = context.clients.ec2
    live_ranges, desired_ranges = ingress_ranges(live), _desired_ranges(desired)
    done: list[str] = []
    missing = desired_ranges - live_ranges
    extra = live_ranges - desired_ranges
    if missing:
        await ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=_permissions(missing, describe=True)
        )
        done.append(f"authorized {len(missing)} rule(s)")
    if extra:
        await ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=_permissions(extra, describe=False)
        )
        done.append(f"revoked {len(extra)} rule(s)")
    return done


async def _create_security_group(context: _Context, desired: DesiredSecurityGroup) -> _Result:
    existing = await _describe_groups(
        context,
        Filters=[
            {"Name": "group-name", "Values": [desired.name]},
            {"Name": "vpc-id", "Values": [desired.vpc_id]},
        ],
    )
    if existing:
        group = existing[0]
        _refuse_unmanaged(ec2_tags(group.get("Tags")), f"security group {desired.name}")
        group_id = str(group["GroupId"])
        context.security_groups[desired.cluster] = group_id
        done = await _sync_ingress(
            context, group_id, group.get("IpPermissions", ()), desired.ingress
        )
        return ("updated" if done else "unchanged"), group_id, "; ".join(done) or "already exists"
    try:
        response = await context.clients.ec2.create_security_group(
            GroupName=desired.name,
            Description=desired.description,
            VpcId=desired.vpc_id,
            TagSpecifications=[
                {"ResourceType": "security-group", "Tags": ec2_tag_list(desired.tags)}
            ],
        )
    except ClientError as exc:
        if error_code(exc) != "InvalidGroup.Duplicate":
            raise
        # Created between our read and our write (a concurrent pass): the next pass
        # finds it and checks its ownership before using it.
        raise TransientError(
            f"security group {desired.name} appeared while being created",
            service="ec2",
            operation="CreateSecurityGroup",
            code="InvalidGroup.Duplicate",
        ) from exc
    group_id = response["GroupId"]
    context.security_groups[desired.cluster] = group_id
    await _sync_ingress(context, group_id, (), desired.ingress)
    return "created", group_id, ""


async def _update_security_group(
    context: _Context, desired: DesiredSecurityGroup, live: object
) -> _Result:
    group_id = live.group_id if isinstance(live, LiveSecurityGroup) else None
    if group_id is None:
        return await _create_security_group(context, desired)
    groups = await _describe_groups(context, GroupIds=[group_id])
    if not groups:
        return await _create_security_group(context, desired)
    group = groups[0]
    tags = ec2_tags(group.get("Tags"))
    _refuse_unmanaged(tags, f"security group {group_id}")
    context.security_groups[desired.cluster] = group_id
    done = await _sync_ingress(context, group_id, group.get("IpPermissions", ()), desired.ingress)
    missing = _missing_tags(tags, desired.tags)
    if missing:
        await context.clients.ec2.create_tags(Resources=[group_id], Tags=ec2_tag_list(missing))
        done.append("tags")
    return ("updated" if done else "unchanged"), group_id, "; ".join(done)


async def _replace_security_group(
    context: _Context, desired: DesiredSecurityGroup, old: LiveSecurityGroup
) -> _Result:
    """A group cannot move VPC: create the new one, then delete the old one if nothing
    uses it any more (instances in the old VPC keep it until they are replaced)."""
    _, new_id, _ = await _create_security_group(context, desired)
    try:
        await _delete_security_group(context, old)
    except ClientError as exc:
        if error_code(exc) != "DependencyViolation":
            raise
        return "replaced", old.group_id, f"by {new_id}; the old group is still in use"
    return "replaced", old.group_id, f"by {new_id}"


async def _delete_security_group(context: _Context, live: LiveSecurityGroup) -> _Result:
    try:
        groups = await _describe_groups(context, GroupIds=[live.group_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidGroup.NotFound":
            return "unchanged", live.group_id, "already gone"
        raise
    if not groups:
        return "unchanged", live.group_id, "already gone"
    _refuse_unmanaged(ec2_tags(groups[0].get("Tags")), f"security group {live.group_id}")
    await context.clients.ec2.delete_security_group(GroupId=live.group_id)
    return "deleted", live.group_id, ""


async def _security_group_id(context: _Context, cluster: str) -> str:
    if cluster in context.security_groups:
        return context.security_groups[cluster]
    observed = context.observed
    if observed is not None and cluster in observed.security_groups:
        return observed.security_groups[cluster].group_id
    groups = await _describe_groups(
        context, Filters=[managed_filter(), {"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]}]
    )
    if not groups:
        raise TerminalError(
            f"cluster {cluster}: no managed security group to launch instances in "
            "(the plan should have created it first)"
        )
    group_id = str(sorted(g["GroupId"] for g in groups)[0])
    context.security_groups[cluster] = group_id
    return group_id


# --- instances ------------------------------------------------------------------------


def _matches(raw: Mapping[str, Any], fleet: DesiredFleet) -> bool:
    return raw.get("InstanceType") == fleet.instance_type and raw.get("ImageId") == fleet.image_id


def _subnets_by_load(fleet: DesiredFleet, alive: Sequence[Mapping[str, Any]]) -> list[str | None]:
    """The fleet's subnets, those with the fewest live instances first (spread)."""
    if not fleet.subnet_ids:
        return [None]
    load = Counter(str(raw.get("SubnetId")) for raw in alive)
    order = {subnet: index for index, subnet in enumerate(fleet.subnet_ids)}
    ranked = sorted(fleet.subnet_ids, key=lambda subnet: (load[subnet], order[subnet]))
    return list(ranked)


async def _create_instance(context: _Context, fleet: DesiredFleet) -> _Result:
    # Re-check by tags right before launching: a crashed pass, or the previous action
    # of this one, may already have launched what this action asks for.
    alive = await describe_managed_instances(
        context.clients, cluster=fleet.cluster, states=ALIVE_STATES
    )
    matching = [raw for raw in alive if _matches(raw, fleet)]
    if len(matching) >= fleet.count:
        return "unchanged", fleet.cluster, f"{len(matching)} matching instance(s) already live"
    instance_id, detail = await _launch(context, fleet, alive=alive, extra_tags={})
    return "created", instance_id, detail


async def _replace_instance(context: _Context, fleet: DesiredFleet, old: LiveInstance) -> _Result:
    alive = await describe_managed_instances(
        context.clients, cluster=fleet.cluster, states=ALIVE_STATES
    )
    replacement = next(
        (raw for raw in alive if ec2_tags(raw.get("Tags")).get(REPLACES_TAG) == old.instance_id),
        None,
    )
    if replacement is not None:
        new_id, detail = str(replacement["InstanceId"]), "replacement already launched"
    else:
        new_id, detail = await _launch(
            context, fleet, alive=alive, extra_tags={REPLACES_TAG: old.instance_id}
        )
    await _terminate_instance(context, old.instance_id)
    return "replaced", old.instance_id, f"by {new_id}" + (f"; {detail}" if detail else "")


async def _launch(
    context: _Context,
    fleet: DesiredFleet,
    *,
    alive: Sequence[Mapping[str, Any]],
    extra_tags: Mapping[str, str],
) -> tuple[str, str]:
    """Launch one instance: spot across the subnets (least loaded first), then, when
    allowed, on-demand. Returns the instance id and how it was launched."""
    security_groups = list(fleet.security_group_ids) or [
        await _security_group_id(context, fleet.cluster)
    ]
    tags = ec2_tag_list({**fleet.tags, **extra_tags})
    request: dict[str, Any] = {
        "ImageId": fleet.image_id,
        "InstanceType": fleet.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "IamInstanceProfile": {"Name": fleet.instance_profile},
        "SecurityGroupIds": security_groups,
        # Plain text: botocore base64-encodes RunInstances UserData itself.
        "UserData": fleet.user_data,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if fleet.key_name:
        request["KeyName"] = fleet.key_name
    subnets = _subnets_by_load(fleet, alive)
    markets: list[Literal["spot", "on-demand"]] = (
        ["spot", "on-demand"]
        if fleet.market == "spot" and fleet.on_demand_fallback
        else [fleet.market]
    )
    refusals: list[str] = []
    for market in markets:
        for subnet in subnets:
            attempt = dict(request)
            if subnet is not None:
                attempt["SubnetId"] = subnet
            if market == "spot":
                attempt["InstanceMarketOptions"] = SPOT_OPTIONS
            # A fresh token per attempt: botocore's own retries of this call reuse it
            # (real EC2 then launches once); a later attempt is a new intent.
            attempt["ClientToken"] = uuid.uuid4().hex
            try:
                response = await context.clients.ec2.run_instances(**attempt)
            except ClientError as exc:
                code = error_code(exc)
                if code not in SPOT_CAPACITY_CODES:
                    raise
                refusals.append(f"{market} in {subnet or 'default subnet'}: {code}")
                log.info(
                    "apply.capacity_refused",
                    cluster=fleet.cluster,
                    market=market,
                    subnet=subnet,
                    code=code,
                )
                continue
            instance_id = str(response["Instances"][0]["InstanceId"])
            detail = f"{market} in {subnet}" if subnet else market
            if refusals:
                detail += f" after {len(refusals)} refusal(s)"
            return instance_id, detail
    raise TransientError(
        f"cluster {fleet.cluster}: no capacity for {fleet.instance_type}: " + "; ".join(refusals),
        service="ec2",
        operation="RunInstances",
        code="InsufficientInstanceCapacity",
    )


async def _describe_instance(context: _Context, instance_id: str) -> Mapping[str, Any] | None:
    try:
        response = await context.clients.ec2.describe_instances(InstanceIds=[instance_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidInstanceID.NotFound":
            return None
        raise
    for reservation in response.get("Reservations", ()):
        for raw in reservation.get("Instances", ()):
            return raw
    return None


async def _terminate_instance(context: _Context, instance_id: str) -> _Result:
    raw = await _describe_instance(context, instance_id)
    if raw is None or raw.get("State", {}).get("Name") in ("shutting-down", "terminated"):
        return "unchanged", instance_id, "already terminated"
    _refuse_unmanaged(ec2_tags(raw.get("Tags")), f"instance {instance_id}")
    await context.clients.ec2.terminate_instances(InstanceIds=[instance_id])
    return "deleted", instance_id, "terminated"


async def _retag_instance(context: _Context, fleet: DesiredFleet, live: LiveInstance) -> _Result:
    raw = await _describe_instance(context, live.instance_id)
    if raw is None:
        return "unchanged", live.instance_id, "gone"
    tags = ec2_tags(raw.get("Tags"))
    _refuse_unmanaged(tags, f"instance {live.instance_id}")
    missing = _missing_tags(tags, fleet.tags)
    if not missing:
        return "unchanged", live.instance_id, ""
    await context.clients.ec2.create_tags(Resources=[live.instance_id], Tags=ec2_tag_list(missing))
    return "updated", live.instance_id, "tags"


# --- task definitions -----------------------------------------------------------------


async def _latest_revision(context: _Context, family: str) -> Mapping[str, Any] | None:
    try:
        return await context.clients.ecs.describe_task_definition(
            taskDefinition=family, include=["TAGS"]
        )
    except ClientError as exc:
        if error_code(exc) == "ClientException":  # "Unable to describe task definition."
            return None
        raise


def _revision_hash(response: Mapping[str, Any]) -> str | None:
    return ecs_tags(response.get("tags")).get(TASK_DEFINITION_HASH_TAG)


async def _register(context: _Context, desired: DesiredTaskDefinition) -> _Result:
    key = (desired.family, desired.content_hash)
    # Re-check: the latest revision may already be this content (a crashed pass
    # registered it and never got to the service).
    latest = await _latest_revision(context, desired.family)
    if (
        latest is not None
        and latest["taskDefinition"].get("status") == "ACTIVE"
        and is_managed(ecs_tags(latest.get("tags")))
        and _revision_hash(latest) == desired.content_hash
    ):
        arn = str(latest["taskDefinition"]["taskDefinitionArn"])
        context.revisions[key] = arn
        return "unchanged", arn, "already registered"
    response = await context.clients.ecs.register_task_definition(
        **dict(desired.content), tags=ecs_tag_list(desired.tags)
    )
    arn = response["taskDefinition"]["taskDefinitionArn"]
    context.revisions[key] = arn
    return "created", arn, ""


async def _retag_revision(
    context: _Context, desired: DesiredTaskDefinition, live: LiveTaskDefinition
) -> _Result:
    response = await context.clients.ecs.describe_task_definition(
        taskDefinition=live.arn, include=["TAGS"]
    )
    tags = ecs_tags(response.get("tags"))
    _refuse_unmanaged(tags, f"task definition {live.arn}")
    missing = _missing_tags(tags, desired.tags)
    if not missing:
        return "unchanged", live.arn, ""
    await context.clients.ecs.tag_resource(resourceArn=live.arn, tags=ecs_tag_list(missing))
    return "updated", live.arn, "tags"


async def _deregister(context: _Context, arn: str) -> _Result:
    try:
        response = await context.clients.ecs.describe_task_definition(
            taskDefinition=arn, include=["TAGS"]
        )
    except ClientError as exc:
        if error_code(exc) == "ClientException":
            return "unchanged", arn, "already gone"
        raise
    if response["taskDefinition"].get("status") != "ACTIVE":
        return "unchanged", arn, "already deregistered"
    _refuse_unmanaged(ecs_tags(response.get("tags")), f"task definition {arn}")
    await context.clients.ecs.deregister_task_definition(taskDefinition=arn)
    return "deleted", arn, "deregistered"


async def _revision_for(context: _Context, desired: DesiredService, action: Action) -> str:
    """The ARN of the revision `desired` should run: the one the plan names, else the
    one registered by this apply, already on the service, observed by the pass, or the
    family's latest with the right content hash."""
    if action.task_definition_arn:
        return action.task_definition_arn
    wanted = desired.tags.get(TASK_DEFINITION_HASH_TAG)
    family = desired.task_family
    live = action.live
    if wanted is not None and (family, wanted) in context.revisions:
        return context.revisions[(family, wanted)]
    if (
        isinstance(live, LiveService)
        and wanted is not None
        and live.tags.get(TASK_DEFINITION_HASH_TAG) == wanted
    ):
        recorded = live.tags.get(TASK_DEFINITION_TAG) or live.task_definition
        if recorded.rsplit("/", 1)[-1].rsplit(":", 1)[0] == family:
            return recorded
    observed = context.observed
    if observed is not None:
        for revision in reversed(observed.task_definitions.get(family, ())):
            if wanted is None or revision.tags.get(TASK_DEFINITION_HASH_TAG) == wanted:
                return revision.arn
    latest = await _latest_revision(context, family)
    if latest is not None and (wanted is None or _revision_hash(latest) == wanted):
        return str(latest["taskDefinition"]["taskDefinitionArn"])
    raise TerminalError(
        f"service {desired.name}: no ACTIVE revision of {family} with content hash {wanted} "
        "(the plan should have registered it first)"
    )


# --- services -------------------------------------------------------------------------


async def _describe_service(context: _Context, cluster: str, name: str) -> Mapping[str, Any] | None:
    try:
        response = await context.clients.ecs.describe_services(
            cluster=cluster, services=[name], include=["TAGS"]
        )
    except ClientError as exc:
        if error_code(exc) == "ClusterNotFoundException":
            return None
        raise
    found = [s for s in response.get("services", ()) if s.get("serviceName") == name]
    live = [s for s in found if s.get("status") != "INACTIVE"]
    return live[0] if live else None


def _service_tags(desired: DesiredService, revision_arn: str) -> dict[str, str]:
    return {**desired.tags, TASK_DEFINITION_TAG: revision_arn}


async def _create_service(context: _Context, desired: DesiredService, action: Action) -> _Result:
    ecs = context.clients.ecs
    live = await _describe_service(context, desired.cluster, desired.name)
    if live is not None:
        # create_service on an existing name would replace the service (moto).
        _refuse_unmanaged(ecs_tags(live.get("tags")), f"service {desired.name}")
        if live.get("status") == "DRAINING":
            raise TransientError(
                f"service {desired.name} is still draining from a deletion",
                service="ecs",
                operation="CreateService",
                code="ServiceDraining",
            )
        return "unchanged", desired.name, "already exists"
    revision = await _revision_for(context, desired, action)
    request: dict[str, Any] = {
        "cluster": desired.cluster,
        "serviceName": desired.name,
        "taskDefinition": revision,
        "desiredCount": desired.desired_count,
        "launchType": "EC2",
        # A rollout whose tasks keep failing stops and rolls back; `waiting` reports it.
        "deploymentConfiguration": {
            "deploymentCircuitBreaker": {"enable": True, "rollback": True},
        },
        "tags": ecs_tag_list(_service_tags(desired, revision)),
    }
    if desired.placement_constraints:
        request["placementConstraints"] = [dict(c) for c in desired.placement_constraints]
    await ecs.create_service(**request)
    return "created", desired.name, f"on {revision.rsplit('/', 1)[-1]}"


async def _update_service(context: _Context, desired: DesiredService, action: Action) -> _Result:
    ecs = context.clients.ecs
    live = await _describe_service(context, desired.cluster, desired.name)
    if live is None:
        return await _create_service(context, desired, action)
    tags = ecs_tags(live.get("tags"))
    _refuse_unmanaged(tags, f"service {desired.name}")
    revision = await _revision_for(context, desired, action)
    changes: dict[str, Any] = {}
    if int(live.get("desiredCount", -1)) != desired.desired_count:
        changes["desiredCount"] = desired.desired_count
    if live.get("taskDefinition") != revision:
        changes["taskDefinition"] = revision  # always the full ARN, never family:revision
    live_constraints = [dict(c) for c in live.get("placementConstraints", ())]
    if live_constraints != [dict(c) for c in desired.placement_constraints]:
        changes["placementConstraints"] = [dict(c) for c in desired.placement_constraints]
    done = sorted(changes)
    if changes:
        await ecs.update_service(cluster=desired.cluster, service=desired.name, **changes)
    # The bookkeeping tags record what was applied; refresh them after the update.
    missing = _missing_tags(tags, _service_tags(desired, revision))
    if missing:
        await ecs.tag_resource(resourceArn=live["serviceArn"], tags=ecs_tag_list(missing))
        done.append("tags")
    return ("updated" if done else "unchanged"), desired.name, ", ".join(done)


async def _delete_service_now(context: _Context, live: Mapping[str, Any], cluster: str) -> None:
    ecs = context.clients.ecs
    name = str(live["serviceName"])
    if int(live.get("desiredCount", 0)) > 0:
        await ecs.update_service(cluster=cluster, service=name, desiredCount=0)
    await ecs.delete_service(cluster=cluster, service=name, force=True)


async def _delete_service(context: _Context, target: LiveService) -> _Result:
    live = await _describe_service(context, target.cluster, target.name)
    if live is None or live.get("status") == "DRAINING":
        return "unchanged", target.name, "already gone"
    _refuse_unmanaged(ecs_tags(live.get("tags")), f"service {target.name}")
    await _delete_service_now(context, live, target.cluster)
    return "deleted", target.name, ""


async def _replace_service(context: _Context, desired: DesiredService, action: Action) -> _Result:
    live = await _describe_service(context, desired.cluster, desired.name)
    if live is not None:
        _refuse_unmanaged(ecs_tags(live.get("tags")), f"service {desired.name}")
        if live.get("status") == "ACTIVE":
            await _delete_service_now(context, live, desired.cluster)
    _, name, detail = await _create_service(context, desired, action)
    return "replaced", name, detail
