"""A plan: the ordered list of actions that would bring AWS to the desired state.

Owns: the shape of actions and plans, and their JSON form (CONTRACT §3, `plan --output
json`). Must not: decide what to do (that is `planning`) or do it (that is
`controller.aws.applying`).

Verbs complete the sentence "service bert has been …": created, updated, replaced,
deleted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from controller.core.diffs import FieldChange
from controller.core.payloads import Payload

__all__ = ["PAST_TENSE", "Action", "FieldChange", "Plan", "Reason", "ResourceKind", "Verb"]

Verb = Literal["create", "update", "replace", "delete"]
ResourceKind = Literal[
    "cluster", "security-group", "instance", "fleet", "task-definition", "service"
]
Reason = Literal["missing", "spec change", "drift", "orphan"]

PAST_TENSE: dict[str, str] = {
    "create": "created",
    "update": "updated",
    "replace": "replaced",
    "delete": "deleted",
}


@dataclass(frozen=True, kw_only=True)
class Action:
    verb: Verb
    resource: ResourceKind
    id: str  # the AWS name or id; "<cluster>/instance-<n>" for an instance to launch
    reason: Reason
    cluster: str
    deployment: str | None = None
    fields: tuple[FieldChange, ...] = ()
    # Exactly what the shell writes (`payloads`); None only in plans made by hand for
    # tests of what merely reads a plan (the shell refuses to carry it out).
    payload: Payload | None = None
    # The work-queue key this action belongs to: "cluster/<name>" or "deployment/<name>".
    key: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.verb,
            "resource": self.resource,
            "id": self.id,
            "cluster": self.cluster,
            "deployment": self.deployment,
            "reason": self.reason,
            "fields": [
                {"path": change.path, "from": change.before, "to": change.after}
                for change in self.fields
            ],
        }

    def drift_json(self) -> dict[str, Any]:
        """CONTRACT §7's shape of drift that `detect` leaves alone."""
        owner: dict[str, Any] = (
            {"deployment": self.deployment, "cluster": self.cluster}
            if self.deployment is not None
            else {"cluster": self.cluster}
        )
        return {
            **owner,
            "resource": self.resource,
            "id": self.id,
            "fields": [
                {"path": change.path, "from": change.before, "to": change.after}
                for change in self.fields
            ],
        }

    def sentence(self) -> str:
        return f"{self.resource} {self.id} will be {PAST_TENSE[self.verb]} ({self.reason})"


@dataclass(frozen=True, kw_only=True)
class Plan:
    actions: tuple[Action, ...] = ()
    # Drift that `driftPolicy: detect` reports without correcting: never applied.
    detected_drift: tuple[Action, ...] = ()
    # Things the user should know that are not actions (e.g. pruning refused).
    warnings: tuple[str, ...] = field(default_factory=tuple)
    # Keys that could not be planned (a cluster whose AMI parameter is not in SSM), by
    # key, with why: they hold no action, and fail alone.
    errors: Mapping[str, str] = field(default_factory=dict)

    @property
    def in_sync(self) -> bool:
        return not self.actions

    def for_key(self, key: str) -> Plan:
        return Plan(
            actions=tuple(a for a in self.actions if a.key == key),
            detected_drift=tuple(a for a in self.detected_drift if a.key == key),
            warnings=self.warnings,
            errors={key: self.errors[key]} if key in self.errors else {},
        )

    def summary(self) -> dict[str, int]:
        counts = Counter(action.verb for action in self.actions)
        return {
            "create": counts["create"],
            "update": counts["update"],
            "replace": counts["replace"],
            "delete": counts["delete"],
            "drift_detected": len(self.detected_drift),
        }

    def to_json(self) -> dict[str, Any]:
        return {
            "changes": [action.to_json() for action in self.actions],
            "detected_drift": [action.drift_json() for action in self.detected_drift],
            "warnings": list(self.warnings),
            "errors": [{"key": key, "error": error} for key, error in sorted(self.errors.items())],
            "summary": self.summary(),
        }
