"""Lookups and ownership questions shared by every part of the planner.

Owns: the work-queue key names, the statuses that count as gone, who owns what (a
foreign cluster or service, a retained resource), how "drift" is told from "spec
change" on resources that record what was applied, and `Index`: the lookups built once
per (desired, observed), so that planning stays linear in the size of the account.
Must not: plan anything.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass

from controller.core.plans import Reason
from controller.core.states import (
    DELETION_POLICY_TAG,
    DEPLOYMENT_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredDeployment,
    DesiredState,
    LiveCluster,
    LiveService,
    ObservedState,
    is_managed,
)

# Statuses of resources that are gone as far as planning is concerned.
GONE_CLUSTER = frozenset({"INACTIVE"})
GONE_SERVICE = frozenset({"INACTIVE", "DRAINING"})
# Instances on their way out already: never deleted twice.
LEAVING_INSTANCE = frozenset({"shutting-down", "terminated"})


def cluster_key(name: str) -> str:
    return f"cluster/{name}"


def deployment_key(name: str) -> str:
    return f"deployment/{name}"


def retained(tags: Mapping[str, str]) -> bool:
    return tags.get(DELETION_POLICY_TAG) == "retain"


def reason_by_record(live_tags: Mapping[str, str], spec_hash: str) -> Reason:
    """Live differing while the recorded hash equals the desired one: someone changed
    AWS (drift). A different hash: the spec moved on."""
    return "drift" if live_tags.get(SPEC_HASH_TAG) == spec_hash else "spec change"


@dataclass(frozen=True, kw_only=True)
class Index:
    """Lookups built once per (desired, observed)."""

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
            if service.status not in GONE_SERVICE
            and (service.cluster, service.name) not in self.desired_locations
        ]

    def deletes_service(self, service: LiveService) -> bool:
        """Whether this plan deletes `service` (as a stale service of its deployment)."""
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if self.desired.is_empty or deployment is None or not is_managed(service.tags):
            return False
        if service.status in GONE_SERVICE or retained(service.tags):
            return False
        return (service.cluster, service.name) not in self.desired_locations


def index_of(desired: DesiredState, observed: ObservedState) -> Index:
    by_deployment: dict[str, list[LiveService]] = {}
    by_cluster: dict[str, list[LiveService]] = {}
    for service in observed.services.values():
        if service.status in GONE_SERVICE:
            continue
        by_cluster.setdefault(service.cluster, []).append(service)
        deployment = service.tags.get(DEPLOYMENT_TAG)
        if deployment is not None and is_managed(service.tags):
            by_deployment.setdefault(deployment, []).append(service)
    index = Index(
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


def foreign_cluster(observed: ObservedState, name: str) -> LiveCluster | None:
    """The live cluster of this name if it exists and is not ours."""
    live = observed.clusters.get(name)
    if live is None or live.status in GONE_CLUSTER or is_managed(live.tags):
        return None
    return live


def live_service(observed: ObservedState, deployment: DesiredDeployment) -> LiveService | None:
    return observed.services.get((deployment.service.cluster, deployment.service.name))


def is_foreign_service(service: LiveService | None) -> bool:
    """A live service of the desired name that ecs-infer does not own."""
    return (
        service is not None and service.status not in GONE_SERVICE and not is_managed(service.tags)
    )


def task_definition_recorded(deployment: DesiredDeployment, service: LiveService | None) -> bool:
    """Whether the service records that it runs the desired content: no read needed."""
    return (
        service is not None
        and service.status not in GONE_SERVICE
        and is_managed(service.tags)
        and service.tags.get(TASK_DEFINITION_HASH_TAG) == deployment.task_definition.content_hash
        and bool(service.tags.get(TASK_DEFINITION_TAG))
    )
