"""Carrying out a plan: each action, in order, as AWS writes.

Owns: the write calls (create/update/delete of clusters, security groups, instances,
task definitions and services), each driven by the action's typed payload
(`controller.core.payloads`), their idempotency, and the ownership check before any
change. Must not: decide what to change or compare desired with live (the core's
`planning` and `diffs` did: a payload says exactly which write to send), or wait for
services to settle (`waiting`).

Idempotency cannot rest on AWS: moto ignores client tokens, `create_cluster` and
`create_service` with an existing name *replace* the resource, and a crash between a
write and the next observe leaves an intent half done. So every create reads first,
right before it writes, by name or by tags, and turns into "unchanged" when the intent
is already met (judged by the core's own predicates: `diffs.fits`,
`deployments.is_registered`, and `diffs.ingress_sync` / `diffs.tag_changes` for a group
or cluster found half made); an instance launch counts the cluster's live fitting
instances just before `run_instances`, then walks the market x subnet attempts of its
payload. Every update or delete re-reads the live tags and refuses a resource without
the managed-by tag (CONTRACT §5).

A failing action stops the plan: later actions often depend on earlier ones (a service
on its task definition). The report says what was done, what failed, and what was not
attempted; `ApplyReport.raise_for_error()` turns a failure into the exception the runner
retries or gives up on.
"""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

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
    describe_managed_instances,
    ec2_tags,
    ecs_tags,
    ingress_ranges,
    live_instance,
    live_task_definition,
    managed_filter,
)
from controller.core.diffs import fits, ingress_sync, tags_to_write
from controller.core.payloads import (
    CreateCluster,
    CreateSecurityGroup,
    CreateService,
    DeleteCluster,
    DeleteSecurityGroup,
    DeleteService,
    DeregisterTaskDefinition,
    ExistingRevision,
    LaunchInstance,
    NewRevision,
    RegisterTaskDefinition,
    ReplaceInstance,
    ReplaceSecurityGroup,
    RevisionRef,
    SyncIngress,
    TagCluster,
    TagInstance,
    TerminateInstance,
    UpdateSecurityGroup,
    UpdateService,
)
from controller.core.planning.deployments import is_registered
from controller.core.plans import PAST_TENSE, Action, Plan
from controller.core.states import (
    CLUSTER_TAG,
    MANAGED_BY,
    RETIRED_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_TAG,
    IngressRange,
    is_managed,
)

if TYPE_CHECKING:
    from types_aiobotocore_ec2.type_defs import IpPermissionTypeDef
    from types_aiobotocore_ec2.type_defs import TagTypeDef as Ec2Tag
    from types_aiobotocore_ecs.type_defs import TagTypeDef as EcsTag

log = structlog.get_logger(__name__)

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
    security_groups: dict[str, str] = field(default_factory=dict)  # cluster -> group id
    revisions: dict[tuple[str, str], str] = field(default_factory=dict)  # (family, hash) -> ARN


async def apply_plan(clients: AwsClients, plan: Plan) -> ApplyReport:
    """Carry out `plan.actions` in order; stop at the first failure. Each action's
    payload carries what its writes need."""
    context = _Context(clients=clients)
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
    match action.payload:
        case CreateCluster() as payload:
            return await _create_cluster(context, payload)
        case TagCluster() as payload:
            return await _tag_cluster(context, payload)
        case DeleteCluster() as payload:
            return await _delete_cluster(context, payload.name)
        case CreateSecurityGroup() as payload:
            return await _create_security_group(context, payload)
        case UpdateSecurityGroup() as payload:
            return await _update_security_group(context, payload)
        case ReplaceSecurityGroup() as payload:
            return await _replace_security_group(context, payload)
        case DeleteSecurityGroup() as payload:
            return await _delete_security_group(context, payload.group_id)
        case LaunchInstance() as payload:
            return await _create_instance(context, payload)
        case ReplaceInstance() as payload:
            return await _replace_instance(context, payload)
        case TerminateInstance() as payload:
            return await _terminate_instance(context, payload.instance_id)
        case TagInstance() as payload:
            return await _tag_instance(context, payload)
        case RegisterTaskDefinition() as payload:
            return await _register(context, payload)
        case DeregisterTaskDefinition() as payload:
            return await _deregister(context, payload.arn)
        case CreateService() as payload:
            return await _create_service(context, payload)
        case UpdateService() as payload:
            return await _update_service(context, payload)
        case DeleteService() as payload:
            return await _delete_service(context, payload)
    raise TerminalError(
        f"cannot {action.verb} {action.resource} {action.id}: the action carries no payload"
    )


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


# --- clusters -------------------------------------------------------------------------


async def _describe_cluster(context: _Context, name: str) -> Mapping[str, Any] | None:
    response = await context.clients.ecs.describe_clusters(clusters=[name], include=["TAGS"])
    found = [c for c in response.get("clusters", ()) if c.get("clusterName") == name]
    active = [c for c in found if c.get("status") != "INACTIVE"]
    candidates = active or found
    return candidates[0] if candidates else None


async def _create_cluster(context: _Context, payload: CreateCluster) -> _Result:
    ecs = context.clients.ecs
    live = await _describe_cluster(context, payload.name)
    if live is not None and live.get("status") != "INACTIVE":
        # create_cluster on an existing name would replace it (moto) and drop its tags.
        tags = ecs_tags(live.get("tags"))
        _refuse_unmanaged(tags, f"cluster {payload.name}")
        # Made by a pass that crashed before tagging it: what is left, by the core's diff.
        missing = tags_to_write(payload.tags, tags)
        if missing:
            await ecs.tag_resource(resourceArn=live["clusterArn"], tags=ecs_tag_list(missing))
            return "updated", payload.name, "existed; tags refreshed"
        return "unchanged", payload.name, "already exists"
    await ecs.create_cluster(clusterName=payload.name, tags=ecs_tag_list(payload.tags))
    return "created", payload.name, ""


async def _tag_cluster(context: _Context, payload: TagCluster) -> _Result:
    name = payload.name
    live = await _describe_cluster(context, name)
    if live is None or live.get("status") == "INACTIVE":
        if payload.create is None:
            return "unchanged", name, "cluster is gone: nothing recorded"
        return await _create_cluster(context, payload.create)
    live_tags = ecs_tags(live.get("tags"))
    _refuse_unmanaged(live_tags, f"cluster {name}")
    tags = tags_to_write(payload.tags, live_tags)
    if not tags:
        return "unchanged", name, "tags already written"
    await context.clients.ecs.tag_resource(resourceArn=live["clusterArn"], tags=ecs_tag_list(tags))
    return "updated", name, "tags"


async def _delete_cluster(context: _Context, name: str) -> _Result:
    live = await _describe_cluster(context, name)
    if live is None or live.get("status") == "INACTIVE":
        return "unchanged", name, "already gone"
    _refuse_unmanaged(ecs_tags(live.get("tags")), f"cluster {name}")
    await context.clients.ecs.delete_cluster(cluster=name)
    return "deleted", name, ""


# --- security groups ------------------------------------------------------------------


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


async def _sync_ingress(context: _Context, group_id: str, sync: SyncIngress) -> list[str]:
    """Authorize, then revoke, exactly the ranges the payload names."""
    ec2 = context.clients.ec2
    done: list[str] = []
    if sync.authorize:
        await ec2.authorize_security_group_ingress(
            GroupId=group_id, IpPermissions=_permissions(sync.authorize, describe=True)
        )
        done.append(f"authorized {len(sync.authorize)} rule(s)")
    if sync.revoke:
        await ec2.revoke_security_group_ingress(
            GroupId=group_id, IpPermissions=_permissions(sync.revoke, describe=False)
        )
        done.append(f"revoked {len(sync.revoke)} rule(s)")
    return done


async def _create_security_group(context: _Context, payload: CreateSecurityGroup) -> _Result:
    desired = payload.desired
    # What was applied is recorded once its rules are in: a group read in between (by
    # another key's level) must not look like one whose rules someone revoked (drift).
    record = {k: v for k, v in desired.tags.items() if k == SPEC_HASH_TAG}
    ownership = {k: v for k, v in desired.tags.items() if k != SPEC_HASH_TAG}
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
        # Made by a pass that crashed before its rules: what is left, by the core's sync.
        remaining = ingress_sync(desired.ingress, ingress_ranges(group.get("IpPermissions", ())))
        done = await _sync_ingress(context, group_id, remaining)
        if tags_to_write(record, ec2_tags(group.get("Tags"))):
            await context.clients.ec2.create_tags(Resources=[group_id], Tags=ec2_tag_list(record))
            done.append("tags")
        return ("updated" if done else "unchanged"), group_id, "; ".join(done) or "already exists"
    try:
        response = await context.clients.ec2.create_security_group(
            GroupName=desired.name,
            Description=desired.description,
            VpcId=desired.vpc_id,
            TagSpecifications=[{"ResourceType": "security-group", "Tags": ec2_tag_list(ownership)}],
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
    await _sync_ingress(context, group_id, payload.ingress)
    if record:
        await context.clients.ec2.create_tags(Resources=[group_id], Tags=ec2_tag_list(record))
    return "created", group_id, ""


async def _update_security_group(context: _Context, payload: UpdateSecurityGroup) -> _Result:
    group_id = payload.group_id
    groups = await _describe_groups(context, GroupIds=[group_id])
    if not groups:
        return await _create_security_group(context, payload.create)
    _refuse_unmanaged(ec2_tags(groups[0].get("Tags")), f"security group {group_id}")
    context.security_groups[payload.cluster] = group_id
    done = await _sync_ingress(context, group_id, payload.ingress)
    if payload.tags:
        await context.clients.ec2.create_tags(Resources=[group_id], Tags=ec2_tag_list(payload.tags))
        done.append("tags")
    return ("updated" if done else "unchanged"), group_id, "; ".join(done)


async def _replace_security_group(context: _Context, payload: ReplaceSecurityGroup) -> _Result:
    """A group cannot move VPC: create the new one, then delete the old one if nothing
    uses it any more (instances in the old VPC keep it until they are replaced)."""
    _, new_id, _ = await _create_security_group(context, payload.create)
    try:
        await _delete_security_group(context, payload.group_id)
    except ClientError as exc:
        if error_code(exc) != "DependencyViolation":
            raise
        return "replaced", payload.group_id, f"by {new_id}; the old group is still in use"
    return "replaced", payload.group_id, f"by {new_id}"


async def _delete_security_group(context: _Context, group_id: str) -> _Result:
    try:
        groups = await _describe_groups(context, GroupIds=[group_id])
    except ClientError as exc:
        if error_code(exc) == "InvalidGroup.NotFound":
            return "unchanged", group_id, "already gone"
        raise
    if not groups:
        return "unchanged", group_id, "already gone"
    _refuse_unmanaged(ec2_tags(groups[0].get("Tags")), f"security group {group_id}")
    await context.clients.ec2.delete_security_group(GroupId=group_id)
    return "deleted", group_id, ""


async def _launch_groups(context: _Context, payload: LaunchInstance) -> list[str]:
    """The payload's groups; none named: the cluster's managed group, created by an
    earlier action of this apply (or of a pass that crashed after creating it)."""
    if payload.security_group_ids:
        return list(payload.security_group_ids)
    cluster = payload.fleet.cluster
    if cluster in context.security_groups:
        return [context.security_groups[cluster]]
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
    return [group_id]


# --- instances ------------------------------------------------------------------------


async def _create_instance(context: _Context, payload: LaunchInstance) -> _Result:
    fleet = payload.fleet
    # Re-check by tags right before launching: a crashed pass, or the previous action
    # of this one, may already have launched what this action asks for.
    alive = await describe_managed_instances(
        context.clients, cluster=fleet.cluster, states=ALIVE_STATES
    )
    fitting = [raw for raw in alive if fits(live_instance(raw), fleet)]
    if len(fitting) >= fleet.count:
        return "unchanged", fleet.cluster, f"{len(fitting)} matching instance(s) already live"
    instance_id, detail = await _launch(context, payload, extra_tags={})
    return "created", instance_id, detail


async def _replace_instance(context: _Context, payload: ReplaceInstance) -> _Result:
    old = payload.instance_id
    alive = await describe_managed_instances(
        context.clients, cluster=payload.launch.fleet.cluster, states=ALIVE_STATES
    )
    replacement = next(
        (raw for raw in alive if ec2_tags(raw.get("Tags")).get(REPLACES_TAG) == old), None
    )
    if replacement is not None:
        new_id, detail = str(replacement["InstanceId"]), "replacement already launched"
    else:
        new_id, detail = await _launch(context, payload.launch, extra_tags={REPLACES_TAG: old})
    await _terminate_instance(context, old)
    return "replaced", old, f"by {new_id}" + (f"; {detail}" if detail else "")


async def _launch(
    context: _Context, payload: LaunchInstance, *, extra_tags: Mapping[str, str]
) -> tuple[str, str]:
    """Launch one instance, walking the payload's attempts (market x subnet, in the
    core's order) until one is not refused for capacity. Returns the instance id and
    how it was launched."""
    fleet = payload.fleet
    tags = ec2_tag_list({**fleet.tags, **extra_tags})
    request: dict[str, Any] = {
        "ImageId": fleet.image_id,
        "InstanceType": fleet.instance_type,
        "MinCount": 1,
        "MaxCount": 1,
        "IamInstanceProfile": {"Name": fleet.instance_profile},
        "SecurityGroupIds": await _launch_groups(context, payload),
        # Plain text: botocore base64-encodes RunInstances UserData itself.
        "UserData": fleet.user_data,
        "TagSpecifications": [
            {"ResourceType": "instance", "Tags": tags},
            {"ResourceType": "volume", "Tags": tags},
        ],
    }
    if fleet.key_name:
        request["KeyName"] = fleet.key_name
    refusals: list[str] = []
    for attempt in payload.attempts:
        market, subnet = attempt.market, attempt.subnet_id
        call = dict(request)
        if subnet is not None:
            call["SubnetId"] = subnet
        if market == "spot":
            call["InstanceMarketOptions"] = SPOT_OPTIONS
        # A fresh token per attempt: botocore's own retries of this call reuse it
        # (real EC2 then launches once); a later attempt is a new intent.
        call["ClientToken"] = uuid.uuid4().hex
        try:
            response = await context.clients.ec2.run_instances(**call)
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
    # Ours to retire: a terminated instance without this tag was taken away by someone.
    await context.clients.ec2.create_tags(
        Resources=[instance_id], Tags=ec2_tag_list({RETIRED_TAG: "true"})
    )
    await context.clients.ec2.terminate_instances(InstanceIds=[instance_id])
    return "deleted", instance_id, "terminated"


async def _tag_instance(context: _Context, payload: TagInstance) -> _Result:
    instance_id = payload.instance_id
    raw = await _describe_instance(context, instance_id)
    if raw is None or raw.get("State", {}).get("Name") in ("shutting-down", "terminated"):
        return "unchanged", instance_id, "instance is gone"
    _refuse_unmanaged(ec2_tags(raw.get("Tags")), f"instance {instance_id}")
    await context.clients.ec2.create_tags(Resources=[instance_id], Tags=ec2_tag_list(payload.tags))
    return "updated", instance_id, "tags"


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


async def _registered(context: _Context, new: NewRevision) -> str | None:
    """The ARN of the revision `new` asks for if the family's latest is it."""
    latest = await _latest_revision(context, new.family)
    revision = live_task_definition(latest) if latest is not None else None
    return revision.arn if revision is not None and is_registered(revision, new) else None


async def _register(context: _Context, payload: RegisterTaskDefinition) -> _Result:
    desired = payload.desired
    new = NewRevision(family=desired.family, content_hash=desired.content_hash)
    # Re-check: the latest revision may already be this content (a crashed pass
    # registered it and never got to the service).
    arn = await _registered(context, new)
    if arn is not None:
        context.revisions[(new.family, new.content_hash)] = arn
        return "unchanged", arn, "already registered"
    response = await context.clients.ecs.register_task_definition(
        **dict(desired.content), tags=ecs_tag_list(desired.tags)
    )
    arn = response["taskDefinition"]["taskDefinitionArn"]
    context.revisions[(new.family, new.content_hash)] = arn
    return "created", arn, ""


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


async def _revision_arn(context: _Context, revision: RevisionRef) -> str:
    """The ARN the payload's revision stands for: named, or registered by this apply
    (or by a pass that crashed after registering it)."""
    if isinstance(revision, ExistingRevision):
        return revision.arn
    known = context.revisions.get((revision.family, revision.content_hash))
    if known is None:
        known = await _registered(context, revision)
    if known is None:
        raise TerminalError(
            f"no ACTIVE revision of {revision.family} with content hash "
            f"{revision.content_hash} (the plan should have registered it first)"
        )
    context.revisions[(revision.family, revision.content_hash)] = known
    return known


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


async def _create_service(context: _Context, payload: CreateService) -> _Result:
    desired = payload.desired
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
    revision = await _revision_arn(context, payload.revision)
    request: dict[str, Any] = {
        "cluster": desired.cluster,
        "serviceName": desired.name,
        "taskDefinition": revision,
        "desiredCount": desired.desired_count,
        "launchType": "EC2",
        # A rollout whose tasks keep failing stops and rolls back; `waiting` reports it.
        "deploymentConfiguration": dict(desired.deployment_configuration),
        "tags": ecs_tag_list({**desired.tags, TASK_DEFINITION_TAG: revision}),
    }
    if desired.placement_constraints:
        request["placementConstraints"] = [dict(c) for c in desired.placement_constraints]
    if desired.placement_strategy:
        request["placementStrategy"] = [dict(s) for s in desired.placement_strategy]
    await ecs.create_service(**request)
    return "created", desired.name, f"on {revision.rsplit('/', 1)[-1]}"


async def _update_service(context: _Context, payload: UpdateService) -> _Result:
    desired = payload.desired
    ecs = context.clients.ecs
    live = await _describe_service(context, desired.cluster, desired.name)
    if live is None:
        return await _create_service(context, payload.create)
    _refuse_unmanaged(ecs_tags(live.get("tags")), f"service {desired.name}")
    revision = await _revision_arn(context, payload.revision)
    changes: dict[str, Any] = {}
    if payload.desired_count is not None:
        changes["desiredCount"] = payload.desired_count
    if payload.set_task_definition:
        changes["taskDefinition"] = revision  # always the full ARN, never family:revision
    if payload.placement_constraints is not None:
        changes["placementConstraints"] = [dict(c) for c in payload.placement_constraints]
    if payload.placement_strategy is not None:
        # An empty list removes every strategy (UpdateService's documented way).
        changes["placementStrategy"] = [dict(s) for s in payload.placement_strategy]
    if payload.deployment_configuration is not None:
        changes["deploymentConfiguration"] = dict(payload.deployment_configuration)
    done = sorted(changes)
    if changes:
        await ecs.update_service(cluster=desired.cluster, service=desired.name, **changes)
    # The bookkeeping tags record what was applied; refresh them after the update.
    tags = dict(payload.tags)
    if payload.record_revision:
        tags[TASK_DEFINITION_TAG] = revision
    if tags:
        await ecs.tag_resource(resourceArn=live["serviceArn"], tags=ecs_tag_list(tags))
        done.append("tags")
    return ("updated" if done else "unchanged"), desired.name, ", ".join(done)


async def _delete_service(context: _Context, payload: DeleteService) -> _Result:
    ecs = context.clients.ecs
    live = await _describe_service(context, payload.cluster, payload.name)
    if live is None or live.get("status") == "DRAINING":
        return "unchanged", payload.name, "already gone"
    _refuse_unmanaged(ecs_tags(live.get("tags")), f"service {payload.name}")
    if int(live.get("desiredCount", 0)) > 0:
        await ecs.update_service(cluster=payload.cluster, service=payload.name, desiredCount=0)
    await ecs.delete_service(cluster=payload.cluster, service=payload.name, force=True)
    return "deleted", payload.name, ""
