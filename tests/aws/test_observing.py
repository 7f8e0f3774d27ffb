"""Observing: facts, batching and pagination limits enforced by us, exact families."""

from __future__ import annotations

from aws_helpers import INF1_AMI_PARAMETER

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.observing import (
    DESCRIBE_CLUSTERS_BATCH,
    DESCRIBE_SERVICES_BATCH,
    ingress_ranges,
    observe,
    observe_task_definitions,
    read_facts,
)
from controller.core.states import IngressRule, expand_ranges, family_of
from controller.sandbox.emulator import Emulator

MANAGED = [{"key": "ecs-infer:managed-by", "value": "ecs-infer"}]


async def test_facts(aws: Emulator, clients: AwsClients) -> None:
    ec2 = aws.boto3_client("ec2")
    default = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    other = ec2.create_vpc(CidrBlock="10.9.0.0/16")["Vpc"]
    subnet = ec2.create_subnet(VpcId=other["VpcId"], CidrBlock="10.9.1.0/24")["Subnet"]
    facts = await read_facts(
        clients, ami_parameters={INF1_AMI_PARAMETER}, subnet_ids=[subnet["SubnetId"]]
    )
    assert facts.account_id == "123456789012" and facts.region == "us-east-1"
    assert facts.default_vpc_id == default["VpcId"]
    assert facts.vpc_cidrs[default["VpcId"]] == default["CidrBlock"]
    assert facts.vpc_cidrs[other["VpcId"]] == "10.9.0.0/16"
    assert facts.subnet_vpcs[subnet["SubnetId"]] == other["VpcId"]
    assert len(facts.default_subnet_ids) == 6
    assert subnet["SubnetId"] not in facts.default_subnet_ids
    ssm = aws.boto3_client("ssm")
    expected = ssm.get_parameter(Name=INF1_AMI_PARAMETER)["Parameter"]["Value"]
    assert facts.ami_ids == {INF1_AMI_PARAMETER: expected}
    assert expected.startswith("ami-")


async def test_missing_ami_parameter_or_subnet_is_left_out_of_the_facts(
    clients: AwsClients,
) -> None:
    # One cluster's missing fact must not fail the read of every other cluster's facts:
    # `desired` makes only the clusters that need it unresolved.
    facts = await read_facts(
        clients,
        ami_parameters={"/no/such/parameter", INF1_AMI_PARAMETER},
        subnet_ids=["subnet-0000000000doesnotexist"],
    )
    assert set(facts.ami_ids) == {INF1_AMI_PARAMETER}
    assert "subnet-0000000000doesnotexist" not in facts.subnet_vpcs
    assert len(facts.default_subnet_ids) == 6


async def test_batches_are_enforced_even_though_moto_does_not(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    ecs = aws.boto3_client("ecs")
    for index in range(DESCRIBE_CLUSTERS_BATCH + 5):
        ecs.create_cluster(clusterName=f"c{index:03d}", tags=MANAGED)
    ecs.create_cluster(clusterName="unmanaged")
    family = ecs.register_task_definition(
        family="f", containerDefinitions=[{"name": "x", "image": "x", "memory": 64}]
    )["taskDefinition"]["taskDefinitionArn"]
    for index in range(2 * DESCRIBE_SERVICES_BATCH + 3):
        ecs.create_service(cluster="c000", serviceName=f"s{index:02d}", taskDefinition=family)
    ecs.delete_service(cluster="c000", service="s00", force=True)  # INACTIVE: not observed
    facts = await read_facts(clients, ami_parameters=())
    counter.reset()
    observed = await observe(clients, facts=facts, cluster_names=["c000", "unmanaged"])
    assert len(observed.clusters) == DESCRIBE_CLUSTERS_BATCH + 6
    assert "unmanaged" in observed.clusters  # named by a spec
    assert counter.count("ecs.DescribeClusters") == 2
    in_c000 = sorted(name for cluster, name in observed.services if cluster == "c000")
    assert in_c000 == [f"s{index:02d}" for index in range(1, 2 * DESCRIBE_SERVICES_BATCH + 3)]
    # 23 services listed (moto lists the INACTIVE one too): 3 calls of 10 in c000.
    assert counter.count("ecs.DescribeServices") == 3
    assert counter.writes() == {}


async def test_unmanaged_clusters_not_named_are_not_observed(
    aws: Emulator, clients: AwsClients
) -> None:
    aws.boto3_client("ecs").create_cluster(clusterName="someone-elses")
    facts = await read_facts(clients, ami_parameters=())
    observed = await observe(clients, facts=facts, cluster_names=["mine"])
    assert observed.clusters == {}
    assert observed.services == {}


async def test_task_definitions_of_exactly_the_family(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    ecs = aws.boto3_client("ecs")
    container = [{"name": "x", "image": "x", "memory": 64}]
    arns = [
        ecs.register_task_definition(family=family, containerDefinitions=container, tags=MANAGED)[
            "taskDefinition"
        ]["taskDefinitionArn"]
        for family in ("ecs-neuron", "ecs-neuron-extra", "ecs-neuron", "ecs-neuron")
    ]
    ecs.deregister_task_definition(taskDefinition=arns[2])
    facts = await read_facts(clients, ami_parameters=())
    observed = await observe(clients, facts=facts, cluster_names=[])
    assert observed.task_definitions == {}
    counter.reset()
    observed = await observe_task_definitions(clients, observed, families=["ecs-neuron", "absent"])
    revisions = observed.task_definitions["ecs-neuron"]
    assert [r.revision for r in revisions] == [1, 3]
    assert all(r.family == "ecs-neuron" and r.status == "ACTIVE" for r in revisions)
    assert revisions[0].tags["ecs-infer:managed-by"] == "ecs-infer"
    # Normalised: AWS's own fields (arn, revision, status...) are not content.
    assert "taskDefinitionArn" not in revisions[0].content
    assert revisions[0].content["family"] == "ecs-neuron"
    assert observed.task_definitions["absent"] == ()
    assert counter.count("ecs.ListTaskDefinitions") == 2
    assert counter.count("ecs.DescribeTaskDefinition") == 2


def test_family_of_and_ingress_expansion() -> None:
    assert family_of("arn:aws:ecs:us-east-1:1:task-definition/ecs-neuron:12") == "ecs-neuron"
    rules = expand_ranges(
        ingress_ranges(
            [
                {
                    "IpProtocol": "tcp",
                    "FromPort": 8500,
                    "ToPort": 8501,
                    "IpRanges": [{"CidrIp": "a"}],
                },
                {"IpProtocol": "-1", "IpRanges": [{"CidrIp": "b"}]},
            ]
        )
    )
    assert sorted(rules) == [
        IngressRule(-1, "b", "-1"),
        IngressRule(8500, "a", "tcp"),
        IngressRule(8501, "a", "tcp"),
    ]
