"""Builders for the pure core's tests: specs, account facts, and a model of AWS.

`apply_to_model` is a small, pure model of what the shell does with each payload
(`controller.core.payloads`): exactly the writes it names, nothing it would have to
work out itself, so that "apply the plan, then plan again" checks that the payloads say
everything. It follows the shell's contract, not moto's quirks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from controller.catalog import AMI_PARAMETERS
from controller.core.desired import desired_state
from controller.core.normalising import normalise_task_definition
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
    RegisterTaskDefinition,
    ReplaceInstance,
    ReplaceSecurityGroup,
    RevisionRef,
    TagCluster,
    TagInstance,
    TerminateInstance,
    UpdateSecurityGroup,
    UpdateService,
)
from controller.core.planning import families_to_read, plan
from controller.core.plans import Action, Plan
from controller.core.states import (
    TASK_DEFINITION_TAG,
    AccountFacts,
    DesiredService,
    DesiredState,
    DesiredTaskDefinition,
    LiveCluster,
    LiveInstance,
    LiveSecurityGroup,
    LiveService,
    LiveTaskDefinition,
    ObservedState,
    family_of,
)
from controller.specs.loading import SpecSet
from controller.specs.models import InferenceCluster, InferenceDeployment

REGION = "us-east-1"
ACCOUNT = "123456789012"
IMAGE = f"{ACCOUNT}.dkr.ecr.{REGION}.amazonaws.com/ecs-inf1-demo:latest"
EXECUTION_ROLE = f"arn:aws:iam::{ACCOUNT}:role/ecsTaskExecutionRole"
INF1_AMI = "ami-0123456789abcdef0"
INF2_AMI = "ami-0fedcba9876543210"

FACTS = AccountFacts(
    region=REGION,
    account_id=ACCOUNT,
    default_vpc_id="vpc-0default",
    vpc_cidrs={"vpc-0default": "172.31.0.0/16", "vpc-0other": "10.0.0.0/16"},
    subnet_vpcs={
        "subnet-0a": "vpc-0default",
        "subnet-0b": "vpc-0default",
        "subnet-0c": "vpc-0other",
    },
    default_subnet_ids=("subnet-0a", "subnet-0b"),
    ami_ids={AMI_PARAMETERS["inf1"]: INF1_AMI, AMI_PARAMETERS["inf2"]: INF2_AMI},
)


def cluster(name: str = "ecs-inf1-demo", **spec: Any) -> InferenceCluster:
    return InferenceCluster.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceCluster",
            "metadata": {"name": name},
            "spec": spec,
        }
    )


def deployment(
    name: str = "bert",
    *,
    cluster: str = "ecs-inf1-demo",
    model: Mapping[str, Any] | None = None,
    **spec: Any,
) -> InferenceDeployment:
    return InferenceDeployment.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceDeployment",
            "metadata": {"name": name},
            "spec": {"cluster": cluster, "model": {"image": IMAGE, **(model or {})}, **spec},
        }
    )


def walkthrough_cluster() -> InferenceCluster:
    """The walkthrough's cluster: two inf1.xlarge spot instances, key pair admin."""
    return cluster(
        "ecs-inf1-demo",
        capacity={"instanceType": "inf1.xlarge", "market": "spot", "minInstances": 2},
        keyName="admin",
    )


def walkthrough_deployment() -> InferenceDeployment:
    """The walkthrough's `ecs-neuron` task definition behind the `bert-inf1` service."""
    return deployment(
        "bert",
        model={"name": "bert", "basePath": "/bert/", "grpcPort": 8500, "restPort": 8501},
        neuronCores=4,
        replicas=1,
        runtime="neuron-rtd",
        taskFamily="ecs-neuron",
        serviceName="bert-inf1",
        executionRoleArn=EXECUTION_ROLE,
        memoryReservation=1000,
    )


def specs(*documents: InferenceCluster | InferenceDeployment) -> SpecSet:
    return SpecSet(
        clusters={d.metadata.name: d for d in documents if isinstance(d, InferenceCluster)},
        deployments={d.metadata.name: d for d in documents if isinstance(d, InferenceDeployment)},
    )


def walkthrough_desired() -> DesiredState:
    return desired_state(specs(walkthrough_cluster(), walkthrough_deployment()), FACTS)


# --- a model of AWS -----------------------------------------------------------------------


def empty_observed(facts: AccountFacts = FACTS) -> ObservedState:
    return ObservedState(
        facts=facts,
        clusters={},
        security_groups={},
        instances={},
        services={},
        task_definitions={},
    )


def task_definition_arn(family: str, revision: int) -> str:
    return f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/{family}:{revision}"


def view(model: ObservedState, families: Iterable[str]) -> ObservedState:
    """What the shell reads: a family's ACTIVE revisions, only when asked for.

    The model itself keeps deregistered (INACTIVE) revisions, so that revision numbers
    are never reused, as in ECS.
    """
    wanted = set(families)
    read = {
        family: tuple(r for r in revisions if r.status == "ACTIVE")
        for family, revisions in model.task_definitions.items()
        if family in wanted
    }
    return dataclasses.replace(
        model, task_definitions={family: items for family, items in read.items() if items}
    )


def plan_against(desired: DesiredState, model: ObservedState) -> Plan:
    """Plan as the shell does: observe, read the families asked for, then plan."""
    unread = view(model, ())
    return plan(desired, view(model, families_to_read(desired, unread)))


class _Model:
    """Mutable scratch copy of an ObservedState while a plan is applied."""

    def __init__(self, observed: ObservedState) -> None:
        self.facts = observed.facts
        self.clusters = dict(observed.clusters)
        self.security_groups = dict(observed.security_groups)
        self.instances = {name: list(items) for name, items in observed.instances.items()}
        self.services = dict(observed.services)
        self.task_definitions = {
            family: list(items) for family, items in observed.task_definitions.items()
        }
        self.registered: dict[str, str] = {}  # family -> ARN registered in this pass
        every = [i for items in self.instances.values() for i in items]
        self.clock = max((i.launch_time for i in every), default=1_000_000.0)
        # Ids continue from the highest one seen, so that the model is a pure function.
        ids = [i.instance_id for i in every] + [g.group_id for g in self.security_groups.values()]
        self.serial = max((int(i.split("-", 1)[1], 16) for i in ids), default=0)

    def next_serial(self) -> int:
        self.serial += 1
        return self.serial

    def freeze(self) -> ObservedState:
        return ObservedState(
            facts=self.facts,
            clusters=self.clusters,
            security_groups=self.security_groups,
            instances={name: tuple(items) for name, items in self.instances.items() if items},
            services=self.services,
            task_definitions={
                family: tuple(items) for family, items in self.task_definitions.items() if items
            },
        )

    def apply(self, action: Action) -> None:
        """Carry out exactly what the payload says, as the shell does."""
        match action.payload:
            case CreateCluster() as payload:
                self.create_cluster(payload)
            case TagCluster(name=name, tags=tags, create=create):
                live = self.clusters.get(name)
                if live is None or live.status == "INACTIVE":
                    if create is not None:
                        self.create_cluster(create)
                else:
                    self.clusters[name] = dataclasses.replace(live, tags={**live.tags, **tags})
            case DeleteCluster(name=name):
                self.clusters[name] = dataclasses.replace(self.clusters[name], status="INACTIVE")
            case CreateSecurityGroup() as payload:
                self.create_group(payload)
            case UpdateSecurityGroup(cluster=cluster, ingress=sync, tags=tags):
                live = self.security_groups[cluster]
                self.security_groups[cluster] = dataclasses.replace(
                    live,
                    ranges=(live.ranges - sync.revoke) | sync.authorize,
                    tags={**live.tags, **tags},
                )
            case ReplaceSecurityGroup(create=create):
                self.create_group(create)
            case DeleteSecurityGroup(group_id=group_id):
                self.security_groups = {
                    cluster: group
                    for cluster, group in self.security_groups.items()
                    if group.group_id != group_id
                }
            case LaunchInstance() as payload:
                self.launch(payload)
            case ReplaceInstance(instance_id=instance_id, launch=launch):
                self.launch(launch)
                self.terminate(instance_id)
            case TerminateInstance(instance_id=instance_id):
                self.terminate(instance_id)
            case TagInstance(instance_id=instance_id, tags=tags):
                for items in self.instances.values():
                    items[:] = [
                        dataclasses.replace(i, tags={**i.tags, **tags})
                        if i.instance_id == instance_id
                        else i
                        for i in items
                    ]
            case RegisterTaskDefinition(desired=desired):
                self.register(desired)
            case DeregisterTaskDefinition(arn=arn):
                family = family_of(arn)
                self.task_definitions[family] = [
                    dataclasses.replace(r, status="INACTIVE") if r.arn == arn else r
                    for r in self.task_definitions[family]
                ]
            case CreateService(desired=desired, revision=revision):
                self.create_service(desired, self.arn_of(revision))
            case UpdateService() as payload:
                self.update_service(payload)
            case DeleteService(cluster=cluster, name=name):
                del self.services[(cluster, name)]
            case None:
                raise AssertionError(f"no payload: {action.sentence()}")

    def create_cluster(self, payload: CreateCluster) -> None:
        self.clusters[payload.name] = LiveCluster(
            name=payload.name,
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{payload.name}",
            status="ACTIVE",
            tags=dict(payload.tags),
        )

    def create_group(self, payload: CreateSecurityGroup) -> None:
        desired = payload.desired
        self.security_groups[desired.cluster] = LiveSecurityGroup(
            group_id=f"sg-{self.next_serial():08x}",
            name=desired.name,
            vpc_id=desired.vpc_id,
            ranges=payload.ingress.authorize,
            tags=dict(desired.tags),
        )

    def launch(self, payload: LaunchInstance) -> None:
        fleet = payload.fleet
        first = payload.attempts[0]  # the model never refuses capacity
        self.clock += 1
        self.instances.setdefault(fleet.cluster, []).append(
            LiveInstance(
                instance_id=f"i-{self.next_serial():017x}",
                state="pending",
                instance_type=fleet.instance_type,
                image_id=fleet.image_id,
                lifecycle=first.market,
                private_ip=None,
                launch_time=self.clock,
                tags=dict(fleet.tags),
                subnet_id=first.subnet_id,
            )
        )

    def terminate(self, instance_id: str) -> None:
        for items in self.instances.values():
            items[:] = [i for i in items if i.instance_id != instance_id]

    def register(self, desired: DesiredTaskDefinition) -> None:
        revisions = self.task_definitions.setdefault(desired.family, [])
        number = max((r.revision for r in revisions), default=0) + 1
        arn = task_definition_arn(desired.family, number)
        revisions.append(
            LiveTaskDefinition(
                arn=arn,
                family=desired.family,
                revision=number,
                status="ACTIVE",
                content=normalise_task_definition(desired.content),
                tags=dict(desired.tags),
            )
        )
        self.registered[desired.family] = arn

    def arn_of(self, revision: RevisionRef) -> str:
        if isinstance(revision, ExistingRevision):
            return revision.arn
        return self.registered[revision.family]

    def create_service(self, desired: DesiredService, arn: str) -> None:
        self.services[(desired.cluster, desired.name)] = LiveService(
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/{desired.cluster}/{desired.name}",
            name=desired.name,
            cluster=desired.cluster,
            status="ACTIVE",
            desired_count=desired.desired_count,
            running_count=0,
            pending_count=0,
            task_definition=arn,
            deployments=(),
            placement_constraints=desired.placement_constraints,
            placement_strategy=desired.placement_strategy,
            deployment_configuration=desired.deployment_configuration,
            tags={**desired.tags, TASK_DEFINITION_TAG: arn},
        )

    def update_service(self, payload: UpdateService) -> None:
        desired = payload.desired
        live = self.services.get((desired.cluster, desired.name))
        arn = self.arn_of(payload.revision)
        if live is None:
            self.create_service(desired, arn)
            return
        tags = {**live.tags, **payload.tags}
        if payload.record_revision:
            tags[TASK_DEFINITION_TAG] = arn
        self.services[(desired.cluster, desired.name)] = dataclasses.replace(
            live,
            desired_count=(
                live.desired_count if payload.desired_count is None else payload.desired_count
            ),
            task_definition=arn if payload.set_task_definition else live.task_definition,
            placement_constraints=(
                live.placement_constraints
                if payload.placement_constraints is None
                else payload.placement_constraints
            ),
            placement_strategy=(
                live.placement_strategy
                if payload.placement_strategy is None
                else payload.placement_strategy
            ),
            deployment_configuration=(
                live.deployment_configuration
                if payload.deployment_configuration is None
                else payload.deployment_configuration
            ),
            tags=tags,
        )


def apply_to_model(plan: Plan, observed: ObservedState) -> ObservedState:
    """AWS after the shell has carried out `plan` (detected drift is never applied)."""
    model = _Model(observed)
    for action in plan.actions:
        model.apply(action)
    return model.freeze()


def converge(desired: DesiredState, model: ObservedState) -> ObservedState:
    return apply_to_model(plan_against(desired, model), model)


def summary(plan: Plan) -> list[tuple[str, str, str, str]]:
    """A plan as (verb, resource, id, reason) rows: what the tables assert on."""
    return [(a.verb, a.resource, a.id, a.reason) for a in plan.actions]
