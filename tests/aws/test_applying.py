"""Applying plans on moto: idempotency by reading before writing, ownership, fallbacks."""

from __future__ import annotations

from typing import Any

import pytest
from aws_helpers import (
    CLUSTER,
    FAMILY,
    SERVICE,
    Fault,
    cluster_spec,
    demo_specs,
    deployment_spec,
    fault_front,
    tags_of,
)

from controller.aws.applying import REPLACES_TAG, apply_plan
from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.errors import TerminalError, TransientError
from controller.aws.observing import live_service
from controller.core.diffs import ingress_sync, merge_ranges
from controller.core.payloads import (
    CreateCluster,
    CreateSecurityGroup,
    DeleteService,
    ExistingRevision,
    ReplaceInstance,
    ReplaceSecurityGroup,
    SyncIngress,
    UpdateSecurityGroup,
    UpdateService,
)
from controller.core.planning.clusters import group_creation
from controller.core.plans import Action, Plan
from controller.core.states import LiveSecurityGroup
from controller.pipeline import read_world, reconcile_pass
from controller.sandbox.emulator import Emulator
from controller.settings import AwsSettings
from controller.specs.loading import SpecSet


def inventory(aws: Emulator) -> dict[str, Any]:
    """Everything of the walkthrough that exists, counted by kind."""
    ecs, ec2 = aws.boto3_client("ecs"), aws.boto3_client("ec2")
    clusters = ecs.describe_clusters(clusters=ecs.list_clusters()["clusterArns"])["clusters"]
    reservations = ec2.describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    services = []
    for cluster in clusters:
        arns = ecs.list_services(cluster=cluster["clusterName"])["serviceArns"]
        if arns:
            described = ecs.describe_services(cluster=cluster["clusterName"], services=arns)
            services += [s for s in described["services"] if s["status"] == "ACTIVE"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "tag:ecs-infer:managed-by", "Values": ["ecs-infer"]}]
    )["SecurityGroups"]
    return {
        "clusters": sorted(c["clusterName"] for c in clusters if c["status"] == "ACTIVE"),
        "security_groups": len(groups),
        "instances": sum(len(r["Instances"]) for r in reservations),
        "revisions": len(
            ecs.list_task_definitions(familyPrefix=FAMILY, status="ACTIVE")["taskDefinitionArns"]
        ),
        "services": sorted(s["serviceName"] for s in services),
    }


WALKTHROUGH = {
    "clusters": [CLUSTER],
    "security_groups": 1,
    "instances": 2,
    "revisions": 1,
    "services": [SERVICE],
}


@pytest.mark.parametrize("done", [1, 2, 3, 4, 5])
async def test_crash_mid_pass_then_a_new_pass_creates_no_duplicates(
    aws: Emulator, clients: AwsClients, done: int
) -> None:
    first = await reconcile_pass(demo_specs(), clients=clients, apply=False)
    partial = await apply_plan(clients, Plan(actions=first.plan.actions[:done]))
    assert partial.ok and len(partial.applied) == done
    resumed = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert resumed.report is not None and resumed.report.ok
    assert len(resumed.plan.actions) == 7 - done
    assert inventory(aws) == WALKTHROUGH
    final = await reconcile_pass(demo_specs(), clients=clients, apply=False)
    assert final.plan.in_sync


async def test_a_stale_plan_applied_twice_changes_nothing_the_second_time(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    """The pass crashed after applying everything but before recording it: the same plan
    runs again. Every create re-reads AWS and finds its intent met."""
    world = await read_world(demo_specs(), clients=clients)
    from controller.core.planning import plan

    planned = plan(world.desired, world.observed)
    await apply_plan(clients, planned)
    counter.reset()
    again = await apply_plan(clients, planned)
    assert again.ok, again.error
    assert [item.outcome for item in again.applied] == ["unchanged"] * 7
    assert counter.writes() == {}
    assert inventory(aws) == WALKTHROUGH


async def test_unmanaged_same_named_service_is_left_alone(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    # Our cluster, but someone else's service of the same name in it.
    cluster_only = SpecSet(clusters=demo_specs().clusters)
    await reconcile_pass(cluster_only, clients=clients, apply=True)
    ecs = aws.boto3_client("ecs")
    theirs = ecs.register_task_definition(
        family="theirs", containerDefinitions=[{"name": "x", "image": "x", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    ecs.create_service(cluster=CLUSTER, serviceName=SERVICE, taskDefinition=theirs, desiredCount=3)

    counter.reset()
    result = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert not any(a.resource == "service" for a in result.plan.actions)
    assert any("not managed" in w for w in result.plan.warnings)
    assert counter.count("CreateService") == counter.count("UpdateService") == 0
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE], include=["TAGS"])
    live = service["services"][0]
    assert (live["taskDefinition"], live["desiredCount"]) == (theirs, 3)
    assert not live.get("tags")

    # Even a plan that asks for it is refused: the shell re-reads the live tags.
    desired = result.desired.deployments["bert"].service
    seen = live_service(live, cluster=CLUSTER)
    forced = Plan(
        actions=(
            Action(
                verb="update",
                resource="service",
                id=SERVICE,
                reason="drift",
                cluster=CLUSTER,
                deployment="bert",
                payload=UpdateService(
                    desired=desired,
                    revision=ExistingRevision(arn=theirs),
                    desired_count=desired.desired_count,
                    tags=desired.tags,
                ),
                key="deployment/bert",
            ),
            Action(
                verb="delete",
                resource="service",
                id=SERVICE,
                reason="orphan",
                cluster=CLUSTER,
                payload=DeleteService(cluster=seen.cluster, name=seen.name),
                key="deployment/bert",
            ),
        )
    )
    counter.reset()
    report = await apply_plan(clients, forced)
    assert isinstance(report.error, TerminalError)
    assert "not ours" in str(report.error)
    assert [a.verb for a in report.not_attempted] == ["delete"]
    assert counter.writes() == {}


async def test_unmanaged_same_named_cluster_is_never_recreated(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    aws.boto3_client("ecs").create_cluster(clusterName=CLUSTER)
    result = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert counter.count("CreateCluster") == 0
    assert not any(a.resource == "cluster" for a in result.plan.actions)
    # A forced create is refused too, rather than replacing their cluster.
    desired = result.desired.clusters[CLUSTER]
    forced = Plan(
        actions=(
            Action(
                verb="create",
                resource="cluster",
                id=CLUSTER,
                reason="missing",
                cluster=CLUSTER,
                payload=CreateCluster(name=desired.name, tags=desired.tags),
                key=f"cluster/{CLUSTER}",
            ),
        )
    )
    report = await apply_plan(clients, forced)
    assert isinstance(report.error, TerminalError)
    assert counter.count("CreateCluster") == 0


async def test_removed_deployment_deletes_its_service_and_revisions(
    aws: Emulator, clients: AwsClients
) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    cluster_only = SpecSet(clusters=demo_specs().clusters)
    result = await reconcile_pass(cluster_only, clients=clients, apply=True)
    assert [(a.verb, a.resource) for a in result.plan.for_key("deployment/bert").actions] == [
        ("delete", "service"),
        ("delete", "task-definition"),
    ]
    assert result.report is not None and result.report.ok
    # The model ports go with the last deployment: the group is updated, not deleted.
    assert [(a.verb, a.resource) for a in result.plan.for_key(f"cluster/{CLUSTER}").actions] == [
        ("update", "security-group")
    ]
    assert inventory(aws) == {**WALKTHROUGH, "services": [], "revisions": 0}
    assert (await reconcile_pass(cluster_only, clients=clients, apply=False)).plan.in_sync


async def test_instance_type_change_replaces_each_instance_once(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    bigger = cluster_spec(
        capacity={
            "instanceType": "inf1.2xlarge",
            "market": "spot",
            "onDemandFallback": True,
            "minInstances": 2,
            "maxInstances": 10,
        }
    )
    specs = SpecSet(clusters={CLUSTER: bigger}, deployments=demo_specs().deployments)
    world = await read_world(specs, clients=clients)
    from controller.core.planning import plan

    planned = Plan(
        actions=tuple(
            a for a in plan(world.desired, world.observed).actions if a.resource == "instance"
        )
    )
    assert [a.verb for a in planned.actions] == ["replace", "replace"]
    counter.reset()
    report = await apply_plan(clients, planned)
    assert report.ok, report.error
    assert counter.count("RunInstances") == 2
    # The same (now stale) plan again: the replacements are found by their tag.
    again = await apply_plan(clients, planned)
    assert again.ok and counter.count("RunInstances") == 2
    ec2 = aws.boto3_client("ec2")
    alive = [
        i
        for r in ec2.describe_instances(
            Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
        )["Reservations"]
        for i in r["Instances"]
    ]
    assert sorted(i["InstanceType"] for i in alive) == ["inf1.2xlarge", "inf1.2xlarge"]
    replaced = {tags_of(i["Tags"], key="Key")[REPLACES_TAG] for i in alive}
    assert replaced == {
        a.payload.instance_id for a in planned.actions if isinstance(a.payload, ReplaceInstance)
    }
    assert len(replaced) == 2


async def test_spot_refused_everywhere_falls_back_to_on_demand(aws: Emulator) -> None:
    counter = RequestCounter()
    with fault_front() as (endpoint, faults):
        faults.add(
            "RunInstances",
            Fault(
                status="500 Internal Server Error",
                code="InsufficientInstanceCapacity",
                times=100,
                when="InstanceMarketOptions",
            ),
        )
        settings = AwsSettings(max_attempts=1, endpoint_url=endpoint)
        async with AwsClients(settings=settings, on_request=counter) as clients:
            result = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert result.report is not None and result.report.ok, result.report.error
    instances = [item for item in result.report.applied if item.action.resource == "instance"]
    assert [item.detail.split(" ")[0] for item in instances] == ["on-demand", "on-demand"]
    # Spot was tried in every default subnet first (6 in moto's us-east-1), per instance.
    assert counter.count("RunInstances", outcome="error") == 2 * 6
    reservations = aws.boto3_client("ec2").describe_instances(
        Filters=[{"Name": "instance-state-name", "Values": ["pending", "running"]}]
    )["Reservations"]
    assert all("InstanceLifecycle" not in i for r in reservations for i in r["Instances"])


async def test_spot_refused_without_fallback_is_a_transient_error(aws: Emulator) -> None:
    specs = SpecSet(
        clusters={
            CLUSTER: cluster_spec(
                capacity={
                    "instanceType": "inf1.xlarge",
                    "market": "spot",
                    "onDemandFallback": False,
                    "minInstances": 1,
                    "maxInstances": 2,
                }
            )
        },
        deployments={"bert": deployment_spec()},
    )
    with fault_front() as (endpoint, faults):
        faults.add(
            "RunInstances",
            Fault(status="400 Bad Request", code="SpotMaxPriceTooLow", times=100),
        )
        settings = AwsSettings(max_attempts=1, endpoint_url=endpoint)
        async with AwsClients(settings=settings) as clients:
            result = await reconcile_pass(specs, clients=clients, apply=True)
    assert result.report is not None
    assert isinstance(result.report.error, TransientError)
    assert result.report.failed is not None and result.report.failed.resource == "instance"
    # The task definition and service were not attempted after the failure.
    assert {a.resource for a in result.report.not_attempted} == {
        "task-definition",
        "service",
        "fleet",
    }
    with pytest.raises(TransientError):
        result.report.raise_for_error()


async def test_unmanaged_group_with_our_name_is_refused_and_nothing_launched(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    ec2 = aws.boto3_client("ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    ec2.create_security_group(
        GroupName=f"ecs-infer-{CLUSTER}", Description="someone else's", VpcId=vpc["VpcId"]
    )
    result = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert result.report is not None
    assert isinstance(result.report.error, TerminalError)
    assert result.report.failed is not None
    assert result.report.failed.resource == "security-group"
    assert counter.count("RunInstances") == 0
    assert counter.count("AuthorizeSecurityGroupIngress") == 0


async def test_noop_pass_cost_grows_with_batches_not_services(
    clients: AwsClients, counter: RequestCounter
) -> None:
    from aws_helpers import many_specs

    specs = many_specs(25)
    cold = await reconcile_pass(specs, clients=clients, apply=True)
    assert cold.report is not None and cold.report.ok, cold.report.error
    counter.reset()
    noop = await reconcile_pass(specs, clients=clients, apply=True)
    assert noop.plan.in_sync
    assert counter.writes() == {}
    # vpcs, subnets, ssm, list+describe clusters, groups, instances, list_services,
    # and ceil(25 / 10) = 3 describe_services; what runs where: list_container_instances
    # and list_tasks (moto registers no container instance and starts no task here);
    # one listing of the ACTIVE revisions, for a revision registered out of band.
    assert counter.count("ecs.DescribeServices") == 3
    assert counter.count("ecs.ListContainerInstances") == counter.count("ecs.ListTasks") == 1
    assert counter.count("ecs.ListTaskDefinitions") == 1
    assert counter.total == 11 + 2 + 1, counter.by_operation()


async def test_security_group_replace_creates_in_the_new_vpc_and_drops_the_old(
    aws: Emulator, clients: AwsClients
) -> None:
    from dataclasses import replace

    cluster_only = SpecSet(clusters=demo_specs().clusters)
    world = await read_world(cluster_only, clients=clients)
    desired = world.desired.clusters[CLUSTER].security_group
    assert desired is not None
    from controller.core.plans import Action as PlanAction

    created = await apply_plan(
        clients,
        Plan(
            actions=(
                PlanAction(
                    verb="create",
                    resource="security-group",
                    id=desired.name,
                    reason="missing",
                    cluster=CLUSTER,
                    payload=CreateSecurityGroup(
                        desired=desired,
                        ingress=SyncIngress(authorize=merge_ranges(desired.ingress)),
                    ),
                    key=f"cluster/{CLUSTER}",
                ),
            )
        ),
    )
    assert created.ok
    old = (await read_world(cluster_only, clients=clients)).observed.security_groups[CLUSTER]
    ec2 = aws.boto3_client("ec2")
    vpc = ec2.create_vpc(CidrBlock="10.7.0.0/16")["Vpc"]["VpcId"]
    moved = replace(desired, vpc_id=vpc)
    report = await apply_plan(
        clients,
        Plan(
            actions=(
                PlanAction(
                    verb="replace",
                    resource="security-group",
                    id=old.group_id,
                    reason="spec change",
                    cluster=CLUSTER,
                    payload=ReplaceSecurityGroup(
                        group_id=old.group_id,
                        create=CreateSecurityGroup(
                            desired=moved,
                            ingress=SyncIngress(authorize=merge_ranges(moved.ingress)),
                        ),
                    ),
                    key=f"cluster/{CLUSTER}",
                ),
            )
        ),
    )
    assert report.ok, report.error
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "tag:ecs-infer:cluster", "Values": [CLUSTER]}]
    )["SecurityGroups"]
    assert [(g["VpcId"], g["GroupName"]) for g in groups] == [(vpc, desired.name)]
    assert report.applied[0].outcome == "replaced"


async def test_neighbouring_ports_take_one_rule_and_a_removed_port_splits_it(
    aws: Emulator, clients: AwsClients
) -> None:
    """70 deployments on ports 8500-8569 fit a group's 60-rule limit as one range per
    CIDR; closing one port in the middle leaves two ranges, read back as the same ports."""
    from dataclasses import replace

    from controller.core.plans import Action as PlanAction
    from controller.core.states import IngressRule

    cluster_only = SpecSet(clusters=demo_specs().clusters)
    world = await read_world(cluster_only, clients=clients)
    desired = world.desired.clusters[CLUSTER].security_group
    assert desired is not None
    cidr = "172.31.0.0/16"

    def rules(ports: Any) -> tuple[IngressRule, ...]:
        return tuple(IngressRule(port=port, cidr=cidr) for port in sorted(ports))

    def group_action(
        verb: str, ingress: tuple[IngressRule, ...], live: LiveSecurityGroup | None = None
    ) -> Plan:
        wanted = replace(desired, ingress=ingress)
        create = group_creation(wanted)
        payload: CreateSecurityGroup | UpdateSecurityGroup = create
        if live is not None:  # the sync the planner makes: as EC2 stores the rules
            payload = UpdateSecurityGroup(
                group_id=live.group_id,
                cluster=CLUSTER,
                ingress=ingress_sync(ingress, live.ranges),
                tags={},
                create=create,
            )
        return Plan(
            actions=(
                PlanAction(
                    verb=verb,  # type: ignore[arg-type]
                    resource="security-group",
                    id=desired.name,
                    reason="missing" if verb == "create" else "spec change",
                    cluster=CLUSTER,
                    payload=payload,
                    key=f"cluster/{CLUSTER}",
                ),
            )
        )

    def ranges() -> list[tuple[int, int]]:
        (group,) = aws.boto3_client("ec2").describe_security_groups(
            Filters=[{"Name": "group-name", "Values": [desired.name]}]
        )["SecurityGroups"]
        return sorted((p["FromPort"], p["ToPort"]) for p in group["IpPermissions"])

    created = await apply_plan(clients, group_action("create", rules(range(8500, 8570))))
    assert created.ok, created.error
    assert ranges() == [(8500, 8569)]

    live = (await read_world(cluster_only, clients=clients)).observed.security_groups[CLUSTER]
    kept = set(range(8500, 8570)) - {8530}
    updated = await apply_plan(clients, group_action("update", rules(kept), live))
    assert updated.ok, updated.error
    assert ranges() == [(8500, 8529), (8531, 8569)]
    assert updated.applied[0].detail == "authorized 2 rule(s); revoked 1 rule(s)"
    observed = (await read_world(cluster_only, clients=clients)).observed
    assert observed.security_groups[CLUSTER].ingress == frozenset(rules(kept))
