"""Deltas: what differs between a desired resource and its live counterpart, field by field.

Owns: the one comparison of each resource kind (cluster, security group, instance,
service), after normalisation, as field paths with their live (`before`) and desired
(`after`) values; which bookkeeping changes a reader is spared; and the one place where
ignored field paths apply (`delta(..., ignore=)`): a path ignored here is neither drift
nor corrected, because the plan's fields *and* the payload the shell executes are both
built from the same delta. Must not: decide what to do about a difference (that is
`planning`), or do I/O.

Field paths: `status`, `desiredCount`, `taskDefinition`, `placementConstraints`,
`placementStrategy`, `deploymentConfiguration.<field>[.<field>]`, `tags.<key>`,
`ingress`, `vpcId`, `instanceType`, `imageId`, `market`, `state`, and a task
definition's content as `containerDefinitions[<name>].<field>...` (`revision_delta`).
An ignored path also ignores what lies below it (`tags` ignores every `tags.<key>`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from controller.core.normalising import normalise_task_definition
from controller.core.payloads import SyncIngress
from controller.core.states import (
    NEURON_CORES_TAG,
    SPEC_HASH_TAG,
    TASK_DEFINITION_HASH_TAG,
    TASK_DEFINITION_TAG,
    DesiredCluster,
    DesiredFleet,
    DesiredSecurityGroup,
    DesiredService,
    DesiredTaskDefinition,
    IngressRange,
    IngressRule,
    LiveCluster,
    LiveInstance,
    LiveSecurityGroup,
    LiveService,
    LiveTaskDefinition,
)

NO_IGNORE: frozenset[str] = frozenset()

# Tags that record what we applied rather than anything a user chose: shown in a diff
# only when they are all that changed, so that a plan reads as the user's change.
BOOKKEEPING_TAGS = frozenset(
    {SPEC_HASH_TAG, TASK_DEFINITION_HASH_TAG, TASK_DEFINITION_TAG, NEURON_CORES_TAG}
)
TAGS = "tags."


@dataclass(frozen=True)
class FieldChange:
    path: str  # e.g. "desiredCount", "tags.ecs-infer:spec-hash"
    before: Any  # JSON-serialisable; None when absent
    after: Any


@dataclass(frozen=True, kw_only=True)
class Delta:
    """The field changes of one resource, ignored paths already dropped."""

    changes: tuple[FieldChange, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.changes)

    def touches(self, path: str) -> bool:
        return any(change.path == path for change in self.changes)

    def touches_below(self, path: str) -> bool:
        """A change at `path` or anywhere below it."""
        return any(is_ignored(change.path, frozenset({path})) for change in self.changes)

    def tags(self) -> dict[str, str]:
        """The tags to write: every changed tag with its desired value."""
        return {
            change.path.removeprefix(TAGS): change.after
            for change in self.changes
            if change.path.startswith(TAGS) and change.after is not None
        }

    def readable(self) -> tuple[FieldChange, ...]:
        """The changes without bookkeeping tags, unless those are all that changed."""
        visible = [c for c in self.changes if c.path.removeprefix(TAGS) not in BOOKKEEPING_TAGS]
        return tuple(visible or self.changes)


def is_ignored(path: str, ignore: frozenset[str]) -> bool:
    return any(
        path == ignored or path.startswith((f"{ignored}.", f"{ignored}[")) for ignored in ignore
    )


def delta(changes: Iterable[FieldChange], *, ignore: frozenset[str] = NO_IGNORE) -> Delta:
    """The one place where ignored paths are dropped."""
    return Delta(changes=tuple(c for c in changes if not is_ignored(c.path, ignore)))


def changed(path: str, live: Any, desired: Any) -> list[FieldChange]:
    return [FieldChange(path, live, desired)] if live != desired else []


def tag_changes(desired: Mapping[str, str], live: Mapping[str, str]) -> list[FieldChange]:
    """Desired tags that are absent or different live (extra live tags are not ours)."""
    return [
        FieldChange(f"{TAGS}{key}", live.get(key), value)
        for key, value in sorted(desired.items())
        if live.get(key) != value
    ]


def tags_to_write(desired: Mapping[str, str], live: Mapping[str, str]) -> dict[str, str]:
    return delta(tag_changes(desired, live)).tags()


# --- per resource kind ------------------------------------------------------------------


def cluster_delta(
    desired: DesiredCluster, live: LiveCluster, *, ignore: frozenset[str] = NO_IGNORE
) -> Delta:
    return delta(tag_changes(desired.tags, live.tags), ignore=ignore)


def rule_text(rule: IngressRule) -> str:
    return f"{rule.protocol}/{rule.port} from {rule.cidr}"


def security_group_delta(
    desired: DesiredSecurityGroup,
    live: LiveSecurityGroup,
    *,
    ignore: frozenset[str] = NO_IGNORE,
) -> Delta:
    """`vpcId` (a group cannot move: a replace), then ingress rule by rule, then tags."""
    wanted = set(desired.ingress)
    changes = changed("vpcId", live.vpc_id, desired.vpc_id)
    changes += [FieldChange("ingress", None, rule_text(r)) for r in sorted(wanted - live.ingress)]
    changes += [FieldChange("ingress", rule_text(r), None) for r in sorted(live.ingress - wanted)]
    changes += tag_changes(desired.tags, live.tags)
    return delta(changes, ignore=ignore)


def merge_ranges(rules: Iterable[IngressRule]) -> frozenset[IngressRange]:
    """The rules with neighbouring ports of one protocol and CIDR merged into ranges, so
    that deployments on ports 8500, 8501, ... take one rule of the group's limit (60 by
    default), not one each."""
    ports: dict[tuple[str, str], list[int]] = {}
    for rule in rules:
        ports.setdefault((rule.protocol, rule.cidr), []).append(rule.port)
    ranges: set[IngressRange] = set()
    for (protocol, cidr), found in ports.items():
        if protocol == "-1" or -1 in found:
            ranges.add(IngressRange(protocol, -1, -1, cidr))
            continue
        run: list[int] = []
        for port in sorted(set(found)):
            if run and port != run[-1] + 1:
                ranges.add(IngressRange(protocol, run[0], run[-1], cidr))
                run = []
            run.append(port)
        if run:
            ranges.add(IngressRange(protocol, run[0], run[-1], cidr))
    return frozenset(ranges)


def ingress_sync(
    desired: Iterable[IngressRule],
    live: frozenset[IngressRange],
    *,
    ignore: frozenset[str] = NO_IGNORE,
) -> SyncIngress:
    """The ranges to authorize and revoke, compared as EC2 stores them, so that what is
    revoked is exactly what was read. The per-port view of `security_group_delta` and
    this sync agree: equal ranges expand to equal rules."""
    if is_ignored("ingress", ignore):
        return SyncIngress()
    wanted = merge_ranges(desired)
    return SyncIngress(authorize=wanted - live, revoke=live - wanted)


def market_fits(instance: LiveInstance, fleet: DesiredFleet) -> bool:
    """On-demand stands in for spot where the fleet allows the fallback."""
    return instance.lifecycle == fleet.market or (
        fleet.market == "spot" and fleet.on_demand_fallback and instance.lifecycle == "on-demand"
    )


# Instances that were stopped: they keep their place in the fleet until replaced.
STOPPED_INSTANCE = frozenset({"stopping", "stopped"})


def instance_delta(instance: LiveInstance, fleet: DesiredFleet) -> Delta:
    """What an instance would need to change to belong to `fleet` (it cannot in place):
    its type, image or market, or its state when someone stopped it."""
    changes = changed("instanceType", instance.instance_type, fleet.instance_type)
    changes += changed("imageId", instance.image_id, fleet.image_id)
    # A replacement is launched on the fleet's market first: say so whenever it differs.
    if (changes or not market_fits(instance, fleet)) and instance.lifecycle != fleet.market:
        changes.append(FieldChange("market", instance.lifecycle, fleet.market))
    if instance.state in STOPPED_INSTANCE:
        changes.append(FieldChange("state", instance.state, "running"))
    return delta(changes)


def instance_tag_delta(instance: LiveInstance, fleet: DesiredFleet) -> Delta:
    """The fleet's tags an instance lacks: restorable in place, unlike `instance_delta`."""
    return delta(tag_changes(fleet.tags, instance.tags))


def fits(instance: LiveInstance, fleet: DesiredFleet) -> bool:
    return not instance_delta(instance, fleet)


def constraints_json(constraints: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    return [dict(constraint) for constraint in constraints]


def nested_changes(path: str, live: Any, desired: Any) -> list[FieldChange]:
    """Field by field below `path`: objects by key, lists of named objects by name
    (`containerDefinitions[bert]`, `environment[NEURON_RT_NUM_CORES]`), any other value
    (or list) whole."""
    if isinstance(live, Mapping) and isinstance(desired, Mapping):
        changes: list[FieldChange] = []
        for key in sorted(set(live) | set(desired), key=str):
            changes += nested_changes(
                f"{path}.{key}" if path else str(key), live.get(key), desired.get(key)
            )
        return changes
    if _named_list(live) and _named_list(desired):
        live_by, desired_by = _by_name(live), _by_name(desired)
        changes = []
        for name in sorted(set(live_by) | set(desired_by)):
            changes += nested_changes(f"{path}[{name}]", live_by.get(name), desired_by.get(name))
        return changes
    return changed(path, live, desired)


def _named_list(value: Any) -> bool:
    return (
        isinstance(value, Sequence)
        and not isinstance(value, str)
        and bool(value)
        and all(isinstance(item, Mapping) and "name" in item for item in value)
    )


def _by_name(items: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    return {str(item["name"]): item for item in items}


def revision_delta(
    desired: DesiredTaskDefinition, live: LiveTaskDefinition, *, ignore: frozenset[str] = NO_IGNORE
) -> Delta:
    """How a described revision differs from the desired content, field by field, both
    normalised (so that what AWS fills in is never a difference)."""
    changes = nested_changes(
        "", normalise_task_definition(live.content), normalise_task_definition(desired.content)
    )
    return delta(changes, ignore=ignore)


def service_delta(
    desired: DesiredService,
    live: LiveService,
    *,
    revision: str,
    record: str | None = None,
    ignore: frozenset[str] = NO_IGNORE,
) -> Delta:
    """`revision` is the ARN the service should run (or the placeholder of one that this
    plan registers): the `taskDefinition` to set, and the revision recorded in
    `TASK_DEFINITION_TAG` unless `record` names another."""
    changes = changed("desiredCount", live.desired_count, desired.desired_count)
    changes += changed("taskDefinition", live.task_definition, revision)
    changes += changed(
        "placementConstraints",
        constraints_json(live.placement_constraints),
        constraints_json(desired.placement_constraints),
    )
    changes += changed(
        "placementStrategy",
        constraints_json(live.placement_strategy),
        constraints_json(desired.placement_strategy),
    )
    changes += nested_changes(
        "deploymentConfiguration",
        live.deployment_configuration,
        desired.deployment_configuration,
    )
    changes += tag_changes({**desired.tags, TASK_DEFINITION_TAG: record or revision}, live.tags)
    return delta(changes, ignore=ignore)
