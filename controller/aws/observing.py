"""Reading the live state of the account: facts first, then the observed model.

Owns: every read the controller makes to build `AccountFacts` and `ObservedState`,
batched and paginated defensively (moto enforces neither the page sizes nor the batch
limits, real AWS does): `describe_clusters` 100 names per call, `describe_services` 10,
`describe_container_instances` and `describe_tasks` 100, list calls through paginators
at their largest page size.
Must not: write to AWS, or judge what it reads (managed or not, drifted or not): that is
the planner's. It does filter on the managed-by tag where AWS can filter server-side
(security groups, instances), because those are only ever looked up as ours.

Cost of a no-op observe (no families to read): list_clusters + describe_clusters +
describe_security_groups + describe_instances + per ACTIVE cluster (list_services +
ceil(services / 10) describe_services + list_container_instances +
ceil(instances / 100) describe_container_instances + ceil(tasks / 100) list_tasks +
ceil(tasks / 100) describe_tasks): what runs where, for the fleet and placement logic.
Task definitions are read only for the families the planner asks for
(`observe_task_definitions`).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from collections.abc import Awaitable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import structlog

from controller.aws.clients import AwsClients
from controller.aws.errors import translating_errors
from controller.core.normalising import (
    normalise_deployment_configuration,
    normalise_placement_constraints,
    normalise_placement_strategy,
    normalise_task_definition,
)
from controller.core.states import (
    CLUSTER_TAG,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    AccountFacts,
    IngressRange,
    LiveCluster,
    LiveContainerInstance,
    LiveDeployment,
    LiveInstance,
    LiveSecurityGroup,
    LiveService,
    LiveTask,
    LiveTaskDefinition,
    ObservedState,
    family_of,
    is_managed,
)

if TYPE_CHECKING:
    from types_aiobotocore_ec2.type_defs import FilterTypeDef

log = structlog.get_logger(__name__)

_T = TypeVar("_T")

DESCRIBE_CLUSTERS_BATCH = 100
DESCRIBE_SERVICES_BATCH = 10
DESCRIBE_CONTAINER_INSTANCES_BATCH = 100
DESCRIBE_TASKS_BATCH = 100
LIST_PAGE = 100
GET_PARAMETERS_BATCH = 10
# From this many families to read, list the account's families first (see
# `read_task_definitions`).
LIST_FAMILIES_FROM = 10
# Terminated instances too (EC2 shows them for about an hour): one that is ours and was
# not retired by us was taken away behind our back (`planning.fleets.lost_instances`).
LIVE_INSTANCE_STATES = (
    "pending",
    "running",
    "shutting-down",
    "stopping",
    "stopped",
    "terminated",
)


def chunks(items: Sequence[_T], size: int) -> list[Sequence[_T]]:
    return [items[start : start + size] for start in range(0, len(items), size)]


def ecs_tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(tag["key"]): str(tag.get("value", "")) for tag in tags or ()}


def ec2_tags(tags: Iterable[Mapping[str, Any]] | None) -> dict[str, str]:
    return {str(tag["Key"]): str(tag.get("Value", "")) for tag in tags or ()}


def managed_filter() -> FilterTypeDef:
    return {"Name": f"tag:{MANAGED_BY}", "Values": [MANAGED_BY_VALUE]}


async def _gather(aws: Iterable[Awaitable[_T]]) -> list[_T]:
    return list(await asyncio.gather(*aws))


# --- facts ----------------------------------------------------------------------------


async def read_facts(
    clients: AwsClients, *, ami_parameters: Iterable[str], subnet_ids: Iterable[str] = ()
) -> AccountFacts:
    """Region, account, VPCs and their CIDRs, subnets, and the AMI ids SSM names.

    `subnet_ids` are those the specs name explicitly (their VPC is looked up); the
    default VPC's subnets are always read. A named subnet or an SSM parameter that does
    not exist is simply absent from the facts: it concerns only the clusters that name
    it (`desired` leaves them unresolved), never the account's other clusters.
    """
    account_id = await clients.account_id()
    with translating_errors():
        vpcs: list[Mapping[str, Any]] = []
        async for page in clients.ec2.get_paginator("describe_vpcs").paginate():
            vpcs.extend(page.get("Vpcs", ()))
        default_vpc = next((vpc["VpcId"] for vpc in vpcs if vpc.get("IsDefault")), None)
        named = sorted(set(subnet_ids))
        subnet_reads: list[Awaitable[list[Mapping[str, Any]]]] = []
        if default_vpc:
            subnet_reads.append(
                _subnets(clients, Filters=[{"Name": "vpc-id", "Values": [default_vpc]}])
            )
        if named:
            # A filter, not SubnetIds: one missing subnet must not fail the whole read.
            subnet_reads.append(_subnets(clients, Filters=[{"Name": "subnet-id", "Values": named}]))
        subnet_lists = await _gather(subnet_reads)
        ami_ids = await _read_parameters(clients, sorted(set(ami_parameters)))
    subnet_vpcs: dict[str, str] = {}
    default_subnets: list[str] = []
    for subnets in subnet_lists:
        for subnet in subnets:
            subnet_vpcs[subnet["SubnetId"]] = subnet["VpcId"]
            if subnet["VpcId"] == default_vpc:
                default_subnets.append(subnet["SubnetId"])
    return AccountFacts(
        region=clients.region,
        account_id=account_id,
        default_vpc_id=default_vpc,
        vpc_cidrs={vpc["VpcId"]: vpc["CidrBlock"] for vpc in vpcs},
        subnet_vpcs=dict(sorted(subnet_vpcs.items())),
        default_subnet_ids=tuple(sorted(set(default_subnets))),
        ami_ids=ami_ids,
    )


async def _subnets(clients: AwsClients, **kwargs: Any) -> list[Mapping[str, Any]]:
    subnets: list[Mapping[str, Any]] = []
    async for page in clients.ec2.get_paginator("describe_subnets").paginate(**kwargs):
        subnets.extend(page.get("Subnets", ()))
    return subnets


async def _read_parameters(clients: AwsClients, names: Sequence[str]) -> dict[str, str]:
    """The values of the parameters that exist; SSM lists the others as invalid."""
    values: dict[str, str] = {}
    for batch in chunks(names, GET_PARAMETERS_BATCH):
        response = await clients.ssm.get_parameters(Names=list(batch))
        for parameter in response.get("Parameters", ()):
            values[parameter["Name"]] = parameter["Value"]
    return values


# --- observed state -------------------------------------------------------------------


async def observe(
    clients: AwsClients,
    *,
    facts: AccountFacts,
    cluster_names: Iterable[str],
    families: Iterable[str] = (),
    service_names: Mapping[str, Iterable[str]] | None = None,
) -> ObservedState:
    """The observed model: the clusters named (and every managed one), their services
    (and those of `service_names`, by cluster, even when deleted: see `read_services`),
    managed security groups and instances, and the ACTIVE revisions of `families` (none
    by default: see `observe_task_definitions`)."""
    expected = service_names or {}
    with translating_errors():
        clusters, security_groups, instances, task_definitions = await asyncio.gather(
            read_clusters(clients, names=cluster_names),
            read_security_groups(clients),
            read_instances(clients),
            read_task_definitions(clients, families=families),
        )
        active = sorted(name for name, cluster in clusters.items() if cluster.status == "ACTIVE")
        # One round for every cluster's services, container instances and tasks.
        per_cluster, container_instances, tasks = await asyncio.gather(
            _gather(
                read_services(clients, cluster=name, expected=expected.get(name, ()))
                for name in active
            ),
            _gather(read_container_instances(clients, cluster=name) for name in active),
            _gather(read_tasks(clients, cluster=name) for name in active),
        )
    services = {key: svc for found in per_cluster for key, svc in found.items()}
    return ObservedState(
        facts=facts,
        clusters=clusters,
        security_groups=security_groups,
        instances=by_registration(instances, dict(zip(active, container_instances, strict=True))),
        services=services,
        task_definitions=task_definitions,
        container_instances=dict(zip(active, container_instances, strict=True)),
        tasks=dict(zip(active, tasks, strict=True)),
    )


async def observe_task_definitions(
    clients: AwsClients, observed: ObservedState, *, families: Iterable[str]
) -> ObservedState:
    """`observed` with the revisions of `families` read as well (phase 2 of a pass)."""
    wanted = set(families) - set(observed.task_definitions)
    if not wanted:
        return observed
    with translating_errors():
        read = await read_task_definitions(clients, families=wanted)
    return replace(observed, task_definitions={**observed.task_definitions, **read})


async def observe_revisions(
    clients: AwsClients,
    observed: ObservedState,
    *,
    newest_of: Iterable[str] = (),
    describe: Iterable[str] = (),
) -> ObservedState:
    """`observed` with the newest ACTIVE revision of the families `newest_of` and the
    revisions `describe` (ARNs) read as well."""
    families = sorted(set(newest_of) - set(observed.newest_revisions))
    arns = sorted(set(describe) - set(observed.described_revisions))
    if not (families or arns):
        return observed
    with translating_errors():
        newest = await newest_revisions(clients, families=families)
        described = await _gather(describe_task_definition(clients, arn=arn) for arn in arns)
    return replace(
        observed,
        newest_revisions={**observed.newest_revisions, **newest},
        described_revisions={
            **observed.described_revisions,
            **{revision.arn: revision for revision in described if revision is not None},
        },
    )


# Up to this many families, one listing each; beyond, one listing of the account's
# ACTIVE revisions (100 a page) costs fewer calls.
NEWEST_PER_FAMILY_UP_TO = 2


async def newest_revisions(
    clients: AwsClients, *, families: Sequence[str]
) -> dict[str, str | None]:
    """The ARN of each family's newest ACTIVE revision (None: it has none). A resync
    pays ceil(ACTIVE revisions / 100) calls for every family at once, not one each."""
    if not families:
        return {}
    if len(families) <= NEWEST_PER_FAMILY_UP_TO:
        found = await _gather(_newest_of_family(clients, family=family) for family in families)
        return dict(zip(families, found, strict=True))
    wanted = set(families)
    newest: dict[str, str | None] = dict.fromkeys(families)
    async for page in clients.ecs.get_paginator("list_task_definitions").paginate(
        status="ACTIVE", PaginationConfig={"PageSize": 100}
    ):
        for arn in page.get("taskDefinitionArns", ()):
            family = family_of(arn)
            if family in wanted and _revision_number(arn) > _revision_number(newest[family]):
                newest[family] = arn
    return newest


async def _newest_of_family(clients: AwsClients, *, family: str) -> str | None:
    """In one call on ECS (moto ignores `sort` and `maxResults` and lists every
    revision: the highest is taken either way)."""
    response = await clients.ecs.list_task_definitions(
        familyPrefix=family, status="ACTIVE", sort="DESC", maxResults=1
    )
    arns = [arn for arn in response.get("taskDefinitionArns", ()) if family_of(arn) == family]
    return max(arns, key=_revision_number, default=None)


def _revision_number(arn: str | None) -> int:
    return int(arn.rsplit(":", 1)[-1]) if arn else 0


async def read_clusters(clients: AwsClients, *, names: Iterable[str]) -> dict[str, LiveCluster]:
    """Clusters named here, plus every cluster carrying the managed-by tag."""
    named = set(names)
    arns: list[str] = []
    async for page in clients.ecs.get_paginator("list_clusters").paginate(
        PaginationConfig={"PageSize": 100}
    ):
        arns.extend(page.get("clusterArns", ()))
    listed_names = {arn.rsplit("/", 1)[-1] for arn in arns}
    # A named cluster that is not listed is described by name, so that it shows up in
    # `failures` (absent) rather than being silently skipped.
    identifiers = sorted(set(arns)) + sorted(named - listed_names)
    responses = await _gather(
        clients.ecs.describe_clusters(clusters=list(batch), include=["TAGS"])
        for batch in chunks(identifiers, DESCRIBE_CLUSTERS_BATCH)
    )
    clusters: dict[str, LiveCluster] = {}
    for response in responses:
        for raw in response.get("clusters", ()):
            cluster = LiveCluster(
                name=raw["clusterName"],
                arn=raw["clusterArn"],
                status=raw.get("status", "ACTIVE"),
                tags=ecs_tags(raw.get("tags")),
            )
            if cluster.name not in named and cluster.tags.get(MANAGED_BY) != MANAGED_BY_VALUE:
                continue
            previous = clusters.get(cluster.name)
            # moto (and briefly real ECS) can list an INACTIVE and an ACTIVE cluster of
            # one name; the ACTIVE one is the one that matters.
            if previous is None or previous.status != "ACTIVE":
                clusters[cluster.name] = cluster
    return dict(sorted(clusters.items()))


async def read_services(
    clients: AwsClients, *, cluster: str, expected: Iterable[str] = ()
) -> dict[tuple[str, str], LiveService]:
    """The services of one cluster that are not deleted (ACTIVE, or DRAINING while
    being deleted), managed or not, by (cluster, name); and the `expected` ones (the
    specs') that are deleted but still described as INACTIVE and ours, so that a
    service deleted behind our back reads as drift, not as never created. ECS lists no
    INACTIVE service (moto does): those are described by name."""
    arns: list[str] = []
    async for page in clients.ecs.get_paginator("list_services").paginate(
        cluster=cluster, PaginationConfig={"PageSize": 100}
    ):
        arns.extend(page.get("serviceArns", ()))
    listed = {arn.rsplit("/", 1)[-1] for arn in arns}
    specs_names = set(expected)
    wanted = sorted(set(arns)) + sorted(specs_names - listed)
    raws = await describe_services(clients, cluster=cluster, services=wanted)
    services: dict[tuple[str, str], LiveService] = {}
    gone: dict[tuple[str, str], LiveService] = {}
    for raw in raws:
        service = live_service(raw, cluster=cluster)
        if service.status != "INACTIVE":
            services[(cluster, service.name)] = service
        elif service.name in specs_names and is_managed(service.tags):
            gone[(cluster, service.name)] = service  # moto lists and describes those too
    return {**gone, **services}


async def describe_services(
    clients: AwsClients, *, cluster: str, services: Sequence[str]
) -> list[Mapping[str, Any]]:
    responses = await _gather(
        clients.ecs.describe_services(cluster=cluster, services=list(batch), include=["TAGS"])
        for batch in chunks(services, DESCRIBE_SERVICES_BATCH)
    )
    return [raw for response in responses for raw in response.get("services", ())]


def live_service(raw: Mapping[str, Any], *, cluster: str) -> LiveService:
    return LiveService(
        arn=raw["serviceArn"],
        name=raw["serviceName"],
        cluster=cluster,
        status=raw.get("status", "ACTIVE"),
        desired_count=int(raw.get("desiredCount", 0)),
        running_count=int(raw.get("runningCount", 0)),
        pending_count=int(raw.get("pendingCount", 0)),
        task_definition=raw.get("taskDefinition", ""),
        deployments=tuple(
            LiveDeployment(
                id=d.get("id", ""),
                status=d.get("status", ""),
                task_definition=d.get("taskDefinition", ""),
                desired_count=int(d.get("desiredCount", 0)),
                running_count=int(d.get("runningCount", 0)),
                pending_count=int(d.get("pendingCount", 0)),
                rollout_state=d.get("rolloutState"),
                rollout_state_reason=d.get("rolloutStateReason"),
            )
            for d in raw.get("deployments", ())
        ),
        placement_constraints=normalise_placement_constraints(raw.get("placementConstraints")),
        placement_strategy=normalise_placement_strategy(raw.get("placementStrategy")),
        deployment_configuration=normalise_deployment_configuration(
            raw.get("deploymentConfiguration")
        ),
        tags=ecs_tags(raw.get("tags")),
    )


async def list_container_instance_arns(clients: AwsClients, *, cluster: str) -> list[str]:
    """The cluster's container instances (every status ECS lists), sorted."""
    arns: list[str] = []
    async for page in clients.ecs.get_paginator("list_container_instances").paginate(
        cluster=cluster, PaginationConfig={"PageSize": LIST_PAGE}
    ):
        arns.extend(page.get("containerInstanceArns", ()))
    return sorted(set(arns))


async def describe_container_instances(
    clients: AwsClients, *, cluster: str, arns: Sequence[str]
) -> list[Mapping[str, Any]]:
    """The container instances of `arns`, 100 per call; ones gone are left out."""
    responses = await _gather(
        clients.ecs.describe_container_instances(cluster=cluster, containerInstances=list(batch))
        for batch in chunks(arns, DESCRIBE_CONTAINER_INSTANCES_BATCH)
    )
    return [raw for response in responses for raw in response.get("containerInstances", ())]


async def list_running_task_arns(clients: AwsClients, *, cluster: str) -> list[str]:
    """The cluster's tasks that are meant to run (desiredStatus RUNNING), sorted."""
    arns: list[str] = []
    async for page in clients.ecs.get_paginator("list_tasks").paginate(
        cluster=cluster, desiredStatus="RUNNING", PaginationConfig={"PageSize": LIST_PAGE}
    ):
        arns.extend(page.get("taskArns", ()))
    return sorted(set(arns))


async def describe_tasks(
    clients: AwsClients, *, cluster: str, arns: Sequence[str]
) -> list[Mapping[str, Any]]:
    """The tasks of `arns`, 100 per call. Tasks gone since the list come back in
    `failures` and are left out. moto's `describe_tasks` ignores the cluster, so a
    caller that must not see other clusters' tasks checks `in_cluster`."""
    responses = await _gather(
        clients.ecs.describe_tasks(cluster=cluster, tasks=list(batch))
        for batch in chunks(arns, DESCRIBE_TASKS_BATCH)
    )
    return [raw for response in responses for raw in response.get("tasks", ())]


def in_cluster(cluster_arn: str, cluster: str) -> bool:
    """Whether a `clusterArn` (or bare name) is `cluster`: moto's `list_tasks` matches
    cluster names as substrings."""
    return cluster_arn == cluster or cluster_arn.endswith(f"/{cluster}")


async def read_container_instances(
    clients: AwsClients, *, cluster: str
) -> tuple[LiveContainerInstance, ...]:
    """The cluster's container instances (every status ECS lists), by ARN."""
    arns = await list_container_instance_arns(clients, cluster=cluster)
    found = await describe_container_instances(clients, cluster=cluster, arns=arns)
    live = (live_container_instance(raw, cluster=cluster) for raw in found)
    return tuple(sorted(live, key=lambda i: i.arn))


def _resources(resources: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    return {
        str(r["name"]): int(r.get("integerValue", 0))
        for r in resources
        if r.get("type", "INTEGER") == "INTEGER" and "name" in r
    }


def live_container_instance(raw: Mapping[str, Any], *, cluster: str) -> LiveContainerInstance:
    return LiveContainerInstance(
        arn=str(raw["containerInstanceArn"]),
        cluster=cluster,
        ec2_instance_id=str(raw.get("ec2InstanceId", "")),
        status=str(raw.get("status", "ACTIVE")),
        agent_connected=bool(raw.get("agentConnected", False)),
        running_tasks=int(raw.get("runningTasksCount", 0)),
        pending_tasks=int(raw.get("pendingTasksCount", 0)),
        registered=_resources(raw.get("registeredResources", ())),
        remaining=_resources(raw.get("remainingResources", ())),
    )


async def read_tasks(clients: AwsClients, *, cluster: str) -> tuple[LiveTask, ...]:
    """The cluster's tasks that are meant to run (desired RUNNING), by ARN."""
    arns = await list_running_task_arns(clients, cluster=cluster)
    found = await describe_tasks(clients, cluster=cluster, arns=arns)
    live = (
        live_task(raw, cluster=cluster)
        for raw in found
        if in_cluster(str(raw.get("clusterArn", cluster)), cluster)
    )
    return tuple(sorted(live, key=lambda t: t.arn))


def live_task(raw: Mapping[str, Any], *, cluster: str) -> LiveTask:
    return LiveTask(
        arn=str(raw["taskArn"]),
        cluster=cluster,
        group=str(raw.get("group", "")),
        task_definition=str(raw.get("taskDefinitionArn", "")),
        container_instance=raw.get("containerInstanceArn") or None,
        last_status=str(raw.get("lastStatus", "")),
        desired_status=str(raw.get("desiredStatus", "")),
    )


async def read_security_groups(clients: AwsClients) -> dict[str, LiveSecurityGroup]:
    """Managed security groups, by their cluster tag (the lowest id wins a duplicate)."""
    groups: list[LiveSecurityGroup] = []
    async for page in clients.ec2.get_paginator("describe_security_groups").paginate(
        Filters=[managed_filter()]
    ):
        groups.extend(live_security_group(raw) for raw in page.get("SecurityGroups", ()))
    by_cluster: dict[str, LiveSecurityGroup] = {}
    for group in sorted(groups, key=lambda g: g.group_id):
        cluster = group.tags.get(CLUSTER_TAG)
        if not cluster:
            continue
        if cluster in by_cluster:
            log.warning(
                "observe.duplicate_security_group",
                cluster=cluster,
                kept=by_cluster[cluster].group_id,
                ignored=group.group_id,
            )
            continue
        by_cluster[cluster] = group
    return by_cluster


def live_security_group(raw: Mapping[str, Any]) -> LiveSecurityGroup:
    return LiveSecurityGroup(
        group_id=raw["GroupId"],
        name=raw.get("GroupName", ""),
        vpc_id=raw.get("VpcId", ""),
        ranges=ingress_ranges(raw.get("IpPermissions", ())),
        tags=ec2_tags(raw.get("Tags")),
    )


def ingress_ranges(permissions: Iterable[Mapping[str, Any]]) -> frozenset[IngressRange]:
    """A group's `IpPermissions` as read, one range per (permission, CIDR)."""
    ranges: set[IngressRange] = set()
    for permission in permissions:
        protocol = str(permission.get("IpProtocol", "-1"))
        first = int(permission.get("FromPort", -1))
        last = int(permission.get("ToPort", first))
        for cidr in permission.get("IpRanges", ()):
            ranges.add(IngressRange(protocol, first, last, str(cidr["CidrIp"])))
    return frozenset(ranges)


async def read_instances(clients: AwsClients) -> dict[str, tuple[LiveInstance, ...]]:
    """Managed instances (terminated ones included), by their cluster tag, oldest first;
    those whose cluster tag was removed under the key "" (see `by_registration`)."""
    by_cluster: dict[str, list[LiveInstance]] = defaultdict(list)
    for raw in await describe_managed_instances(clients):
        instance = live_instance(raw)
        by_cluster[instance.tags.get(CLUSTER_TAG, "")].append(instance)
    return {
        cluster: tuple(sorted(found, key=lambda i: (i.launch_time, i.instance_id)))
        for cluster, found in sorted(by_cluster.items())
    }


def by_registration(
    instances: Mapping[str, tuple[LiveInstance, ...]],
    container_instances: Mapping[str, tuple[LiveContainerInstance, ...]],
) -> dict[str, tuple[LiveInstance, ...]]:
    """Managed instances whose cluster tag someone removed, put back under the cluster
    ECS has them registered in (so that the tag is restored, not the instance lost)."""
    untagged = {i.instance_id: i for i in instances.get("", ())}
    result = {cluster: found for cluster, found in instances.items() if cluster}
    for cluster, registered in container_instances.items():
        joined = [
            untagged.pop(ci.ec2_instance_id) for ci in registered if ci.ec2_instance_id in untagged
        ]
        if joined:
            merged = (*result.get(cluster, ()), *joined)
            result[cluster] = tuple(sorted(merged, key=lambda i: (i.launch_time, i.instance_id)))
    return result


async def describe_managed_instances(
    clients: AwsClients, *, cluster: str | None = None, states: Sequence[str] = LIVE_INSTANCE_STATES
) -> list[Mapping[str, Any]]:
    filters: list[FilterTypeDef] = [
        managed_filter(),
        {"Name": "instance-state-name", "Values": list(states)},
    ]
    if cluster is not None:
        filters.append({"Name": f"tag:{CLUSTER_TAG}", "Values": [cluster]})
    found: list[Mapping[str, Any]] = []
    async for page in clients.ec2.get_paginator("describe_instances").paginate(
        Filters=filters, PaginationConfig={"PageSize": 1000}
    ):
        for reservation in page.get("Reservations", ()):
            found.extend(reservation.get("Instances", ()))
    return found


def live_instance(raw: Mapping[str, Any]) -> LiveInstance:
    lifecycle: Literal["spot", "on-demand"] = (
        "spot" if raw.get("InstanceLifecycle") == "spot" else "on-demand"
    )
    launched = raw.get("LaunchTime")
    return LiveInstance(
        instance_id=raw["InstanceId"],
        state=raw.get("State", {}).get("Name", "pending"),
        instance_type=raw.get("InstanceType", ""),
        image_id=raw.get("ImageId", ""),
        lifecycle=lifecycle,
        private_ip=raw.get("PrivateIpAddress"),
        launch_time=launched.timestamp() if launched is not None else 0.0,
        tags=ec2_tags(raw.get("Tags")),
        subnet_id=raw.get("SubnetId"),
    )


async def read_task_definitions(
    clients: AwsClients, *, families: Iterable[str]
) -> dict[str, tuple[LiveTaskDefinition, ...]]:
    """ACTIVE revisions of exactly these families (not of every family sharing the
    prefix), oldest first; a family with none maps to an empty tuple."""
    wanted = sorted(set(families))
    present = set(wanted)
    if len(wanted) >= LIST_FAMILIES_FROM:
        # Many families at once (a cold start): one listing of the account's families
        # is cheaper than one list_task_definitions per family that mostly do not exist.
        present &= await list_families(clients)
    found = await _gather(read_family(clients, family=family) for family in sorted(present))
    revisions = dict(zip(sorted(present), found, strict=True))
    return {family: revisions.get(family, ()) for family in wanted}


async def list_families(clients: AwsClients) -> set[str]:
    """Families with ACTIVE revisions (moto ignores the status: a superset there)."""
    families: set[str] = set()
    async for page in clients.ecs.get_paginator("list_task_definition_families").paginate(
        status="ACTIVE", PaginationConfig={"PageSize": 100}
    ):
        families.update(page.get("families", ()))
    return families


async def read_family(clients: AwsClients, *, family: str) -> tuple[LiveTaskDefinition, ...]:
    arns: list[str] = []
    async for page in clients.ecs.get_paginator("list_task_definitions").paginate(
        familyPrefix=family, status="ACTIVE", sort="ASC", PaginationConfig={"PageSize": 100}
    ):
        arns.extend(arn for arn in page.get("taskDefinitionArns", ()) if family_of(arn) == family)
    described = await _gather(describe_task_definition(clients, arn=arn) for arn in arns)
    revisions = [revision for revision in described if revision is not None]
    return tuple(sorted(revisions, key=lambda r: r.revision))


async def describe_task_definition(clients: AwsClients, *, arn: str) -> LiveTaskDefinition | None:
    response = await clients.ecs.describe_task_definition(taskDefinition=arn, include=["TAGS"])
    return live_task_definition(response)


def live_task_definition(response: Mapping[str, Any]) -> LiveTaskDefinition | None:
    raw = response.get("taskDefinition")
    if not raw:
        return None
    return LiveTaskDefinition(
        arn=raw["taskDefinitionArn"],
        family=raw["family"],
        revision=int(raw["revision"]),
        status=raw.get("status", "ACTIVE"),
        content=normalise_task_definition(raw),
        tags=ecs_tags(response.get("tags")),
    )
