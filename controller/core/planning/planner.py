"""The planner's entry points: one work-queue key, or the whole account.

Owns: which keys there are (`cluster_names`, `deployment_names`), planning one key
(`plan_cluster`, `plan_deployment`) or all of them in apply order (`plan`), and which
task-definition families the shell must read first (`families_to_read`). Every entry
point passes through the one empty-folder guard (`pruning.guard_empty_folder`). A key
whose specs the account cannot resolve (`DesiredState.unresolved_*`) holds an error and
no action: it is never read as removed.
Must not: do I/O.
"""

from __future__ import annotations

from controller.core.planning.building import KeyPlan
from controller.core.planning.clusters import plan_desired_cluster
from controller.core.planning.deployments import (
    families_of_desired,
    families_to_check,
    plan_desired_deployment,
    revisions_to_describe,
)
from controller.core.planning.index import (
    LEAVING_INSTANCE,
    Index,
    cluster_key,
    deployment_key,
    index_of,
)
from controller.core.planning.ordering import in_phase_order
from controller.core.planning.pruning import (
    families_to_prune,
    guard_empty_folder,
    plan_removed_cluster,
    plan_removed_deployment,
    plan_stale_services,
)
from controller.core.plans import Plan
from controller.core.states import DEPLOYMENT_TAG, DesiredState, ObservedState, is_managed


def families_to_read(desired: DesiredState, observed: ObservedState) -> set[str]:
    """The task-definition families whose revisions the shell must read before `plan`.

    A deployment whose service records the desired content hash and the revision we set
    needs no read, so a pass over deployments that are in sync reads none.
    """
    index = index_of(desired, observed)
    return families_of_desired(index) | families_to_prune(index)


def newest_to_read(desired: DesiredState, observed: ObservedState) -> set[str]:
    """The families whose newest revision the shell reads (those it has not yet)."""
    wanted = families_to_check(index_of(desired, observed))
    return {family for family in wanted if family not in observed.newest_revisions}


def revisions_to_read(desired: DesiredState, observed: ObservedState) -> set[str]:
    """The revisions (ARNs) the shell describes one by one, once the newest are read."""
    return revisions_to_describe(index_of(desired, observed))


def _plan_cluster(name: str, index: Index) -> Plan:
    unresolved = index.desired.unresolved_clusters.get(name)
    if unresolved is not None:
        # Its spec is there but cannot be planned: never read it as removed.
        return Plan(errors={cluster_key(name): unresolved})
    out = KeyPlan(key=cluster_key(name))
    cluster = index.desired.clusters.get(name)
    if cluster is not None:
        plan_desired_cluster(out, cluster, index.observed)
    elif not index.desired.is_empty:
        plan_removed_cluster(out, name, index)
    return out.to_plan()


def _plan_deployment(name: str, index: Index) -> Plan:
    unresolved = index.desired.unresolved_deployments.get(name)
    if unresolved is not None:
        return Plan(errors={deployment_key(name): unresolved})
    out = KeyPlan(key=deployment_key(name))
    deployment = index.desired.deployments.get(name)
    if deployment is not None:
        if plan_desired_deployment(out, deployment, index):
            plan_stale_services(out, name, index)
    elif not index.desired.is_empty:
        plan_removed_deployment(out, name, index)
    return out.to_plan()


def plan_cluster(name: str, desired: DesiredState, observed: ObservedState) -> Plan:
    """The plan of the `cluster/<name>` key: the cluster, its security group, its fleet."""
    return guard_empty_folder(_plan_cluster(name, index_of(desired, observed)), desired)


def plan_deployment(name: str, desired: DesiredState, observed: ObservedState) -> Plan:
    """The plan of the `deployment/<name>` key: its task definition and service."""
    return guard_empty_folder(_plan_deployment(name, index_of(desired, observed)), desired)


def cluster_names(desired: DesiredState, observed: ObservedState) -> list[str]:
    """Every `cluster/<name>` key with something to plan: desired (resolved or not), or
    managed and live."""
    names = set(desired.clusters) | set(desired.unresolved_clusters)
    names |= {name for name, live in observed.clusters.items() if is_managed(live.tags)}
    names |= set(observed.security_groups)
    # Terminated instances stay in view for a while: they leave nothing to plan.
    names |= {
        name
        for name, instances in observed.instances.items()
        if any(i.state not in LEAVING_INSTANCE for i in instances)
    }
    return sorted(names)


def deployment_names(desired: DesiredState, observed: ObservedState) -> list[str]:
    """Every `deployment/<name>` key with something to plan: desired (resolved or not), or
    with live services."""
    names = set(desired.deployments) | set(desired.unresolved_deployments)
    for service in observed.services.values():
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if deployment is not None and is_managed(service.tags):
            names.add(deployment)
    return sorted(names)


def plan(desired: DesiredState, observed: ObservedState) -> Plan:
    """Every action that brings `observed` to `desired`, in the order they apply."""
    index = index_of(desired, observed)
    parts = [_plan_cluster(name, index) for name in cluster_names(desired, observed)]
    parts += [_plan_deployment(name, index) for name in deployment_names(desired, observed)]
    merged = Plan(
        actions=in_phase_order(action for part in parts for action in part.actions),
        detected_drift=tuple(a for part in parts for a in part.detected_drift),
        warnings=tuple(dict.fromkeys(w for part in parts for w in part.warnings)),
        errors={key: error for part in parts for key, error in part.errors.items()},
    )
    return guard_empty_folder(merged, desired)
