"""What the shell is to write, per resource kind: the typed payload of each action.

Owns: one frozen dataclass per kind of write, holding exactly what the shell sends
(built by `planning` from the one delta of `diffs`), so that the shell executes an
action without comparing desired with live. Must not: decide anything (that is
`planning`), or do I/O.

What the shell still reads before it writes, and why: a create first looks for its
resource by name or tags (AWS idempotency does not hold on moto, and a crashed pass may
have done it already); every change re-reads the live tags and refuses a resource
without the managed-by tag (CONTRACT §5). Those re-reads never widen what is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.core.states import (
    DesiredFleet,
    DesiredSecurityGroup,
    DesiredService,
    DesiredTaskDefinition,
    IngressRange,
)

Market = Literal["spot", "on-demand"]

# --- task-definition revisions -----------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class ExistingRevision:
    """A revision that exists: the service is to run exactly this ARN."""

    arn: str


@dataclass(frozen=True, kw_only=True)
class NewRevision:
    """The revision that this plan's `RegisterTaskDefinition` of the family registers
    (always earlier in the plan, under the same key)."""

    family: str
    content_hash: str


RevisionRef = ExistingRevision | NewRevision

# --- clusters ---------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CreateCluster:
    name: str
    tags: Mapping[str, str]


@dataclass(frozen=True, kw_only=True)
class TagCluster:
    """Write these tags on the cluster (created with `create` if it is gone meanwhile;
    with `create` None, a cluster gone meanwhile is left gone and nothing is written)."""

    name: str
    tags: Mapping[str, str]
    create: CreateCluster | None


@dataclass(frozen=True, kw_only=True)
class DeleteCluster:
    name: str


# --- security groups --------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SyncIngress:
    """Rules as EC2 stores them: authorized first, then revoked, so that a port that stays
    open while its range changes is never closed in between."""

    authorize: frozenset[IngressRange] = frozenset()
    revoke: frozenset[IngressRange] = frozenset()

    def __bool__(self) -> bool:
        return bool(self.authorize or self.revoke)


@dataclass(frozen=True, kw_only=True)
class CreateSecurityGroup:
    desired: DesiredSecurityGroup
    ingress: SyncIngress  # every desired range, authorized once the group exists


@dataclass(frozen=True, kw_only=True)
class UpdateSecurityGroup:
    group_id: str
    cluster: str
    ingress: SyncIngress
    tags: Mapping[str, str]  # to write
    create: CreateSecurityGroup  # if the group is gone meanwhile


@dataclass(frozen=True, kw_only=True)
class ReplaceSecurityGroup:
    """A group cannot move VPC: create the new one, then delete the old one."""

    group_id: str
    create: CreateSecurityGroup


@dataclass(frozen=True, kw_only=True)
class DeleteSecurityGroup:
    group_id: str


# --- instances --------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, order=True)
class LaunchAttempt:
    market: Market
    subnet_id: str | None  # None = the default subnet


@dataclass(frozen=True, kw_only=True)
class LaunchInstance:
    """Launch one instance of `fleet`, trying `attempts` in order until one is not
    refused for capacity. Skipped when `fleet.count` fitting instances already live."""

    fleet: DesiredFleet
    attempts: tuple[LaunchAttempt, ...]
    # Empty: the cluster's managed security group, created earlier in this plan.
    security_group_ids: tuple[str, ...] = ()


@dataclass(frozen=True, kw_only=True)
class ReplaceInstance:
    """Launch a replacement (tagged with the instance it replaces), then terminate."""

    instance_id: str
    launch: LaunchInstance


@dataclass(frozen=True, kw_only=True)
class TerminateInstance:
    """Tagged `RETIRED_TAG` first, so that a terminated instance still in view is known
    to have left by our hand, not behind our back."""

    instance_id: str


@dataclass(frozen=True, kw_only=True)
class TagInstance:
    """Restore the fleet's tags that someone removed from a managed instance."""

    instance_id: str
    tags: Mapping[str, str]


# --- task definitions and services ------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class RegisterTaskDefinition:
    desired: DesiredTaskDefinition


@dataclass(frozen=True, kw_only=True)
class DeregisterTaskDefinition:
    arn: str


@dataclass(frozen=True, kw_only=True)
class CreateService:
    desired: DesiredService
    revision: RevisionRef


@dataclass(frozen=True, kw_only=True)
class UpdateService:
    """Exactly the fields to send to `UpdateService` (None / False: leave as it is), then
    the tags to write. `revision` is what the service runs afterwards."""

    desired: DesiredService
    revision: RevisionRef
    desired_count: int | None = None
    set_task_definition: bool = False
    placement_constraints: tuple[Mapping[str, str], ...] | None = None
    placement_strategy: tuple[Mapping[str, str], ...] | None = None
    deployment_configuration: Mapping[str, Any] | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    record_revision: bool = False  # write TASK_DEFINITION_TAG = the revision's ARN

    @property
    def create(self) -> CreateService:
        """If the service is gone meanwhile."""
        return CreateService(desired=self.desired, revision=self.revision)


@dataclass(frozen=True, kw_only=True)
class DeleteService:
    cluster: str
    name: str


Payload = (
    CreateCluster
    | TagCluster
    | DeleteCluster
    | CreateSecurityGroup
    | UpdateSecurityGroup
    | ReplaceSecurityGroup
    | DeleteSecurityGroup
    | LaunchInstance
    | ReplaceInstance
    | TerminateInstance
    | TagInstance
    | RegisterTaskDefinition
    | DeregisterTaskDefinition
    | CreateService
    | UpdateService
    | DeleteService
)
