"""Pruning: what goes when a spec is removed, and the guard that keeps an empty folder
from deleting anything.

Owns: the stale services of a deployment (removed, moved to another cluster or renamed
service) and the removed deployment's own revisions; a removed cluster's instances,
security group and cluster (inside-out, and only once no service of someone else is
left in it); `deletionPolicy: retain`; which families must be read to prune; and the one
empty-folder guard (`guard_empty_folder`, CONTRACT §5): a plan for an empty folder has
no action at all. Must not: prune what is not ours (managed-by tag), or prune by "what
is not in the folder" without an inventory of what ecs-infer made.
"""

from __future__ import annotations

from collections.abc import Mapping

from controller.core.payloads import (
    DeleteCluster,
    DeleteSecurityGroup,
    DeleteService,
    TerminateInstance,
)
from controller.core.planning.building import KeyPlan
from controller.core.planning.deployments import deregister
from controller.core.planning.disruption import newest_first
from controller.core.planning.index import GONE_CLUSTER, LEAVING_INSTANCE, Index, retained
from controller.core.plans import Plan
from controller.core.states import (
    DEPLOYMENT_TAG,
    DesiredState,
    LiveService,
    family_of,
    is_managed,
)

EMPTY_SPECS_WARNING = "the spec folder is empty: nothing is pruned"


def guard_empty_folder(plan: Plan, desired: DesiredState) -> Plan:
    """The plan's warnings with the desired state's; for an empty folder, no action."""
    if not desired.is_empty:
        return Plan(
            actions=plan.actions,
            detected_drift=plan.detected_drift,
            warnings=tuple(dict.fromkeys((*desired.warnings, *plan.warnings))),
            errors=plan.errors,
        )
    return Plan(
        actions=(),
        detected_drift=plan.detected_drift,
        warnings=(EMPTY_SPECS_WARNING, *(w for w in plan.warnings if w != EMPTY_SPECS_WARNING)),
    )


def plan_stale_services(out: KeyPlan, name: str, index: Index) -> list[LiveService]:
    deleted = []
    for service in index.stale_services(name):
        if retained(service.tags):
            out.warnings.append(
                f"service {service.name} in cluster {service.cluster} is no longer in the "
                "specs and its deletionPolicy is retain: it is kept"
            )
            continue
        deleted.append(service)
        out.add(
            "delete",
            "service",
            service.name,
            reason="orphan",
            cluster=service.cluster,
            deployment=name,
            payload=DeleteService(cluster=service.cluster, name=service.name),
        )
    return deleted


def plan_removed_deployment(out: KeyPlan, name: str, index: Index) -> None:
    deleted = plan_stale_services(out, name, index)
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
                deregister(out, revision, cluster=deleted[0].cluster, deployment=name)


def families_to_prune(index: Index) -> set[str]:
    """Families of removed deployments, whose revisions go with their services. A family
    that a desired deployment still uses is that deployment's business."""
    removed: set[str] = set()
    for name, services in index.services_by_deployment.items():
        if name in index.desired.deployments:
            continue
        removed |= {family_of(s.task_definition) for s in services if index.deletes_service(s)}
    return removed - index.desired_families


def plan_removed_cluster(out: KeyPlan, name: str, index: Index) -> None:
    observed = index.observed
    live = observed.clusters.get(name)
    live_cluster = live if live is not None and is_managed(live.tags) else None
    group = observed.security_groups.get(name)
    group = group if group is not None and is_managed(group.tags) else None
    instances = [
        i
        for i in observed.instances.get(name, ())
        if is_managed(i.tags) and i.state not in LEAVING_INSTANCE
    ]
    # The cluster's own policy wins; without the cluster, its resources' own tags.
    policy_sources: list[Mapping[str, str]] = [
        r.tags for r in (live_cluster, group, *instances) if r is not None
    ]
    if live_cluster is not None and live_cluster.status not in GONE_CLUSTER:
        policy_sources = [live_cluster.tags]
    if any(retained(tags) for tags in policy_sources):
        out.warnings.append(
            f"cluster {name} was removed from the specs and its deletionPolicy is retain: "
            "its resources are kept"
        )
        return
    for instance in newest_first(instances):
        out.add(
            "delete",
            "instance",
            instance.instance_id,
            reason="orphan",
            cluster=name,
            payload=TerminateInstance(instance_id=instance.instance_id),
        )
    if group is not None:
        out.add(
            "delete",
            "security-group",
            group.group_id,
            reason="orphan",
            cluster=name,
            payload=DeleteSecurityGroup(group_id=group.group_id),
        )
    if live_cluster is None or live_cluster.status in GONE_CLUSTER:
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
        "delete",
        "cluster",
        name,
        reason="orphan",
        cluster=name,
        payload=DeleteCluster(name=name),
    )
