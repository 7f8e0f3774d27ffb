"""Builders for the pure core's tests: specs, account facts, and a model of AWS.

`apply_to_model` is a small, pure model of what the shell does with each action kind,
so that "apply the plan, then plan again" can be checked without AWS. It follows the
shell's contract (see `controller.core.plans.Action` and `controller.core.planning`),
not moto's quirks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from typing import Any

from controller.catalog import AMI_PARAMETERS
from controller.core.desired import desired_state
from controller.core.normalising import normalise_task_definition
from controller.core.planning import families_to_read, plan
from controller.core.plans import Action, Plan
from controller.core.states import (
    TASK_DEFINITION_TAG,
    AccountFacts,
    DesiredCluster,
    DesiredService,
    DesiredState,
    DesiredTaskDefinition,
    LiveCluster,
    LiveInstance,
    LiveSecurityGroup,
    LiveService,
    LiveTaskDefinition,
    ObservedState,
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

    # one method per resource kind, named after Action.resource

    def cluster(self, action: Action) -> None:
        if action.verb == "delete":
            deleted = self.clusters[action.id]
            self.clusters[action.id] = dataclasses.replace(deleted, status="INACTIVE")
            return
        desired: DesiredCluster = action.desired
        live = self.clusters.get(action.id)
        tags = {**(live.tags if live and action.verb == "update" else {}), **desired.tags}
        self.clusters[action.id] = LiveCluster(
            name=desired.name,
            arn=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/{desired.name}",
            status="ACTIVE",
            tags=tags,
        )

    def security_group(self, action: Action) -> None:
        if action.verb == "delete":
            del self.security_groups[action.cluster]
            return
        desired = action.desired
        live = self.security_groups.get(action.cluster)
        group_id = (
            live.group_id
            if live is not None and action.verb == "update"
            else f"sg-{self.next_serial():08x}"
        )
        self.security_groups[action.cluster] = LiveSecurityGroup(
            group_id=group_id,
            name=desired.name,
            vpc_id=desired.vpc_id,
            ingress=frozenset(desired.ingress),
            tags={**(live.tags if live and action.verb == "update" else {}), **desired.tags},
        )

    def instance(self, action: Action) -> None:
        items = self.instances.setdefault(action.cluster, [])
        if action.verb in ("delete", "replace"):
            items[:] = [i for i in items if i.instance_id != action.id]
        if action.verb in ("create", "replace"):
            fleet = action.desired
            self.clock += 1
            items.append(
                LiveInstance(
                    instance_id=f"i-{self.next_serial():017x}",
                    state="pending",
                    instance_type=fleet.instance_type,
                    image_id=fleet.image_id,
                    lifecycle=fleet.market,
                    private_ip=None,
                    launch_time=self.clock,
                    tags=dict(fleet.tags),
                )
            )

    def task_definition(self, action: Action) -> None:
        if action.verb == "delete":
            family = action.live.family
            self.task_definitions[family] = [
                dataclasses.replace(r, status="INACTIVE") if r.arn == action.id else r
                for r in self.task_definitions[family]
            ]
            return
        desired: DesiredTaskDefinition = action.desired
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

    def service(self, action: Action) -> None:
        key = (action.cluster, action.id)
        if action.verb == "delete":
            del self.services[key]
            return
        desired: DesiredService = action.desired
        arn = action.task_definition_arn or self.registered[desired.task_family]
        live = self.services.get(key)
        keep_tags = live.tags if live is not None and action.verb == "update" else {}
        self.services[key] = LiveService(
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
            tags={**keep_tags, **desired.tags, TASK_DEFINITION_TAG: arn},
        )


def apply_to_model(plan: Plan, observed: ObservedState) -> ObservedState:
    """AWS after the shell has carried out `plan` (detected drift is never applied)."""
    model = _Model(observed)
    for action in plan.actions:
        getattr(model, action.resource.replace("-", "_"))(action)
    return model.freeze()


def converge(desired: DesiredState, model: ObservedState) -> ObservedState:
    return apply_to_model(plan_against(desired, model), model)


def summary(plan: Plan) -> list[tuple[str, str, str, str]]:
    """A plan as (verb, resource, id, reason) rows: what the tables assert on."""
    return [(a.verb, a.resource, a.id, a.reason) for a in plan.actions]
