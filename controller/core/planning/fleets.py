"""Fleet sizing and launching: how many instances to launch, and how each is launched.

Owns: planning a cluster's instances (what `disruption` removes or replaces, then the
launches that bring the fleet to its size), and the pure launch decisions: the market x
subnet attempts in order (spot first where on-demand is a fallback; the subnets with the
fewest live instances first, so that a fleet spreads), and the security groups an
instance is launched in. Must not: decide which instances go (`disruption`), or do I/O:
the shell walks the attempts it is given.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from controller.core.diffs import (
    STOPPED_INSTANCE,
    FieldChange,
    instance_delta,
    instance_tag_delta,
)
from controller.core.payloads import (
    LaunchAttempt,
    LaunchInstance,
    Market,
    ReplaceInstance,
    TagCluster,
    TagInstance,
    TerminateInstance,
)
from controller.core.planning.building import KeyPlan
from controller.core.planning.disruption import disruption
from controller.core.planning.index import LEAVING_INSTANCE
from controller.core.states import (
    FLEET_SIZE_TAG,
    RETIRED_TAG,
    DesiredCluster,
    DesiredFleet,
    LiveInstance,
    ObservedState,
    is_managed,
)


def subnets_by_load(subnet_ids: Sequence[str], load: Mapping[str, int]) -> tuple[str | None, ...]:
    """The subnets, those with the fewest live instances first (ties: spec order);
    `(None,)` (the default subnet) when the fleet names none."""
    if not subnet_ids:
        return (None,)
    order = {subnet: index for index, subnet in enumerate(subnet_ids)}
    return tuple(sorted(subnet_ids, key=lambda subnet: (load.get(subnet, 0), order[subnet])))


def markets(fleet: DesiredFleet) -> tuple[Market, ...]:
    if fleet.market == "spot" and fleet.on_demand_fallback:
        return ("spot", "on-demand")
    return (fleet.market,)


def launch_attempts(fleet: DesiredFleet, *, load: Mapping[str, int]) -> tuple[LaunchAttempt, ...]:
    """Every market in order, across every subnet in order of load."""
    subnets = subnets_by_load(fleet.subnet_ids, load)
    return tuple(
        LaunchAttempt(market=market, subnet_id=subnet)
        for market in markets(fleet)
        for subnet in subnets
    )


def launch_groups(cluster: DesiredCluster, observed: ObservedState) -> tuple[str, ...]:
    """The security groups to launch in: the spec's own, else the managed group when it
    exists in the desired VPC; empty = the managed group this plan creates first."""
    if cluster.fleet.security_group_ids:
        return cluster.fleet.security_group_ids
    live = observed.security_groups.get(cluster.name)
    desired = cluster.security_group
    if live is None or desired is None or not is_managed(live.tags):
        return ()
    return (live.group_id,) if live.vpc_id == desired.vpc_id else ()


@dataclass
class _Launches:
    """The launches of one plan, each spreading past the ones planned before it."""

    fleet: DesiredFleet
    security_group_ids: tuple[str, ...]
    load: Counter[str] = field(default_factory=Counter)

    def launch(self) -> LaunchInstance:
        attempts = launch_attempts(self.fleet, load=self.load)
        if attempts and attempts[0].subnet_id is not None:
            self.load[attempts[0].subnet_id] += 1
        return LaunchInstance(
            fleet=self.fleet, attempts=attempts, security_group_ids=self.security_group_ids
        )

    def retire(self, instance: LiveInstance) -> None:
        if instance.subnet_id is not None:
            self.load[instance.subnet_id] -= 1


def recorded_size(tags: Mapping[str, str]) -> int | None:
    try:
        return int(tags[FLEET_SIZE_TAG])
    except (KeyError, ValueError):
        return None


def lost_instances(instances: Iterable[LiveInstance]) -> list[LiveInstance]:
    """Managed instances terminated (or terminating) without our retirement tag: someone
    else took them away. Newest first."""
    return sorted(
        (
            i
            for i in instances
            if i.state in LEAVING_INSTANCE and is_managed(i.tags) and RETIRED_TAG not in i.tags
        ),
        key=lambda i: (i.launch_time, i.instance_id),
        reverse=True,
    )


def plan_fleet(
    out: KeyPlan,
    cluster: DesiredCluster,
    instances: Iterable[LiveInstance],
    *,
    security_group_ids: tuple[str, ...],
    recorded: int | None = None,
    cluster_exists: bool = True,
) -> None:
    """`recorded`: the fleet size last applied (`FLEET_SIZE_TAG` on the cluster). A fleet
    short of a size that is both recorded and desired lost instances behind our back:
    that shortfall is drift; any other is the spec's (missing). The size is recorded
    only on a cluster that exists or that this plan creates (`cluster_exists`)."""
    fleet = cluster.fleet
    detect = cluster.drift_policy == "detect"
    instances = list(instances)
    # Stopped instances keep their place until replaced (they are misfits: `diffs`).
    members = [
        i for i in instances if is_managed(i.tags) and (i.alive or i.state in STOPPED_INSTANCE)
    ]
    decided = disruption(fleet, members)
    launches = _Launches(
        fleet=fleet,
        security_group_ids=security_group_ids,
        load=Counter(i.subnet_id for i in members if i.subnet_id is not None),
    )
    for instance in decided.remove:
        out.add(
            "delete",
            "instance",
            instance.instance_id,
            reason="spec change",
            cluster=cluster.name,
            payload=TerminateInstance(instance_id=instance.instance_id),
        )
    for instance in decided.replace:
        changes = instance_delta(instance, fleet).changes
        # Stopped by someone: drift; a type, image or market the spec no longer has: the
        # spec's change (an instance cannot change them in place).
        by_hand = {change.path for change in changes} <= {"state", "market"} and any(
            change.path == "state" for change in changes
        )
        if by_hand and detect:
            out.add(
                "replace",
                "instance",
                instance.instance_id,
                reason="drift",
                cluster=cluster.name,
                payload=TerminateInstance(instance_id=instance.instance_id),
                fields=changes,
                detect_only=True,
            )
            continue
        launch = launches.launch()
        launches.retire(instance)  # terminated once its replacement is launched
        out.add(
            "replace",
            "instance",
            instance.instance_id,
            reason="drift" if by_hand else "spec change",
            cluster=cluster.name,
            payload=ReplaceInstance(instance_id=instance.instance_id, launch=launch),
            fields=changes,
        )
    removed = {instance.instance_id for instance in decided.remove}
    for instance in members:
        if instance.instance_id in removed or not instance.alive:
            continue
        tags = instance_tag_delta(instance, fleet)
        if tags:
            out.add(
                "update",
                "instance",
                instance.instance_id,
                reason="drift",  # the fleet's tags only change with its name: removed by hand
                cluster=cluster.name,
                payload=TagInstance(instance_id=instance.instance_id, tags=tags.tags()),
                fields=tags.changes,
                detect_only=detect,
            )
    shortfall = range(decided.kept + 1, fleet.count + 1)
    by_hand = recorded == fleet.count
    lost = lost_instances(instances) if by_hand else []
    for number in shortfall:
        gone = lost.pop(0) if lost else None
        if gone is not None:
            out.add(
                "replace",
                "instance",
                gone.instance_id,
                reason="drift",
                cluster=cluster.name,
                payload=launches.launch(),
                fields=(FieldChange("state", gone.state, "running"),),
                detect_only=detect,
            )
            continue
        out.add(
            "create",
            "instance",
            f"{cluster.name}/instance-{number}",
            reason="drift" if by_hand else "missing",
            cluster=cluster.name,
            payload=launches.launch(),
            fields=(FieldChange("state", None, "running"),) if by_hand else (),
            detect_only=detect,
        )
    if recorded != fleet.count and cluster_exists:
        # Recorded last, after the launches and terminations it describes succeeded.
        out.add(
            "update",
            "fleet",
            cluster.name,
            reason="missing" if recorded is None else "spec change",
            cluster=cluster.name,
            payload=TagCluster(
                name=cluster.name, tags={FLEET_SIZE_TAG: str(fleet.count)}, create=None
            ),
            fields=(FieldChange("size", recorded, fleet.count),),
        )
