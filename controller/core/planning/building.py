"""Building one work-queue key's plan.

Owns: `KeyPlan`, the actions, detected drift and warnings of one key as they are
planned, and the one place where an `Action` is constructed (`KeyPlan.add`): every
action of a key carries that key, and `driftPolicy: detect` turns drift into a report.
Must not: decide what to plan.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from controller.core.diffs import FieldChange
from controller.core.payloads import Payload
from controller.core.plans import Action, Plan, Reason, ResourceKind, Verb


@dataclass
class KeyPlan:
    """The actions, detected drift and warnings of one work-queue key, being built."""

    key: str
    actions: list[Action] = field(default_factory=list)
    detected_drift: list[Action] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def add(
        self,
        verb: Verb,
        resource: ResourceKind,
        id: str,  # the AWS name or id, as in Action
        *,
        reason: Reason,
        cluster: str,
        payload: Payload,
        deployment: str | None = None,
        fields: tuple[FieldChange, ...] = (),
        detect_only: bool = False,
    ) -> None:
        action = Action(
            verb=verb,
            resource=resource,
            id=id,
            reason=reason,
            cluster=cluster,
            deployment=deployment,
            fields=fields,
            payload=payload,
            key=self.key,
        )
        if detect_only and reason == "drift":
            self.detected_drift.append(action)
        else:
            self.actions.append(action)

    def to_plan(self) -> Plan:
        return Plan(
            actions=tuple(self.actions),
            detected_drift=tuple(self.detected_drift),
            warnings=tuple(self.warnings),
        )
