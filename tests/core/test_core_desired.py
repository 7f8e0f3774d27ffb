"""The desired state built from specs and account facts."""

from __future__ import annotations

import dataclasses

import pytest
from core_builders import (
    FACTS,
    INF1_AMI,
    cluster,
    deployment,
    specs,
    walkthrough_cluster,
    walkthrough_deployment,
    walkthrough_desired,
)

from controller.catalog import AMI_PARAMETERS
from controller.core.desired import (
    ami_parameters_needed,
    desired_state,
    service_spec_hash,
)
from controller.core.states import (
    CLUSTER_TAG,
    DELETION_POLICY_TAG,
    DEPLOYMENT_TAG,
    MANAGED_BY,
    NEURON_CORES_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    IngressRule,
)
from controller.core.taskdefs import content_hash
from controller.specs.models import InferenceCluster, InferenceDeployment

OWNED = {MANAGED_BY: "ecs-infer", CLUSTER_TAG: "ecs-inf1-demo"}


def test_the_walkthrough_cluster() -> None:
    desired = walkthrough_desired()
    demo = desired.clusters["ecs-inf1-demo"]
    fleet = demo.fleet

    assert demo.tags == {**OWNED, DELETION_POLICY_TAG: "delete"}
    assert (fleet.count, fleet.instance_type, fleet.market) == (2, "inf1.xlarge", "spot")
    assert fleet.image_id == INF1_AMI
    assert fleet.instance_profile == "ecsInstanceRole"
    assert fleet.key_name == "admin"
    assert fleet.subnet_ids == ("subnet-0a", "subnet-0b")
    assert fleet.security_group_ids == ()
    assert fleet.user_data == "#!/bin/bash\necho ECS_CLUSTER=ecs-inf1-demo >> /etc/ecs/ecs.config\n"
    assert fleet.tags["Name"] == "ecs-inf1-demo"
    assert OWNED.items() <= fleet.tags.items()


def test_the_managed_security_group_opens_model_ports_to_the_vpc() -> None:
    group = walkthrough_desired().clusters["ecs-inf1-demo"].security_group

    assert group is not None
    assert group.name == "ecs-infer-ecs-inf1-demo"
    assert group.vpc_id == "vpc-0default"
    assert group.ingress == (
        IngressRule(port=8500, cidr="172.31.0.0/16"),
        IngressRule(port=8501, cidr="172.31.0.0/16"),
    )
    assert OWNED.items() <= group.tags.items()


def test_security_group_follows_the_first_subnet_and_allowed_cidrs() -> None:
    desired = desired_state(
        specs(
            cluster(subnetIds=["subnet-0c"], allowedCidrs=["10.1.0.0/24", "10.2.0.0/24"]),
            deployment("a"),
            deployment("b", model={"grpcPort": 9000, "restPort": 9001}),
        ),
        FACTS,
    )
    group = desired.clusters["ecs-inf1-demo"].security_group

    assert group is not None
    assert group.vpc_id == "vpc-0other"
    assert {(r.port, r.cidr) for r in group.ingress} == {
        (port, cidr) for port in (8500, 8501, 9000, 9001) for cidr in ("10.1.0.0/24", "10.2.0.0/24")
    }
    assert desired.clusters["ecs-inf1-demo"].fleet.subnet_ids == ("subnet-0c",)


def test_named_security_groups_mean_no_managed_group() -> None:
    desired = desired_state(specs(cluster(securityGroupIds=["sg-0abc"]), deployment()), FACTS)
    demo = desired.clusters["ecs-inf1-demo"]

    assert demo.security_group is None
    assert demo.fleet.security_group_ids == ("sg-0abc",)


def test_the_walkthrough_deployment() -> None:
    bert = walkthrough_desired().deployments["bert"]
    task_hash = content_hash(bert.task_definition.content)

    assert bert.task_definition.family == "ecs-neuron"
    assert bert.task_definition.content_hash == task_hash
    assert bert.task_definition.tags == {
        **OWNED,
        DEPLOYMENT_TAG: "bert",
        TASK_DEFINITION_HASH_TAG: task_hash,
        NEURON_CORES_TAG: "4",
    }
    service = bert.service
    assert (service.name, service.cluster, service.desired_count) == (
        "bert-inf1",
        "ecs-inf1-demo",
        1,
    )
    assert service.task_family == "ecs-neuron"
    assert service.spec_hash == service_spec_hash(
        desired_count=1, task_content_hash=task_hash, deletion_policy="delete", deployment="bert"
    )
    assert service.tags == {
        **OWNED,
        DEPLOYMENT_TAG: "bert",
        SPEC_HASH_TAG: service.spec_hash,
        TASK_DEFINITION_HASH_TAG: task_hash,
        DELETION_POLICY_TAG: "delete",
    }
    assert TASK_DEFINITION_TAG not in service.tags  # the shell records the ARN it sets
    assert bert.probe.grpc_port == 8500 and bert.probe.model_name == "bert"


def test_spec_hash_follows_replicas_content_and_deletion_policy() -> None:
    base = walkthrough_desired().deployments["bert"].service.spec_hash

    def spec_hash(**changes: object) -> str:
        changed = walkthrough_deployment().model_copy(
            update={"spec": walkthrough_deployment().spec.model_copy(update=changes)}
        )
        desired = desired_state(specs(walkthrough_cluster(), changed), FACTS)
        return desired.deployments["bert"].service.spec_hash

    assert spec_hash() == base
    assert spec_hash(replicas=2) != base
    assert spec_hash(memoryReservation=2000) != base
    assert spec_hash(deletionPolicy="retain") != base


@pytest.mark.parametrize(
    ("instance_type", "replicas", "minimum", "maximum", "expected"),
    [
        # (neuronCores, replicas) per deployment; each deployment has its own host ports,
        # and two replicas of one deployment never share an instance (same host ports).
        ("inf1.xlarge", [(4, 1)], 2, 10, 2),  # the walkthrough: min wins
        ("inf1.xlarge", [(4, 3)], 1, 10, 3),
        ("inf1.xlarge", [(1, 1), (1, 1), (2, 1), (2, 1)], 1, 10, 2),  # 2+2 | 2+1+1
        ("inf1.xlarge", [(1, 3), (2, 2)], 1, 10, 3),  # ports: 3 replicas of the first
        ("inf1.6xlarge", [(4, 1), (4, 1), (4, 1), (4, 1), (8, 1), (8, 1)], 0, 10, 2),
        ("inf1.xlarge", [(4, 20)], 1, 5, 5),  # capped by max (with a warning)
        ("inf2.xlarge", [(1, 0)], 0, 10, 0),  # no replicas, no instances
        ("inf2.48xlarge", [(24, 1), (1, 1)], 0, 10, 2),
    ],
)
def test_fleet_count_is_bin_packed_within_min_and_max(
    instance_type: str,
    replicas: list[tuple[int, int]],
    minimum: int,
    maximum: int,
    expected: int,
) -> None:
    documents: list[InferenceCluster | InferenceDeployment] = [
        cluster(
            capacity={
                "instanceType": instance_type,
                "minInstances": minimum,
                "maxInstances": maximum,
            }
        ),
        *(
            deployment(
                f"d{n}",
                neuronCores=cores,
                replicas=count,
                model={"grpcPort": 9000 + 2 * n, "restPort": 9001 + 2 * n},
            )
            for n, (cores, count) in enumerate(replicas)
        ),
    ]
    desired = desired_state(specs(*documents), FACTS)

    assert desired.clusters["ecs-inf1-demo"].fleet.count == expected
    capped = any("maxInstances" in warning for warning in desired.warnings)
    assert capped == (expected == maximum and maximum < sum(c for _, c in replicas))


def test_explicit_ami_needs_no_parameter() -> None:
    assert ami_parameters_needed(specs(cluster(ami="ami-0123abcd"), deployment())) == set()
    desired = desired_state(specs(cluster(ami="ami-0123abcd")), FACTS)
    assert desired.clusters["ecs-inf1-demo"].fleet.image_id == "ami-0123abcd"


def test_ami_parameters_needed_per_instance_family() -> None:
    needed = ami_parameters_needed(
        specs(
            cluster("a"),
            cluster("b", capacity={"instanceType": "inf2.xlarge"}),
            cluster("c", capacity={"instanceType": "inf1.6xlarge"}),
        )
    )
    assert needed == {AMI_PARAMETERS["inf1"], AMI_PARAMETERS["inf2"]}


@pytest.mark.parametrize(
    ("facts", "spec", "message"),
    [
        (
            dataclasses.replace(FACTS, ami_ids={}),
            {},
            "cluster ecs-inf1-demo: the AMI parameter "
            "/aws/service/ecs/optimized-ami/amazon-linux-2/inf/recommended/image_id "
            "was not found in SSM (us-east-1)",
        ),
        (
            dataclasses.replace(FACTS, default_vpc_id=None, default_subnet_ids=()),
            {},
            "cluster ecs-inf1-demo: subnetIds is empty and the account has no default VPC",
        ),
        (
            dataclasses.replace(FACTS, default_subnet_ids=()),
            {},
            "has no subnets",
        ),
        (FACTS, {"subnetIds": ["subnet-0ff"]}, "subnet subnet-0ff was not found"),
        (
            dataclasses.replace(FACTS, vpc_cidrs={}),
            {},
            "the CIDR of VPC vpc-0default is unknown",
        ),
    ],
)
def test_missing_facts_leave_the_cluster_and_its_deployments_unresolved(
    facts: object, spec: dict[str, object], message: str
) -> None:
    desired = desired_state(specs(cluster(**spec), deployment()), facts)  # type: ignore[arg-type]
    assert not desired.clusters and not desired.deployments and not desired.is_empty
    assert message in desired.unresolved_clusters["ecs-inf1-demo"]
    assert message in desired.unresolved_deployments["bert"]
    assert set(desired.unresolved_clusters) == {"ecs-inf1-demo"}
    assert set(desired.unresolved_deployments) == {"bert"}


def test_a_cluster_with_missing_facts_does_not_hide_the_others() -> None:
    facts = dataclasses.replace(FACTS, ami_ids={})
    desired = desired_state(
        specs(
            cluster("broken"),
            cluster("fine", ami="ami-0123abcd"),
            deployment("a", cluster="broken"),
            deployment("b", cluster="fine"),
        ),
        facts,
    )
    assert set(desired.clusters) == {"fine"} and set(desired.deployments) == {"b"}
    assert set(desired.unresolved_clusters) == {"broken"}
    assert set(desired.unresolved_deployments) == {"a"}


def test_missing_facts_that_are_not_needed_are_not_errors() -> None:
    facts = dataclasses.replace(FACTS, default_vpc_id=None, default_subnet_ids=(), vpc_cidrs={})
    desired = desired_state(
        specs(
            cluster(subnetIds=["subnet-0a"], securityGroupIds=["sg-0abc"], ami="ami-0123abcd"),
            deployment(),
        ),
        facts,
    )
    assert desired.clusters["ecs-inf1-demo"].fleet.subnet_ids == ("subnet-0a",)


def test_every_problem_is_reported_at_once() -> None:
    facts = dataclasses.replace(FACTS, ami_ids={}, default_vpc_id=None, default_subnet_ids=())
    desired = desired_state(specs(cluster("a"), cluster("b")), facts)
    unresolved = desired.unresolved_clusters
    assert sum(why.count(f"cluster {name}: ") for name, why in unresolved.items()) == 4


def test_empty_specs_give_an_empty_desired_state() -> None:
    assert desired_state(specs(), FACTS).is_empty


def test_probe_settings_carry_the_output_filter() -> None:
    plain = walkthrough_desired().deployments["bert"].probe
    assert plain.output_filter == ()
    filtered = deployment(model={"name": "bert"}, probe={"outputFilter": ["pooled_output"]})
    state = desired_state(specs(walkthrough_cluster(), filtered), FACTS)
    assert state.deployments["bert"].probe.output_filter == ("pooled_output",)
