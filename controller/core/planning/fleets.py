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

from controller.core.diffs import instance_delta
from controller.core.payloads import (
    LaunchAttempt,
    LaunchInstance,
    Market,
    ReplaceInstance,
    TerminateInstance,
)
from controller.core.planning.building import KeyPlan
from controller.core.planning.disruption import disruption
from controller.core.states import (
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


def plan_fleet(
    out: KeyPlan,
    cluster: DesiredCluster,
    instances: Iterable[LiveInstance],
    *,
    security_group_ids: tuple[str, ...],
) -> None:
    fleet = cluster.fleet
    alive = [i for i in instances if i.alive and is_managed(i.tags)]
    decided = disruption(fleet, alive)
    launches = _Launches(
        fleet=fleet,
        security_group_ids=security_group_ids,
        load=Counter(i.subnet_id for i in alive if i.subnet_id is not None),
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
        launch = launches.launch()
        launches.retire(instance)  # terminated once its replacement is launched
        out.add(
            "replace",
            "instance",
            instance.instance_id,
            reason="spec change",  # an instance cannot change type or image in place
            cluster=cluster.name,
            payload=ReplaceInstance(instance_id=instance.instance_id, launch=launch),
            fields=instance_delta(instance, fleet).changes,
        )
    for number in range(decided.kept + 1, fleet.count + 1):
        out.add(
            "create",
            "instance",
            f"{cluster.name}/instance-{number}",
            # Instances carry no record of what was applied: a shortfall is "missing"
            # whether the instance never existed or was terminated.
            reason="missing",
            cluster=cluster.name,
            payload=launches.launch(),
        )
