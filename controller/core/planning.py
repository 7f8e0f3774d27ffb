"""Planning: the actions that bring AWS from the observed state to the desired state.

Owns: deciding what to create, update, replace or delete, in which order, and why
(`missing`, `spec change`, `drift`, `orphan`), with field-level diffs; refusing to touch
what ecs-infer does not own (CONTRACT §5); and telling the shell which task-definition
families it must read (`families_to_read`). Must not: do I/O, or know how an action is
carried out (`controller.aws`).

Every action belongs to one work-queue key: `cluster/<name>` (the cluster, its security
group and its instances) or `deployment/<name>` (a task definition and a service).
`plan_cluster` and `plan_deployment` plan one key; `plan` plans them all and orders the
result so that the whole plan can be applied top to bottom:

    cluster create/update → security group create/update/replace → instance
    create/replace → task-definition create → service create/update → service delete →
    task-definition delete → instance delete → security group delete → cluster delete

How "drift" is told from "spec change": services and managed security groups carry the
hash of what was last applied (SPEC_HASH_TAG). Live differing while that hash equals
the current desired hash means someone changed AWS; a different hash means the spec
moved on. Resources without such a record (clusters, instances) use the nearest
honest answer, documented where it is decided.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from controller.core.diffs import (
    FieldChange,
    cluster_delta,
    fits,
    instance_delta,
    security_group_delta,
    service_delta,
)
from controller.core.normalising import normalise_task_definition
from controller.core.plans import Action, Plan, Reason, Verb
from controller.core.states import (
    DELETION_POLICY_TAG,
    DEPLOYMENT_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredCluster,
    DesiredDeployment,
    DesiredState,
    LiveCluster,
    LiveInstance,
    LiveService,
    LiveTaskDefinition,
    ObservedState,
    is_managed,
)

EMPTY_SPECS_WARNING = "the spec folder is empty: nothing is pruned"
# Old managed revisions of a family kept for rollbacks; older ones are deregistered.
REVISIONS_KEPT = 3
# What a service's `taskDefinition` will read once this pass registers a new revision.
NEW_REVISION = "(new revision)"

# The order in which a plan is applied: creations outside-in, deletions inside-out.
PHASES: dict[tuple[str, str], int] = {
    ("cluster", "create"): 0,
    ("cluster", "update"): 0,
    ("security-group", "create"): 1,
    ("security-group", "update"): 1,
    ("security-group", "replace"): 1,
    ("instance", "create"): 2,
    ("instance", "replace"): 2,
    ("task-definition", "create"): 3,
    ("service", "create"): 4,
    ("service", "update"): 4,
    ("service", "delete"): 5,
    ("task-definition", "delete"): 6,
    ("instance", "delete"): 7,
    ("security-group", "delete"): 8,
    ("cluster", "delete"): 9,
}

# Statuses of resources that are gone as far as planning is concerned.
_GONE_CLUSTER = frozenset({"INACTIVE"})
_GONE_SERVICE = frozenset({"INACTIVE", "DRAINING"})
# Instances on their way out already: never deleted twice.
_LEAVING_INSTANCE = frozenset({"shutting-down", "terminated"})


def cluster_key(name: str) -> str:
    return f"cluster/{name}"


def deployment_key(name: str) -> str:
    return f"deployment/{name}"


def family_of(task_definition_arn: str) -> str:
    """`arn:...:task-definition/bert:3` (or `bert:3`) → `bert`."""
    return task_definition_arn.rsplit("/", 1)[-1].rsplit(":", 1)[0]


# --- what both halves of the planner need to agree on ----------------------------------


@dataclass(frozen=True, kw_only=True)
class _Index:
    """Lookups built once per (desired, observed), so that planning stays linear."""

    desired: DesiredState
    observed: ObservedState
    # Managed services that carry a deployment tag, by that tag.
    services_by_deployment: Mapping[str, tuple[LiveService, ...]]
    # Services that are not gone, by cluster.
    services_by_cluster: Mapping[str, tuple[LiveService, ...]]
    desired_families: frozenset[str]
    # (cluster, service name) of every desired service.
    desired_locations: frozenset[tuple[str, str]]
    # Revisions that services outliving this plan run or record: never deregistered,
    # whoever owns the service now (a tag removed by hand does not stop its tasks).
    revisions_in_use: frozenset[str]

    def stale_services(self, deployment: str) -> list[LiveService]:
        """Managed services of `deployment` that are not where the spec wants it.

        A removed deployment's services, and the old service of one that moved to
        another cluster or service name.
        """
        # A service that a desired deployment wants (e.g. a renamed deployment keeping
        # its service name) is that deployment's to update, never an orphan.
        return [
            service
            for service in self.services_by_deployment.get(deployment, ())
            if service.status not in _GONE_SERVICE
            and (service.cluster, service.name) not in self.desired_locations
        ]

    def deletes_service(self, service: LiveService) -> bool:
        """Whether this plan deletes `service` (as a stale service of its deployment)."""
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if self.desired.is_empty or deployment is None or not is_managed(service.tags):
            return False
        if service.status in _GONE_SERVICE or _retained(service.tags):
            return False
        return (service.cluster, service.name) not in self.desired_locations


def _index(desired: DesiredState, observed: ObservedState) -> _Index:
    by_deployment: dict[str, list[LiveService]] = {}
    by_cluster: dict[str, list[LiveService]] = {}
    for service in observed.services.values():
        if service.status in _GONE_SERVICE:
            continue
        by_cluster.setdefault(service.cluster, []).append(service)
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if deployment is not None and is_managed(service.tags):
            by_deployment.setdefault(deployment, []).append(service)
    index = _Index(
        desired=desired,
        observed=observed,
        services_by_deployment={name: tuple(s) for name, s in by_deployment.items()},
        services_by_cluster={name: tuple(s) for name, s in by_cluster.items()},
        desired_families=frozenset(
            deployment.task_definition.family for deployment in desired.deployments.values()
        ),
        desired_locations=frozenset(
            (d.service.cluster, d.service.name) for d in desired.deployments.values()
        ),
        revisions_in_use=frozenset(),
    )
    in_use = {
        arn
        for services in by_cluster.values()
        for service in services
        if not index.deletes_service(service)
        for arn in (service.task_definition, service.tags.get(TASK_DEFINITION_TAG))
        if arn
    }
    return dataclasses.replace(index, revisions_in_use=frozenset(in_use))


def _foreign_cluster(observed: ObservedState, name: str) -> LiveCluster | None:
    """The live cluster of this name if it exists and is not ours."""
    live = observed.clusters.get(name)
    if live is None or live.status in _GONE_CLUSTER or is_managed(live.tags):
        return None
    return live


def _live_service(observed: ObservedState, deployment: DesiredDeployment) -> LiveService | None:
    return observed.services.get((deployment.service.cluster, deployment.service.name))


def _is_foreign_service(service: LiveService | None) -> bool:
    """A live service of the desired name that ecs-infer does not own."""
    return (
        service is not None and service.status not in _GONE_SERVICE and not is_managed(service.tags)
    )


def _task_definition_recorded(deployment: DesiredDeployment, service: LiveService | None) -> bool:
    """Whether the service records that it runs the desired content: no read needed."""
    return (
        service is not None
        and service.status not in _GONE_SERVICE
        and is_managed(service.tags)
        and service.tags.get(TASK_DEFINITION_HASH_TAG) == deployment.task_definition.content_hash
        and bool(service.tags.get(TASK_DEFINITION_TAG))
    )


def _retained(tags: Mapping[str, str]) -> bool:
    return tags.get(DELETION_POLICY_TAG) == "retain"


def families_to_read(desired: DesiredState, observed: ObservedState) -> set[str]:
    """The task-definition families whose revisions the shell must read before `plan`.

    A deployment whose service records the desired content hash and the revision we set
    needs no read, so a pass over deployments that are in sync reads none.
    """
    index = _index(desired, observed)
    families: set[str] = set()
    for deployment in desired.deployments.values():
        if _foreign_cluster(observed, deployment.cluster) is not None:
            continue
        service = _live_service(observed, deployment)
        if _is_foreign_service(service):
            continue
        if not _task_definition_recorded(deployment, service):
            families.add(deployment.task_definition.family)
    # Removed deployments: their revisions are deregistered with their services. A
    # family that a desired deployment still uses is that deployment's business.
    removed: set[str] = set()
    for name, services in index.services_by_deployment.items():
        if name in desired.deployments:
            continue
        removed |= {family_of(s.task_definition) for s in services if index.deletes_service(s)}
    return families | (removed - index.desired_families)


# --- one key at a time ------------------------------------------------------------------


@dataclass
class _KeyPlan:
    """The actions, detected drift and warnings of one work-queue key, being built."""

    key: str
    actions: list[Action] = field(default_factory=list)
    detected_drift: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(self, action: Action, *, detect_only: bool = False) -> None:
        if detect_only and action.reason == "drift":
            self.detected_drift.append(action)
        else:
            self.actions.append(action)

    def to_plan(self, *, empty_specs: bool) -> Plan:
        actions = self.actions
        if empty_specs:
            # CONTRACT §5: an empty folder never deletes anything.
            actions = [action for action in actions if action.verb != "delete"]
        return Plan(
            actions=tuple(actions),
            detected_drift=tuple(self.detected_drift),
            warnings=tuple(self.warnings),
        )


def _reason_by_record(live_tags: Mapping[str, str], spec_hash: str) -> Reason:
    return "drift" if live_tags.get(SPEC_HASH_TAG) == spec_hash else "spec change"


# --- clusters ---------------------------------------------------------------------------


def _newest_first(instances: Iterable[LiveInstance]) -> list[LiveInstance]:
    return sorted(instances, key=lambda i: (i.launch_time, i.instance_id), reverse=True)


def _plan_fleet(out: _KeyPlan, cluster: DesiredCluster, instances: Iterable[LiveInstance]) -> None:
    fleet = cluster.fleet
    alive = [i for i in instances if i.alive and is_managed(i.tags)]
    misfits = _newest_first(i for i in alive if not fits(i, fleet))
    fitting = _newest_first(i for i in alive if fits(i, fleet))
    # Scale in by dropping misfits first (they would be replaced anyway), then the
    # newest instances: the oldest have the warmest caches and the longest-placed tasks.
    excess = max(len(alive) - fleet.count, 0)
    doomed = (misfits + fitting)[:excess]
    for instance in doomed:
        out.add(
            _instance_action("delete", instance.instance_id, cluster, "spec change", live=instance)
        )
    kept_misfits = [i for i in misfits if i not in doomed]
    for instance in reversed(kept_misfits):  # oldest first: the order a rolling replace takes
        out.add(
            _instance_action(
                "replace",
                instance.instance_id,
                cluster,
                "spec change",  # an instance cannot change type or image in place
                live=instance,
                fields=instance_delta(instance, fleet).changes,
            )
        )
    kept = len(alive) - len(doomed)
    for number in range(kept + 1, fleet.count + 1):
        out.add(
            _instance_action(
                "create",
                f"{cluster.name}/instance-{number}",
                cluster,
                # Instances carry no record of what was applied: a shortfall is "missing"
                # whether the instance never existed or was terminated.
                "missing",
            )
        )


def _instance_action(
    verb: Verb,
    instance_id: str,
    cluster: DesiredCluster,
    reason: Reason,
    *,
    live: LiveInstance | None = None,
    fields: tuple[FieldChange, ...] = (),
) -> Action:
    return Action(
        verb=verb,
        resource="instance",
        id=instance_id,
        reason=reason,
        cluster=cluster.name,
        fields=fields,
        desired=cluster.fleet,
        live=live,
        key=cluster_key(cluster.name),
    )


def _plan_security_group(out: _KeyPlan, cluster: DesiredCluster, observed: ObservedState) -> None:
    desired = cluster.security_group
    live = observed.security_groups.get(cluster.name)
    if live is not None and not is_managed(live.tags):
        out.warnings.append(
            f"security group {live.group_id} of cluster {cluster.name} is not managed by "
            "ecs-infer: it is left alone"
        )
        return
    key = cluster_key(cluster.name)
    if desired is None:
        if live is not None:
            # The spec now names its own groups: the managed one is no longer wanted.
            out.add(
                Action(
                    verb="delete",
                    resource="security-group",
                    id=live.group_id,
                    reason="orphan",
                    cluster=cluster.name,
                    live=live,
                    key=key,
                )
            )
        return
    if live is None:
        out.add(
            Action(
                verb="create",
                resource="security-group",
                id=desired.name,
                reason="missing",
                cluster=cluster.name,
                desired=desired,
                key=key,
            )
        )
        return
    reason = _reason_by_record(live.tags, desired.tags.get(SPEC_HASH_TAG, ""))
    changes = security_group_delta(desired, live)
    if changes.touches("vpcId"):
        out.add(
            Action(
                verb="replace",
                resource="security-group",
                id=live.group_id,
                reason=reason,
                cluster=cluster.name,
                fields=tuple(c for c in changes.changes if c.path == "vpcId"),
                desired=desired,
                live=live,
                key=key,
            )
        )
        return
    if changes:
        out.add(
            Action(
                verb="update",
                resource="security-group",
                id=live.group_id,
                reason=reason,
                cluster=cluster.name,
                fields=changes.readable(),
                desired=desired,
                live=live,
                key=key,
            )
        )


def _plan_desired_cluster(out: _KeyPlan, cluster: DesiredCluster, observed: ObservedState) -> None:
    name = cluster.name
    live = observed.clusters.get(name)
    if _foreign_cluster(observed, name) is not None:
        out.warnings.append(
            f"cluster {name} exists and is not managed by ecs-infer: nothing is planned for it"
        )
        return
    key = cluster_key(name)
    if live is None or live.status in _GONE_CLUSTER:
        # Ours and deleted behind our back is drift; never seen before is missing.
        reason: Reason = "drift" if live is not None and is_managed(live.tags) else "missing"
        out.add(
            Action(
                verb="create",
                resource="cluster",
                id=name,
                reason=reason,
                cluster=name,
                desired=cluster,
                live=live,
                key=key,
            )
        )
    else:
        changes = cluster_delta(cluster, live)
        if changes:
            # No applied-spec record on clusters: a tag that is gone was removed by
            # someone (drift); a tag with another value follows a spec change.
            removed = all(change.before is None for change in changes.changes)
            out.add(
                Action(
                    verb="update",
                    resource="cluster",
                    id=name,
                    reason="drift" if removed else "spec change",
                    cluster=name,
                    fields=changes.changes,
                    desired=cluster,
                    live=live,
                    key=key,
                )
            )
    _plan_security_group(out, cluster, observed)
    _plan_fleet(out, cluster, observed.instances.get(name, ()))


def _plan_orphan_cluster(out: _KeyPlan, name: str, index: _Index) -> None:
    observed = index.observed
    live = observed.clusters.get(name)
    live_cluster = live if live is not None and is_managed(live.tags) else None
    group = observed.security_groups.get(name)
    group = group if group is not None and is_managed(group.tags) else None
    instances = [
        i
        for i in observed.instances.get(name, ())
        if is_managed(i.tags) and i.state not in _LEAVING_INSTANCE
    ]
    # The cluster's own policy wins; without the cluster, its resources' own tags.
    policy_sources: list[Mapping[str, str]] = [
        r.tags for r in (live_cluster, group, *instances) if r is not None
    ]
    if live_cluster is not None and live_cluster.status not in _GONE_CLUSTER:
        policy_sources = [live_cluster.tags]
    if any(_retained(tags) for tags in policy_sources):
        out.warnings.append(
            f"cluster {name} was removed from the specs and its deletionPolicy is retain: "
            "its resources are kept"
        )
        return
    key = cluster_key(name)
    for instance in _newest_first(instances):
        out.add(
            Action(
                verb="delete",
                resource="instance",
                id=instance.instance_id,
                reason="orphan",
                cluster=name,
                live=instance,
                key=key,
            )
        )
    if group is not None:
        out.add(
            Action(
                verb="delete",
                resource="security-group",
                id=group.group_id,
                reason="orphan",
                cluster=name,
                live=group,
                key=key,
            )
        )
    if live_cluster is None or live_cluster.status in _GONE_CLUSTER:
        return
    remaining = sorted(
        service.name
        for service in index.services_by_cluster.get(name, ())
        if service.status == "ACTIVE" and not index.deletes_service(service)
    )
    if remaining:
        out.warnings.append(
            f"cluster {name} was removed from the specs but still holds services "
            f"{', '.join(remaining)}: it is deleted once they are gone"
        )
        return
    out.add(
        Action(
            verb="delete",
            resource="cluster",
            id=name,
            reason="orphan",
            cluster=name,
            live=live_cluster,
            key=key,
        )
    )


def _plan_cluster(name: str, index: _Index) -> Plan:
    out = _KeyPlan(key=cluster_key(name))
    cluster = index.desired.clusters.get(name)
    if cluster is not None:
        _plan_desired_cluster(out, cluster, index.observed)
    elif not index.desired.is_empty:
        _plan_orphan_cluster(out, name, index)
    return out.to_plan(empty_specs=index.desired.is_empty)


def plan_cluster(name: str, desired: DesiredState, observed: ObservedState) -> Plan:
    """The plan of the `cluster/<name>` key: the cluster, its security group, its fleet."""
    return _with_empty_warning(_plan_cluster(name, _index(desired, observed)), desired)


# --- deployments ------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class _Target:
    """The revision the service should run. `arn` None = registered by this plan."""

    arn: str | None

    @property
    def display(self) -> str:
        return self.arn if self.arn is not None else NEW_REVISION


def _plan_task_definition(
    out: _KeyPlan,
    deployment: DesiredDeployment,
    service: LiveService | None,
    index: _Index,
) -> _Target:
    desired = deployment.task_definition
    if _task_definition_recorded(deployment, service):
        assert service is not None  # by _task_definition_recorded
        # In sync, or the service was pointed elsewhere: back to the revision we set.
        return _Target(arn=service.tags[TASK_DEFINITION_TAG])
    revisions = index.observed.task_definitions.get(desired.family, ())
    # Oldest first by revision number, whatever order the shell read them in.
    ours = sorted(
        (r for r in revisions if r.status == "ACTIVE" and is_managed(r.tags)),
        key=lambda r: r.revision,
    )
    canonical = normalise_task_definition(desired.content)
    matching = [r for r in ours if normalise_task_definition(r.content) == canonical]
    target = _Target(arn=matching[-1].arn if matching else None)
    key = deployment_key(deployment.name)
    if target.arn is None:
        recorded = service.tags.get(TASK_DEFINITION_HASH_TAG) if service is not None else None
        out.add(
            Action(
                verb="create",
                resource="task-definition",
                id=desired.family,
                reason="spec change" if recorded else "missing",
                cluster=deployment.cluster,
                deployment=deployment.name,
                desired=desired,
                key=key,
            )
        )
    # Keep the newest few for rollbacks (a revision registered now is one of them, so
    # that the next pass finds nothing more to do), and whatever is or was last set on
    # the service.
    newest = REVISIONS_KEPT - (1 if target.arn is None else 0)
    in_use = {target.arn}
    if service is not None:
        in_use |= {service.task_definition, service.tags.get(TASK_DEFINITION_TAG)}
    keep = {r.arn for r in ours[len(ours) - newest :]} | {arn for arn in in_use if arn}
    for revision in ours:
        if revision.arn not in keep and revision.arn not in index.revisions_in_use:
            out.add(_task_definition_delete(revision, deployment.cluster, deployment.name))
    return target


def _task_definition_delete(revision: LiveTaskDefinition, cluster: str, deployment: str) -> Action:
    return Action(
        verb="delete",
        resource="task-definition",
        id=revision.arn,
        reason="orphan",
        cluster=cluster,
        deployment=deployment,
        live=revision,
        key=deployment_key(deployment),
    )


def _plan_service(
    out: _KeyPlan,
    deployment: DesiredDeployment,
    service: LiveService | None,
    target: _Target,
) -> None:
    desired = deployment.service
    detect = deployment.drift_policy == "detect"
    key = deployment_key(deployment.name)
    if service is None or service.status in _GONE_SERVICE:
        # Ours and deleted behind our back is drift; never seen before is missing.
        reason: Reason = "drift" if service is not None and is_managed(service.tags) else "missing"
        out.add(
            Action(
                verb="create",
                resource="service",
                id=desired.name,
                reason=reason,
                cluster=desired.cluster,
                deployment=deployment.name,
                fields=(
                    FieldChange("desiredCount", None, desired.desired_count),
                    FieldChange("taskDefinition", None, target.display),
                ),
                desired=desired,
                live=service,
                key=key,
                task_definition_arn=target.arn,
            ),
            detect_only=detect,
        )
        return
    changes = service_delta(desired, service, revision=target.display, ignore=deployment.ignore)
    if not changes:
        return
    out.add(
        Action(
            verb="update",
            resource="service",
            id=desired.name,
            reason=_reason_by_record(service.tags, desired.spec_hash),
            cluster=desired.cluster,
            deployment=deployment.name,
            fields=changes.readable(),
            desired=desired,
            live=service,
            key=key,
            task_definition_arn=target.arn,
        ),
        detect_only=detect,
    )


def _plan_stale_services(out: _KeyPlan, name: str, index: _Index) -> list[LiveService]:
    deleted = []
    for service in index.stale_services(name):
        if _retained(service.tags):
            out.warnings.append(
                f"service {service.name} in cluster {service.cluster} is no longer in the "
                "specs and its deletionPolicy is retain: it is kept"
            )
            continue
        deleted.append(service)
        out.add(
            Action(
                verb="delete",
                resource="service",
                id=service.name,
                reason="orphan",
                cluster=service.cluster,
                deployment=name,
                live=service,
                key=deployment_key(name),
            )
        )
    return deleted


def _plan_removed_deployment(out: _KeyPlan, name: str, index: _Index) -> None:
    deleted = _plan_stale_services(out, name, index)
    # Deregister the removed deployment's own revisions, once its services are deleted.
    families = {family_of(service.task_definition) for service in deleted} - index.desired_families
    for family in sorted(families):
        for revision in index.observed.task_definitions.get(family, ()):
            if (
                revision.status == "ACTIVE"
                and is_managed(revision.tags)
                and revision.tags.get(DEPLOYMENT_TAG) == name
                and revision.arn not in index.revisions_in_use
            ):
                out.add(_task_definition_delete(revision, deleted[0].cluster, name))


def _plan_desired_deployment(out: _KeyPlan, deployment: DesiredDeployment, index: _Index) -> None:
    name = deployment.name
    if _foreign_cluster(index.observed, deployment.cluster) is not None:
        out.warnings.append(
            f"deployment {name}: cluster {deployment.cluster} is not managed by ecs-infer: "
            "nothing is planned"
        )
        return
    service = _live_service(index.observed, deployment)
    if service is not None and _is_foreign_service(service):
        out.warnings.append(
            f"service {service.name} in cluster {service.cluster} exists and is not managed "
            f"by ecs-infer: nothing is planned for deployment {name}"
        )
        return
    target = _plan_task_definition(out, deployment, service, index)
    _plan_service(out, deployment, service, target)
    _plan_stale_services(out, name, index)


def _plan_deployment(name: str, index: _Index) -> Plan:
    out = _KeyPlan(key=deployment_key(name))
    deployment = index.desired.deployments.get(name)
    if deployment is not None:
        _plan_desired_deployment(out, deployment, index)
    elif not index.desired.is_empty:
        _plan_removed_deployment(out, name, index)
    return out.to_plan(empty_specs=index.desired.is_empty)


def plan_deployment(name: str, desired: DesiredState, observed: ObservedState) -> Plan:
    """The plan of the `deployment/<name>` key: its task definition and service."""
    return _with_empty_warning(_plan_deployment(name, _index(desired, observed)), desired)


# --- the whole plan ---------------------------------------------------------------------


def _with_empty_warning(plan: Plan, desired: DesiredState) -> Plan:
    if not desired.is_empty:
        return Plan(
            actions=plan.actions,
            detected_drift=plan.detected_drift,
            warnings=tuple(dict.fromkeys((*desired.warnings, *plan.warnings))),
        )
    return Plan(
        actions=plan.actions,
        detected_drift=plan.detected_drift,
        warnings=(EMPTY_SPECS_WARNING, *plan.warnings),
    )


def cluster_names(desired: DesiredState, observed: ObservedState) -> list[str]:
    """Every `cluster/<name>` key with something to plan: desired, or managed and live."""
    names = set(desired.clusters)
    names |= {name for name, live in observed.clusters.items() if is_managed(live.tags)}
    names |= set(observed.security_groups) | set(observed.instances)
    return sorted(names)


def deployment_names(desired: DesiredState, observed: ObservedState) -> list[str]:
    """Every `deployment/<name>` key with something to plan: desired, or with live services."""
    names = set(desired.deployments)
    for service in observed.services.values():
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if deployment is not None and is_managed(service.tags):
            names.add(deployment)
    return sorted(names)


def plan(desired: DesiredState, observed: ObservedState) -> Plan:
    """Every action that brings `observed` to `desired`, in the order they apply."""
    index = _index(desired, observed)
    parts = [_plan_cluster(name, index) for name in cluster_names(desired, observed)]
    parts += [_plan_deployment(name, index) for name in deployment_names(desired, observed)]
    actions = [action for part in parts for action in part.actions]
    # sorted() is stable: within a phase, actions keep the key order above.
    actions.sort(key=lambda action: PHASES[(action.resource, action.verb)])
    merged = Plan(
        actions=tuple(actions),
        detected_drift=tuple(a for part in parts for a in part.detected_drift),
        warnings=tuple(dict.fromkeys(w for part in parts for w in part.warnings)),
    )
    return _with_empty_warning(merged, desired)
