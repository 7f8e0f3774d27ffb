"""The desired state: what AWS should look like for a folder of valid specs.

Owns: turning a `SpecSet` plus the account facts the shell read (default VPC, subnets,
CIDRs, resolved AMI ids) into `DesiredState`: the cluster, its fleet and security
group, and per deployment its task definition and service, each with the tags that
record ownership (CONTRACT §5) and what was applied. Must not: read AWS (the shell
reads the facts first; `ami_parameters_needed` says which SSM parameters), or compare
anything with live state (`planning`).

A fact the account lacks for one cluster (its AMI parameter is not in SSM, a named
subnet does not exist) makes that cluster and its deployments *unresolved*: they are
left out of the desired state and listed in `DesiredState.unresolved_*` with the reason,
so that the planner plans nothing for them (it must not read them as removed) and the
runner fails their keys alone, while every other cluster is planned as usual.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from controller.catalog import ami_parameter, shape_of
from controller.core.neuron import Replica, instances_needed
from controller.core.normalising import without_paths
from controller.core.states import (
    CLUSTER_TAG,
    DELETION_POLICY_TAG,
    DEPLOYMENT_TAG,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    NEURON_CORES_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_HASH_TAG,
    AccountFacts,
    DesiredCluster,
    DesiredDeployment,
    DesiredFleet,
    DesiredSecurityGroup,
    DesiredService,
    DesiredState,
    DesiredTaskDefinition,
    IngressRule,
    ProbeSettings,
    image_path,
)
from controller.core.taskdefs import (
    content_hash,
    host_ports,
    short_hash,
    task_definition_content,
)
from controller.specs.loading import SpecSet
from controller.specs.models import InferenceCluster, InferenceDeployment

AMI_AUTO = "auto"
SECURITY_GROUP_PREFIX = "ecs-infer-"

# The deployment configuration of every managed service: a rollout whose tasks keep
# failing stops and rolls back (ECS's circuit breaker); rolling, within ECS's defaults.
DEPLOYMENT_CONFIGURATION: Mapping[str, Any] = {
    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def ignored_paths(names: Iterable[str], *, model_container: str) -> frozenset[str]:
    """`spec.ignore` (CONTRACT §7) as the field paths of `diffs` that others own."""
    paths: dict[str, tuple[str, ...]] = {
        "replicas": ("desiredCount",),
        "placement": ("placementConstraints", "placementStrategy"),
        "image": (image_path(model_container),),
    }
    return frozenset(path for name in names for path in paths[name])


def ownership_tags(*, cluster: str, deployment: str | None = None) -> dict[str, str]:
    """The tags CONTRACT §5 puts on every resource the controller creates."""
    tags = {MANAGED_BY: MANAGED_BY_VALUE, CLUSTER_TAG: cluster}
    if deployment is not None:
        tags[DEPLOYMENT_TAG] = deployment
    return tags


def user_data(cluster: str) -> str:
    """The walkthrough's user data: the ECS agent joins the instance to the cluster."""
    return f"#!/bin/bash\necho ECS_CLUSTER={cluster} >> /etc/ecs/ecs.config\n"


def security_group_name(cluster: str) -> str:
    return f"{SECURITY_GROUP_PREFIX}{cluster}"


def service_spec_hash(
    *,
    desired_count: int | None,
    task_content_hash: str,
    deletion_policy: str,
    deployment: str,
) -> str:
    """What was applied to a service, so that a later difference can be told apart.

    Live differing while the service's recorded hash equals this one is drift; a
    recorded hash that differs means the spec changed since the last apply. The
    deletion policy and the deployment name are applied too (as tags), so a change of
    either is a spec change, not drift. `desired_count` is None under `ignore:
    [replicas]`: the count is not ours, so changing it in the spec applies nothing.
    """
    return short_hash(
        {
            "desiredCount": desired_count,
            "taskDefinition": task_content_hash,
            "deletionPolicy": deletion_policy,
            "deployment": deployment,
        }
    )


def security_group_spec_hash(*, vpc_id: str, ingress: Iterable[IngressRule]) -> str:
    return short_hash(
        {
            "vpcId": vpc_id,
            "ingress": sorted([rule.protocol, rule.port, rule.cidr] for rule in ingress),
        }
    )


def ami_parameters_needed(specs: SpecSet) -> set[str]:
    """The SSM parameters the shell must resolve into `AccountFacts.ami_ids`."""
    return {
        ami_parameter(cluster.spec.capacity.instanceType)
        for cluster in specs.clusters.values()
        if cluster.spec.ami == AMI_AUTO
    }


@dataclass(frozen=True, kw_only=True)
class _Network:
    subnet_ids: tuple[str, ...]
    vpc_id: str | None  # None when the spec names its own security groups


def _network(cluster: InferenceCluster, facts: AccountFacts, problems: list[str]) -> _Network:
    name = cluster.metadata.name
    spec = cluster.spec
    subnet_ids = tuple(spec.subnetIds)
    if not subnet_ids:
        if facts.default_vpc_id is None:
            problems.append(
                f"cluster {name}: subnetIds is empty and the account has no default VPC; "
                "name the subnets in spec.subnetIds"
            )
        elif not facts.default_subnet_ids:
            problems.append(
                f"cluster {name}: subnetIds is empty and the default VPC "
                f"{facts.default_vpc_id} has no subnets"
            )
        subnet_ids = tuple(facts.default_subnet_ids)
    if spec.securityGroupIds:
        return _Network(subnet_ids=subnet_ids, vpc_id=None)
    # The managed security group must live in the instances' VPC.
    vpc_id: str | None
    if spec.subnetIds:
        vpc_id = facts.subnet_vpcs.get(spec.subnetIds[0])
        if vpc_id is None:
            problems.append(f"cluster {name}: subnet {spec.subnetIds[0]} was not found")
    else:
        vpc_id = facts.default_vpc_id
    return _Network(subnet_ids=subnet_ids, vpc_id=vpc_id)


def _image_id(cluster: InferenceCluster, facts: AccountFacts, problems: list[str]) -> str:
    spec = cluster.spec
    if spec.ami != AMI_AUTO:
        return spec.ami
    parameter = ami_parameter(spec.capacity.instanceType)
    image_id = facts.ami_ids.get(parameter)
    if image_id is None:
        problems.append(
            f"cluster {cluster.metadata.name}: the AMI parameter {parameter} was not found "
            f"in SSM ({facts.region})"
        )
        return ""
    return image_id


def _security_group(
    cluster: InferenceCluster,
    deployments: list[InferenceDeployment],
    *,
    vpc_id: str,
    facts: AccountFacts,
    problems: list[str],
) -> DesiredSecurityGroup:
    name = cluster.metadata.name
    cidrs = tuple(cluster.spec.allowedCidrs)
    if not cidrs:
        vpc_cidr = facts.vpc_cidrs.get(vpc_id)
        if vpc_cidr is None:
            problems.append(f"cluster {name}: the CIDR of VPC {vpc_id} is unknown")
            vpc_cidr = ""
        cidrs = (vpc_cidr,)
    ports = {
        port
        for deployment in deployments
        for port in (deployment.spec.model.grpcPort, deployment.spec.model.restPort)
    }
    ingress = tuple(sorted(IngressRule(port=port, cidr=cidr) for port in ports for cidr in cidrs))
    return DesiredSecurityGroup(
        name=security_group_name(name),
        cluster=name,
        vpc_id=vpc_id,
        description=f"ecs-infer: model ports of cluster {name}",
        ingress=ingress,
        tags={
            **ownership_tags(cluster=name),
            DELETION_POLICY_TAG: cluster.spec.deletionPolicy,
            # What was applied, so that changed rules read as drift or spec change.
            SPEC_HASH_TAG: security_group_spec_hash(vpc_id=vpc_id, ingress=ingress),
        },
    )


def _cluster(
    cluster: InferenceCluster,
    deployments: list[InferenceDeployment],
    *,
    facts: AccountFacts,
    problems: list[str],
    warnings: list[str],
) -> DesiredCluster:
    name = cluster.metadata.name
    spec = cluster.spec
    capacity = spec.capacity
    shape = shape_of(capacity.instanceType)
    replicas = [
        Replica(cores=deployment.spec.neuronCores, host_ports=host_ports(deployment))
        for deployment in deployments
        for _ in range(deployment.spec.replicas)
    ]
    try:
        needed = instances_needed(replicas, shape)
    except ValueError as error:  # the loader rejects these; say so clearly if one slips by
        problems.append(f"cluster {name}: {error}")
        needed = 0
    count = min(max(needed, capacity.minInstances), capacity.maxInstances)
    if needed > count:
        warnings.append(
            f"cluster {name}: the replicas need {needed} {capacity.instanceType} instances "
            f"but maxInstances is {capacity.maxInstances}; some replicas will stay pending"
        )
    network = _network(cluster, facts, problems)
    security_group = (
        _security_group(cluster, deployments, vpc_id=network.vpc_id, facts=facts, problems=problems)
        if network.vpc_id is not None
        else None
    )
    policy = {DELETION_POLICY_TAG: spec.deletionPolicy}
    fleet = DesiredFleet(
        cluster=name,
        count=count,
        instance_type=capacity.instanceType,
        image_id=_image_id(cluster, facts, problems),
        market=capacity.market,
        on_demand_fallback=capacity.onDemandFallback,
        instance_profile=spec.instanceProfile,
        security_group_ids=tuple(spec.securityGroupIds),
        subnet_ids=network.subnet_ids,
        key_name=spec.keyName,
        user_data=user_data(name),
        tags={"Name": name, **ownership_tags(cluster=name), **policy},
    )
    return DesiredCluster(
        name=name,
        tags={**ownership_tags(cluster=name), **policy},
        deletion_policy=spec.deletionPolicy,
        drift_policy=spec.driftPolicy,
        fleet=fleet,
        security_group=security_group,
    )


def _deployment(deployment: InferenceDeployment, *, instance_type: str) -> DesiredDeployment:
    name = deployment.metadata.name
    spec = deployment.spec
    content = task_definition_content(deployment, instance_type=instance_type)
    ignore = ignored_paths(spec.ignore, model_container=spec.model.name)
    # Under `ignore: [image]` the image is not ours: revisions that differ only in the
    # model's image hash alike, so a CI pipeline's new image is neither drift nor undone.
    task_hash = content_hash(
        without_paths(content, spec.model.name, ("image",)) if "image" in spec.ignore else content
    )
    ownership = ownership_tags(cluster=spec.cluster, deployment=name)
    task_definition = DesiredTaskDefinition(
        family=deployment.task_family,
        deployment=name,
        content=content,
        content_hash=task_hash,
        tags={
            **ownership,
            TASK_DEFINITION_HASH_TAG: task_hash,
            NEURON_CORES_TAG: str(spec.neuronCores),
        },
    )
    spec_hash = service_spec_hash(
        desired_count=None if "replicas" in spec.ignore else spec.replicas,
        task_content_hash=task_hash,
        deletion_policy=spec.deletionPolicy,
        deployment=name,
    )
    service = DesiredService(
        name=deployment.service_name,
        cluster=spec.cluster,
        deployment=name,
        desired_count=spec.replicas,
        task_family=deployment.task_family,
        # Placement lives in the task definition (see `taskdefs.instance_type_constraint`).
        placement_constraints=(),
        deployment_configuration=DEPLOYMENT_CONFIGURATION,
        spec_hash=spec_hash,
        tags={
            **ownership,
            SPEC_HASH_TAG: spec_hash,
            TASK_DEFINITION_HASH_TAG: task_hash,
            DELETION_POLICY_TAG: spec.deletionPolicy,
        },
    )
    probe = spec.probe
    return DesiredDeployment(
        name=name,
        cluster=spec.cluster,
        neuron_cores=spec.neuronCores,
        replicas=spec.replicas,
        drift_policy=spec.driftPolicy,
        deletion_policy=spec.deletionPolicy,
        task_definition=task_definition,
        service=service,
        probe=ProbeSettings(
            model_name=spec.model.name,
            grpc_port=spec.model.grpcPort,
            interval_s=probe.interval,
            timeout_s=probe.timeout,
            sequence_length=probe.sequenceLength,
            latency_objective_s=probe.latencyObjective,
            output_filter=tuple(probe.outputFilter),
        ),
        ignore=ignore,
    )


def desired_state(specs: SpecSet, facts: AccountFacts) -> DesiredState:
    """What AWS should hold for `specs`. A cluster the facts cannot resolve is left out
    with its deployments, each listed in `unresolved_*` with every problem found."""
    warnings: list[str] = []
    unresolved_deployments: dict[str, str] = {}
    by_cluster: dict[str, list[InferenceDeployment]] = {name: [] for name in specs.clusters}
    for name, deployment in sorted(specs.deployments.items()):
        if deployment.spec.cluster not in by_cluster:
            unresolved_deployments[name] = (
                f"deployment {name}: cluster {deployment.spec.cluster} is not in the specs"
            )
            continue
        by_cluster[deployment.spec.cluster].append(deployment)
    clusters: dict[str, DesiredCluster] = {}
    unresolved_clusters: dict[str, str] = {}
    deployments: dict[str, DesiredDeployment] = {}
    for name in sorted(specs.clusters):
        problems: list[str] = []
        members = by_cluster[name]
        cluster = _cluster(
            specs.clusters[name], members, facts=facts, problems=problems, warnings=warnings
        )
        if problems:
            reason = "; ".join(problems)
            unresolved_clusters[name] = reason
            for member in members:
                unresolved_deployments[member.metadata.name] = (
                    f"deployment {member.metadata.name}: {reason}"
                )
            continue
        clusters[name] = cluster
        instance_type = specs.clusters[name].spec.capacity.instanceType
        for member in members:
            deployments[member.metadata.name] = _deployment(member, instance_type=instance_type)
    return DesiredState(
        clusters=clusters,
        deployments=dict(sorted(deployments.items())),
        warnings=tuple(warnings),
        unresolved_clusters=unresolved_clusters,
        unresolved_deployments=dict(sorted(unresolved_deployments.items())),
    )
