"""A whole pass on the walkthrough, from an empty emulated account (testing ring 2)."""

from __future__ import annotations

import base64

from aws_helpers import (
    CLUSTER,
    EXECUTION_ROLE,
    FAMILY,
    IMAGE,
    INF1_AMI_PARAMETER,
    NO_RETRIES,
    SERVICE,
    cluster_spec,
    demo_specs,
    deployment_spec,
    settle_service,
    tags_of,
)

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.waiting import WaitTimedOut
from controller.pipeline import AwsShell, reconcile_pass, run_pass
from controller.sandbox.emulator import Emulator
from controller.settings import Settings, WaitSettings
from controller.specs.loading import SpecSet


async def test_plan_from_empty_account_lists_the_walkthrough(clients: AwsClients) -> None:
    result = await reconcile_pass(demo_specs(), clients=clients, apply=False)
    got = [(a.verb, a.resource) for a in result.plan.actions]
    assert got == [
        ("create", "cluster"),
        ("create", "security-group"),
        ("create", "instance"),
        ("create", "instance"),
        ("create", "task-definition"),
        ("create", "service"),
        ("update", "fleet"),
    ]
    assert result.report is None


async def test_apply_creates_the_walkthrough(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    result = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert result.report is not None and result.report.ok, result.report
    assert [item.outcome for item in result.report.applied] == ["created"] * 6 + ["updated"]

    ecs, ec2, ssm = aws.boto3_client("ecs"), aws.boto3_client("ec2"), aws.boto3_client("ssm")
    cluster = ecs.describe_clusters(clusters=[CLUSTER], include=["TAGS"])["clusters"][0]
    assert cluster["status"] == "ACTIVE"
    assert tags_of(cluster["tags"])["ecs-infer:managed-by"] == "ecs-infer"

    ami = ssm.get_parameter(Name=INF1_AMI_PARAMETER)["Parameter"]["Value"]
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "tag:ecs-infer:cluster", "Values": [CLUSTER]}]
    )["SecurityGroups"]
    assert len(groups) == 1
    group = groups[0]
    vpc_cidr = ec2.describe_vpcs(VpcIds=[group["VpcId"]])["Vpcs"][0]["CidrBlock"]
    rules = {
        (p["FromPort"], p["ToPort"], r["CidrIp"])
        for p in group["IpPermissions"]
        for r in p["IpRanges"]
    }
    assert rules == {(8500, 8501, vpc_cidr)}  # the walkthrough's two ports, one rule

    reservations = ec2.describe_instances(
        Filters=[{"Name": "tag:ecs-infer:cluster", "Values": [CLUSTER]}]
    )["Reservations"]
    instances = [i for r in reservations for i in r["Instances"]]
    assert len(instances) == 2
    for instance in instances:
        assert instance["ImageId"] == ami
        assert instance["InstanceType"] == "inf1.xlarge"
        assert instance["InstanceLifecycle"] == "spot"
        assert instance["KeyName"] == "admin"
        assert instance["IamInstanceProfile"]["Arn"].endswith("/ecsInstanceRole")
        assert [g["GroupId"] for g in instance["SecurityGroups"]] == [group["GroupId"]]
        tags = tags_of(instance["Tags"], key="Key")
        assert tags["Name"] == CLUSTER
        assert tags["ecs-infer:managed-by"] == "ecs-infer"
        user_data = ec2.describe_instance_attribute(
            InstanceId=instance["InstanceId"], Attribute="userData"
        )["UserData"]["Value"]
        assert (
            f"echo ECS_CLUSTER={CLUSTER} >> /etc/ecs/ecs.config"
            in base64.b64decode(user_data).decode()
        )
    # Spread: two instances, two different subnets.
    assert len({i["SubnetId"] for i in instances}) == 2

    described = ecs.describe_task_definition(taskDefinition=FAMILY, include=["TAGS"])
    task = described["taskDefinition"]
    assert task["revision"] == 1
    assert task["executionRoleArn"] == EXECUTION_ROLE
    containers = {c["name"]: c for c in task["containerDefinitions"]}
    assert set(containers) == {"bert", "neuron-rtd"}
    assert containers["bert"]["image"] == IMAGE
    assert containers["bert"]["memoryReservation"] == 1000
    assert {m["containerPort"] for m in containers["bert"]["portMappings"]} == {8500, 8501}
    assert {"name": "NEURON_RTD_ADDRESS", "value": "unix:/sock/neuron-rtd.sock"} in containers[
        "bert"
    ]["environment"]
    assert set(containers["neuron-rtd"]["linuxParameters"]["capabilities"]["add"]) == {
        "SYS_ADMIN",
        "IPC_LOCK",
    }
    assert tags_of(described["tags"])["ecs-infer:managed-by"] == "ecs-infer"

    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE], include=["TAGS"])[
        "services"
    ][0]
    assert service["desiredCount"] == 1
    assert service["launchType"] == "EC2"
    assert service["taskDefinition"] == task["taskDefinitionArn"]
    service_tags = tags_of(service["tags"])
    assert service_tags["ecs-infer:task-definition"] == task["taskDefinitionArn"]
    assert service_tags["ecs-infer:deployment"] == "bert"


async def test_second_pass_is_empty_and_writes_nothing(
    clients: AwsClients, counter: RequestCounter
) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    again = await reconcile_pass(demo_specs(), clients=clients, apply=False)
    assert again.plan.actions == (), [a.sentence() for a in again.plan.actions]
    counter.reset()
    noop = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert noop.plan.in_sync
    assert counter.writes() == {}
    assert counter.total <= 13, counter.by_operation()
    # An in-sync pass reads no revision, only the family's newest ARN (one listing):
    # a revision registered out of band would be newer than the one recorded.
    assert counter.count("ecs.ListTaskDefinitions") == 1
    assert counter.count("ecs.DescribeTaskDefinition") == 0


async def test_changing_replicas_is_one_update(clients: AwsClients, aws: Emulator) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    changed = await reconcile_pass(demo_specs(replicas=2), clients=clients, apply=True)
    assert [(a.verb, a.resource, a.reason) for a in changed.plan.actions] == [
        ("update", "service", "spec change")
    ]
    service = aws.boto3_client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])
    assert service["services"][0]["desiredCount"] == 2
    after = await reconcile_pass(demo_specs(replicas=2), clients=clients, apply=False)
    assert after.plan.in_sync, [a.sentence() for a in after.plan.actions]


async def test_out_of_band_desired_count_is_drift_and_corrected(
    clients: AwsClients, aws: Emulator
) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    ecs = aws.boto3_client("ecs")
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=5)
    drifted = await reconcile_pass(demo_specs(), clients=clients, apply=True)
    assert [(a.verb, a.resource, a.reason) for a in drifted.plan.actions] == [
        ("update", "service", "drift")
    ]
    fields = {f.path: (f.before, f.after) for f in drifted.plan.actions[0].fields}
    assert fields["desiredCount"] == (5, 1)
    assert (
        ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]["desiredCount"]
        == 1
    )


async def test_empty_specs_delete_nothing(clients: AwsClients, counter: RequestCounter) -> None:
    from controller.specs.loading import SpecSet

    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    counter.reset()
    empty = await reconcile_pass(SpecSet(), clients=clients, apply=True)
    assert empty.plan.actions == ()
    assert counter.writes() == {}
    assert any("empty" in warning for warning in empty.plan.warnings)


FAST = WaitSettings(poll_interval_s=0.05, timeout_s=5)
QUICK = Settings(aws=NO_RETRIES, waits=FAST)


async def test_run_pass_plans_applies_and_waits(aws: Emulator, counter: RequestCounter) -> None:
    planned = await run_pass(demo_specs(), apply=False, settings=QUICK)
    assert len(planned.plan.actions) == 7 and planned.report is None
    # moto has no scheduler: the rollout never completes on its own.
    applied = await run_pass(
        demo_specs(),
        apply=True,
        wait=True,
        settings=Settings(aws=NO_RETRIES, waits=WaitSettings(poll_interval_s=0.05, timeout_s=0.3)),
    )
    assert applied.ok and not applied.succeeded
    assert isinstance(applied.wait_error, WaitTimedOut)
    lines = applied.report_lines()
    assert f"service {SERVICE} has been created (on {FAMILY}:1)" in lines
    assert lines[-1].startswith("error: timed out")
    settle_service()
    waited = await run_pass(
        demo_specs(),
        apply=True,
        wait=True,
        settings=QUICK,
        on_request=counter,
    )
    assert waited.succeeded and waited.plan.in_sync
    assert [r.state for r in waited.rollouts] == ["stable"]
    assert "nothing to do: AWS matches the specs" in waited.report_lines()
    assert counter.writes() == {}


INF2_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2023/neuron/recommended/image_id"


def two_cluster_specs() -> SpecSet:
    """The walkthrough on inf1, and a second cluster on inf2 with its own deployment."""
    walkthrough = demo_specs()
    inf2 = cluster_spec(
        "inf2-demo",
        capacity={"instanceType": "inf2.xlarge", "minInstances": 1, "maxInstances": 2},
    )
    other = deployment_spec(
        "bert-inf2", cluster="inf2-demo", service=None, family=None, neuronCores=2
    )
    return SpecSet(
        clusters={**walkthrough.clusters, "inf2-demo": inf2},
        deployments={**walkthrough.deployments, "bert-inf2": other},
    )


async def test_a_cluster_whose_ami_parameter_is_missing_fails_only_its_own_keys(
    aws: Emulator, clients: AwsClients
) -> None:
    specs = two_cluster_specs()
    first = await reconcile_pass(specs, clients=clients, apply=True)
    assert first.succeeded, first.report_lines()
    ecs, ssm = aws.boto3_client("ecs"), aws.boto3_client("ssm")
    assert ecs.describe_services(cluster="inf2-demo", services=["bert-inf2"])["services"]

    # The parameter vanishes (a region without the inf2 AMI, a wrong parameter path).
    ssm.delete_parameter(Name=INF2_AMI_PARAMETER)
    # A change to the walkthrough's deployment, which must still go through.
    edited = SpecSet(
        clusters=specs.clusters,
        deployments={**specs.deployments, "bert": deployment_spec(replicas=2)},
    )
    result = await reconcile_pass(edited, clients=clients, apply=True)

    assert set(result.plan.errors) == {"cluster/inf2-demo", "deployment/bert-inf2"}
    assert INF2_AMI_PARAMETER in result.plan.errors["cluster/inf2-demo"]
    assert not result.succeeded
    assert {a.key for a in result.plan.actions} == {"deployment/bert"}
    assert result.report is not None and result.report.ok
    service = ecs.describe_services(cluster=CLUSTER, services=[SERVICE])["services"][0]
    assert service["desiredCount"] == 2
    # The unresolved cluster is not read as removed: nothing of it is deleted.
    live = ecs.describe_services(cluster="inf2-demo", services=["bert-inf2"])["services"][0]
    assert live["status"] == "ACTIVE"
    assert ecs.describe_clusters(clusters=["inf2-demo"])["clusters"][0]["status"] == "ACTIVE"
    lines = result.report_lines()
    assert any(line.startswith("error: cluster/inf2-demo:") for line in lines), lines


async def test_a_spec_change_is_planned_from_the_level_in_hand(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    await reconcile_pass(demo_specs(), clients=clients, apply=True)
    shell = AwsShell(clients)
    level = await shell.read_level(demo_specs())
    assert level.plan.in_sync
    counter.reset()
    replanned = await shell.replan(demo_specs(replicas=2), level=level)
    assert replanned is not None and counter.total == 0  # AWS is as it was: no read
    assert [(a.verb, a.resource) for a in replanned.plan.actions] == [("update", "service")]
    assert replanned.observed is level.observed and replanned.read_at == level.read_at
    # A spec naming a cluster the level never looked at needs a read of everything.
    grown = two_cluster_specs()
    assert await shell.replan(grown, level=level) is None
