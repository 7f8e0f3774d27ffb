"""Clusters and their security groups, for a cluster that is in the specs.

Owns: creating a cluster (or re-creating one deleted behind our back), restoring its
tags, and keeping its managed security group as the spec says: created, its ingress
synced range by range (authorize before revoke), replaced when it must move VPC, deleted
when the spec names its own groups. Then hands the fleet to `fleets`.
Must not: touch a cluster or a group that is not ours (it warns instead), or plan what a
removed cluster loses (`pruning`).
"""

from __future__ import annotations

from controller.core.diffs import (
    FieldChange,
    cluster_delta,
    ingress_sync,
    merge_ranges,
    security_group_delta,
)
from controller.core.payloads import (
    CreateCluster,
    CreateSecurityGroup,
    DeleteSecurityGroup,
    ReplaceSecurityGroup,
    SyncIngress,
    TagCluster,
    UpdateSecurityGroup,
)
from controller.core.planning.building import KeyPlan
from controller.core.planning.fleets import launch_groups, plan_fleet, recorded_size
from controller.core.planning.index import GONE_CLUSTER, foreign_cluster, reason_by_record
from controller.core.states import (
    MANAGED_BY,
    MANAGED_BY_VALUE,
    SPEC_HASH_TAG,
    DesiredCluster,
    DesiredSecurityGroup,
    ObservedState,
    is_managed,
)


def group_creation(desired: DesiredSecurityGroup) -> CreateSecurityGroup:
    """A new group with every desired range."""
    return CreateSecurityGroup(
        desired=desired, ingress=SyncIngress(authorize=merge_ranges(desired.ingress))
    )


def plan_security_group(out: KeyPlan, cluster: DesiredCluster, observed: ObservedState) -> None:
    desired = cluster.security_group
    live = observed.security_groups.get(cluster.name)
    if live is not None and not is_managed(live.tags):
        out.warnings.append(
            f"security group {live.group_id} of cluster {cluster.name} is not managed by "
            "ecs-infer: it is left alone"
        )
        return
    if desired is None:
        if live is not None:
            # The spec now names its own groups: the managed one is no longer wanted.
            out.add(
                "delete",
                "security-group",
                live.group_id,
                reason="orphan",
                cluster=cluster.name,
                payload=DeleteSecurityGroup(group_id=live.group_id),
            )
        return
    if live is None:
        out.add(
            "create",
            "security-group",
            desired.name,
            reason="missing",
            cluster=cluster.name,
            payload=group_creation(desired),
        )
        return
    detect = cluster.drift_policy == "detect"
    reason = reason_by_record(live.tags, desired.tags.get(SPEC_HASH_TAG, ""))
    changes = security_group_delta(desired, live)
    if changes.touches("vpcId"):
        out.add(
            "replace",
            "security-group",
            live.group_id,
            reason=reason,
            cluster=cluster.name,
            payload=ReplaceSecurityGroup(group_id=live.group_id, create=group_creation(desired)),
            fields=tuple(c for c in changes.changes if c.path == "vpcId"),
            detect_only=detect,
        )
        return
    if changes:
        out.add(
            "update",
            "security-group",
            live.group_id,
            reason=reason,
            cluster=cluster.name,
            payload=UpdateSecurityGroup(
                group_id=live.group_id,
                cluster=cluster.name,
                ingress=ingress_sync(desired.ingress, live.ranges),
                tags=changes.tags(),
                create=group_creation(desired),
            ),
            fields=changes.readable(),
            detect_only=detect,
        )


def plan_desired_cluster(out: KeyPlan, cluster: DesiredCluster, observed: ObservedState) -> None:
    name = cluster.name
    live = observed.clusters.get(name)
    detect = cluster.drift_policy == "detect"
    if foreign_cluster(observed, name) is not None:
        out.warnings.append(
            f"cluster {name} exists and is not managed by ecs-infer: nothing is planned for it"
        )
        return
    create = CreateCluster(name=name, tags=cluster.tags)
    if live is None or live.status in GONE_CLUSTER:
        # Ours and deleted behind our back is drift; never seen before is missing.
        gone = live is not None and is_managed(live.tags)
        exists = not (gone and detect)  # this plan creates it, unless only reported
        out.add(
            "create",
            "cluster",
            name,
            reason="drift" if gone else "missing",
            cluster=name,
            payload=create,
            fields=(FieldChange("status", live.status, "ACTIVE"),) if gone and live else (),
            detect_only=detect,
        )
    else:
        exists = True
        changes = cluster_delta(cluster, live)
        if changes:
            # No applied-spec record on clusters: a tag that is gone was removed by
            # someone (drift); a tag with another value follows a spec change.
            removed = all(change.before is None for change in changes.changes)
            out.add(
                "update",
                "cluster",
                name,
                reason="drift" if removed else "spec change",
                cluster=name,
                payload=TagCluster(name=name, tags=changes.tags(), create=create),
                fields=changes.changes,
                detect_only=detect,
            )
    plan_security_group(out, cluster, observed)
    plan_fleet(
        out,
        cluster,
        observed.instances.get(name, ()),
        security_group_ids=launch_groups(cluster, observed),
        recorded=(
            recorded_size(live.tags)
            if live is not None and live.status not in GONE_CLUSTER
            else None  # a cluster this plan creates carries no record yet
        ),
        cluster_exists=exists,
    )
    warn_unmanaged_members(out, name, observed)


def warn_unmanaged_members(out: KeyPlan, name: str, observed: ObservedState) -> None:
    """An instance registered in our cluster without the managed-by tag (someone joined
    it, or removed the tag from ours): not ours to change (CONTRACT §5), so said, not
    touched. The fleet counts without it."""
    known = {instance.instance_id for instance in observed.instances.get(name, ())}
    for member in observed.container_instances.get(name, ()):
        if member.status == "ACTIVE" and member.ec2_instance_id not in known:
            out.warnings.append(
                f"instance {member.ec2_instance_id} is registered in cluster {name} without "
                f"the tag {MANAGED_BY}={MANAGED_BY_VALUE}: it is left alone and not counted "
                "in the fleet (tag it to hand it back)"
            )
