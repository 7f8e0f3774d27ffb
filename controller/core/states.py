"""The two models the planner compares: the desired state (from specs) and the observed
state (read from AWS), as frozen dataclasses.

Owns: the shape of both models and the ownership tag names (CONTRACT §5).
Must not: do I/O, or hold any AWS client type. The AWS shell (`controller.aws`) builds
`ObservedState` from API responses and executes `Plan` actions; `controller.core.desired`
builds `DesiredState` from specs.

Conventions:
- Tags are plain `{key: value}` mappings on both sides.
- `content` of a desired task definition is the `RegisterTaskDefinition` request
  (botocore camelCase keys, without `tags`) exactly as the shell sends it; `content` of a
  live revision is `normalising.normalise_task_definition` of the described
  `taskDefinition`. Compare the two with `normalising.same_content`; `content_hash` is
  taken over the normalised form, so equal content hashes alike on both sides.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

# --- ownership (CONTRACT §5) ----------------------------------------------------------

MANAGED_BY = "ecs-infer:managed-by"
MANAGED_BY_VALUE = "ecs-infer"
DEPLOYMENT_TAG = "ecs-infer:deployment"
CLUSTER_TAG = "ecs-infer:cluster"
# Our own bookkeeping, recorded on the resources themselves (there is no state file):
SPEC_HASH_TAG = "ecs-infer:spec-hash"  # hash of the desired fields last applied
TASK_DEFINITION_HASH_TAG = "ecs-infer:task-definition-hash"  # content hash of a revision
DELETION_POLICY_TAG = "ecs-infer:deletion-policy"  # so a removed spec's policy is known
NEURON_CORES_TAG = "ecs-infer:neuron-cores"  # per replica, on task definitions
# On a service: the ARN of the task-definition revision we last set on it (the shell
# writes it with the update). A service running another revision has drifted.
TASK_DEFINITION_TAG = "ecs-infer:task-definition"
# On a cluster: the fleet size last applied, so that a fleet found short of it lost an
# instance behind our back (drift) rather than grew in the spec (a spec change).
FLEET_SIZE_TAG = "ecs-infer:fleet-size"
# On an instance: written just before we terminate it, so that a terminated instance
# still in view without it was terminated by someone else (drift).
RETIRED_TAG = "ecs-infer:retired"


def is_managed(tags: Mapping[str, str]) -> bool:
    return tags.get(MANAGED_BY) == MANAGED_BY_VALUE


def image_path(model_container: str) -> str:
    """The field path (`diffs`) of the model container's image in a task definition."""
    return f"containerDefinitions[{model_container}].image"


def family_of(task_definition_arn: str) -> str:
    """`arn:aws:ecs:r:a:task-definition/ecs-neuron:3` (or `ecs-neuron:3`) -> `ecs-neuron`."""
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


# --- facts about the account, read before the desired state can be built --------------


@dataclass(frozen=True, kw_only=True)
class AccountFacts:
    region: str
    account_id: str
    default_vpc_id: str | None
    vpc_cidrs: Mapping[str, str] = field(default_factory=dict)  # vpc id -> CIDR
    subnet_vpcs: Mapping[str, str] = field(default_factory=dict)  # subnet id -> vpc id
    default_subnet_ids: tuple[str, ...] = ()  # subnets of the default VPC, sorted
    ami_ids: Mapping[str, str] = field(default_factory=dict)  # SSM parameter -> AMI id


# --- desired --------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class IngressRule:
    port: int
    cidr: str
    protocol: str = "tcp"


@dataclass(frozen=True, kw_only=True)
class DesiredSecurityGroup:
    name: str  # "ecs-infer-<cluster>"
    cluster: str
    vpc_id: str
    description: str
    ingress: tuple[IngressRule, ...]  # sorted
    tags: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class DesiredFleet:
    """The EC2 instances of one cluster. Instances are interchangeable: identity is by tags."""

    cluster: str
    count: int  # bin-packed from the deployments' NeuronCores, within min/max
    instance_type: str
    image_id: str
    market: Literal["spot", "on-demand"]
    on_demand_fallback: bool
    instance_profile: str
    security_group_ids: tuple[str, ...]  # empty = the managed security group of the cluster
    subnet_ids: tuple[str, ...]
    key_name: str | None
    user_data: str  # plain text; the shell base64-encodes as the API requires
    tags: Mapping[str, str]  # includes Name=<cluster> and the ownership tags


@dataclass(frozen=True, kw_only=True)
class DesiredCluster:
    name: str
    tags: Mapping[str, str]
    deletion_policy: Literal["delete", "retain"]
    drift_policy: Literal["enforce", "detect"] = "enforce"
    """For the cluster, its security group and its instances."""
    fleet: DesiredFleet
    security_group: DesiredSecurityGroup | None  # None when the spec names its own groups


@dataclass(frozen=True, kw_only=True)
class DesiredTaskDefinition:
    family: str
    deployment: str
    content: Mapping[str, Any]  # RegisterTaskDefinition request without tags, as sent
    content_hash: str  # sha256 hex prefix of the normalised content
    tags: Mapping[str, str]  # ownership + TASK_DEFINITION_HASH_TAG + NEURON_CORES_TAG


@dataclass(frozen=True, kw_only=True)
class DesiredService:
    name: str
    cluster: str
    deployment: str
    desired_count: int
    task_family: str
    placement_constraints: tuple[Mapping[str, str], ...]
    # The deployment configuration we set, as ECS describes it (`normalising`).
    deployment_configuration: Mapping[str, Any] = field(default_factory=dict)
    placement_strategy: tuple[Mapping[str, str], ...] = ()
    # hash of (desired_count, task content hash, deletion policy, deployment name): what
    # we apply to the service (placement lives in the task definition). See `desired`.
    spec_hash: str
    tags: Mapping[str, str]  # ownership + SPEC_HASH_TAG + TASK_DEFINITION_HASH_TAG + policy


@dataclass(frozen=True, kw_only=True)
class ProbeSettings:
    model_name: str
    grpc_port: int
    interval_s: float
    timeout_s: float
    sequence_length: int
    latency_objective_s: float
    output_filter: tuple[str, ...] = ()
    """The outputs a Predict asks for; empty: all of them."""


@dataclass(frozen=True, kw_only=True)
class DesiredDeployment:
    name: str
    cluster: str
    neuron_cores: int
    replicas: int
    drift_policy: Literal["enforce", "detect"]
    deletion_policy: Literal["delete", "retain"]
    task_definition: DesiredTaskDefinition
    service: DesiredService
    probe: ProbeSettings
    ignore: frozenset[str] = frozenset()
    """Field paths (`diffs`) that others own: neither drift nor corrected, in the plan and
    in what apply writes; from `spec.ignore` (CONTRACT §7) by `desired.IGNORED_PATHS`."""

    @property
    def ignores_image(self) -> bool:
        return image_path(self.probe.model_name) in self.ignore


@dataclass(frozen=True, kw_only=True)
class DesiredState:
    clusters: Mapping[str, DesiredCluster]
    deployments: Mapping[str, DesiredDeployment]
    # Things the user should know about the specs themselves (e.g. a fleet capped by
    # maxInstances below what the replicas need); `planning` copies them into the plan.
    warnings: tuple[str, ...] = ()
    # Specs left out because the account lacks a fact they need (see `desired`), by
    # name, with why: nothing is planned for them, and their keys fail alone.
    unresolved_clusters: Mapping[str, str] = field(default_factory=dict)
    unresolved_deployments: Mapping[str, str] = field(default_factory=dict)

    @property
    def is_empty(self) -> bool:
        """No spec at all (an empty folder), as opposed to specs that are unresolved."""
        return not (
            self.clusters
            or self.deployments
            or self.unresolved_clusters
            or self.unresolved_deployments
        )


# --- observed -------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class LiveCluster:
    name: str
    arn: str
    status: str  # ACTIVE, PROVISIONING, DEPROVISIONING, FAILED, INACTIVE
    tags: Mapping[str, str]


# Port ranges wider than this are kept as their first port only: a managed group never
# opens ranges, so a wide one is drift either way and need not be expanded.
MAX_EXPANDED_PORTS = 1024


@dataclass(frozen=True, order=True)
class IngressRange:
    """One ingress rule as EC2 stores it: a protocol, a port range (-1, -1 for all
    ports) and one CIDR."""

    protocol: str
    first: int
    last: int
    cidr: str


def expand_ranges(ranges: Iterable[IngressRange]) -> frozenset[IngressRule]:
    """One rule per (port, CIDR); port ranges expanded, "all traffic" as port -1."""
    rules: set[IngressRule] = set()
    for found in ranges:
        if found.first < 0 or found.protocol == "-1":
            ports: Iterable[int] = [-1]
        elif found.last - found.first >= MAX_EXPANDED_PORTS:
            ports = [found.first]
        else:
            ports = range(found.first, found.last + 1)
        rules.update(IngressRule(port, found.cidr, found.protocol) for port in ports)
    return frozenset(rules)


@dataclass(frozen=True, kw_only=True)
class LiveSecurityGroup:
    group_id: str
    name: str
    vpc_id: str
    ranges: frozenset[IngressRange]  # as read: what a sync revokes is exactly this
    tags: Mapping[str, str]

    @property
    def ingress(self) -> frozenset[IngressRule]:
        """The rules per (port, CIDR): the plan's view, compared with the spec's."""
        return expand_ranges(self.ranges)


@dataclass(frozen=True, kw_only=True)
class LiveInstance:
    instance_id: str
    state: str  # pending, running, shutting-down, terminated, stopping, stopped
    instance_type: str
    image_id: str
    lifecycle: Literal["spot", "on-demand"]
    private_ip: str | None
    launch_time: float  # epoch seconds
    tags: Mapping[str, str]
    subnet_id: str | None = None  # where it runs: launches spread by it

    @property
    def alive(self) -> bool:
        return self.state in ("pending", "running")


@dataclass(frozen=True, kw_only=True)
class LiveTaskDefinition:
    arn: str
    family: str
    revision: int
    status: str  # ACTIVE, INACTIVE
    content: Mapping[str, Any]  # normalised like DesiredTaskDefinition.content
    tags: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class LiveDeployment:
    """One entry of an ECS service's `deployments` (rollouts)."""

    id: str
    status: str  # PRIMARY, ACTIVE, INACTIVE
    task_definition: str  # ARN
    desired_count: int
    running_count: int
    pending_count: int
    rollout_state: str | None  # COMPLETED, IN_PROGRESS, FAILED
    rollout_state_reason: str | None


@dataclass(frozen=True, kw_only=True)
class LiveService:
    arn: str
    name: str
    cluster: str
    status: str  # ACTIVE, DRAINING, INACTIVE
    desired_count: int
    running_count: int
    pending_count: int
    task_definition: str  # ARN
    deployments: tuple[LiveDeployment, ...]
    placement_constraints: tuple[Mapping[str, str], ...]
    tags: Mapping[str, str]
    # As `normalising.normalise_deployment_configuration` reads it: ECS's defaults filled.
    deployment_configuration: Mapping[str, Any] = field(default_factory=dict)
    placement_strategy: tuple[Mapping[str, str], ...] = ()

    @property
    def replicas_not_running(self) -> int:
        """Replicas the service wants that are not running: ECS's `pendingCount` (placed,
        starting) plus those ECS could not place at all, which it counts nowhere (it
        only reports "unable to place a task" as a service event)."""
        return max(self.desired_count - self.running_count, self.pending_count, 0)


@dataclass(frozen=True, kw_only=True)
class LiveContainerInstance:
    """An EC2 instance as ECS sees it: registered in a cluster, with what it offers."""

    arn: str
    cluster: str
    ec2_instance_id: str
    status: str  # ACTIVE, DRAINING, REGISTERING, DEREGISTERING, INACTIVE
    agent_connected: bool
    running_tasks: int
    pending_tasks: int
    # Integer resources (CPU, MEMORY, and whatever the agent registers), by name.
    registered: Mapping[str, int] = field(default_factory=dict)
    remaining: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, kw_only=True)
class LiveTask:
    """A task that runs or is meant to: what runs where, with which revision."""

    arn: str
    cluster: str
    group: str  # "service:<name>" for a service's tasks
    task_definition: str  # ARN
    container_instance: str | None  # ARN; None for a task not placed yet
    last_status: str  # PROVISIONING, PENDING, RUNNING, ... STOPPED
    desired_status: str

    @property
    def service(self) -> str | None:
        prefix = "service:"
        return self.group.removeprefix(prefix) if self.group.startswith(prefix) else None


@dataclass(frozen=True, kw_only=True)
class ObservedState:
    facts: AccountFacts
    # Every cluster named by a spec, and every managed cluster (by tag), by name.
    clusters: Mapping[str, LiveCluster]
    # Managed security groups, by the cluster tag.
    security_groups: Mapping[str, LiveSecurityGroup]
    # Managed instances that are not terminated, by the cluster tag.
    instances: Mapping[str, tuple[LiveInstance, ...]]
    # ACTIVE services of the clusters above, by (cluster, service name).
    services: Mapping[tuple[str, str], LiveService]
    # Task definition revisions read for a family (ACTIVE ones, oldest first). Only the
    # families `planning.families_to_read` asks for are read: a no-op pass reads none.
    task_definitions: Mapping[str, tuple[LiveTaskDefinition, ...]]
    # Container instances of the ACTIVE clusters above, by cluster.
    container_instances: Mapping[str, tuple[LiveContainerInstance, ...]] = field(
        default_factory=dict
    )
    # Tasks of the ACTIVE clusters above that are meant to run (desired RUNNING), by
    # cluster: what runs where, with its task definition.
    tasks: Mapping[str, tuple[LiveTask, ...]] = field(default_factory=dict)
    # The newest ACTIVE revision (ARN) of each desired family, so that a revision
    # registered out of band is seen (None: the family has none). A family missing here
    # was not read: nothing is judged about it.
    newest_revisions: Mapping[str, str | None] = field(default_factory=dict)
    # Revisions read one by one, by ARN (`planning.revisions_to_describe`): the newest
    # of a family when it is not the one we recorded, and a revision a service runs
    # that is not the one we recorded on it.
    described_revisions: Mapping[str, LiveTaskDefinition] = field(default_factory=dict)

    def revision(self, arn: str) -> LiveTaskDefinition | None:
        """A revision read either way (by family or one by one), if it was."""
        found = self.described_revisions.get(arn)
        if found is not None:
            return found
        for revision in self.task_definitions.get(family_of(arn), ()):
            if revision.arn == arn:
                return revision
        return None
