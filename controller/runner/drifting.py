"""Drift as the daemon reports it: the gauges, one log line per drift, and fights.

Owns: turning each fresh level's plan into drift items (one per resource and field
path, with the live and the desired value), the gauges `ecsinfer_drift{deployment,
resource}` and `ecsinfer_cluster_drift{cluster, resource}` (1 while a resource drifts,
0 for the resources a spec always has), one `drift.detected` log line when a drift
appears and one `drift.ended` when it is gone, and fights: a field corrected again and
again (another actor keeps changing it back, as an autoscaler fights Argo CD's
self-heal) is logged as `drift.fight` with its count and shown in `/status`.
Must not: decide what is drift (the planner does) or correct anything.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import structlog

from controller.core.plans import Action, Plan
from controller.metrics import Metrics
from controller.runner.reconciling import CLUSTER_PREFIX, DEPLOYMENT_PREFIX

log = structlog.get_logger(__name__)

# Resources a spec always has: their drift series exist (at 0) from the start, so that
# dashboards and alerts see a deployment or cluster that never drifted.
DEPLOYMENT_RESOURCES = ("service", "task-definition")
CLUSTER_RESOURCES = ("cluster", "security-group", "instance")

# A field corrected this many times within the window is a fight with another actor.
FIGHT_CORRECTIONS = 3
FIGHT_WINDOW_S = 600.0


@dataclass(frozen=True, order=True)
class DriftItem:
    """One drifted field of one resource, under the key whose plan found it."""

    key: str
    resource: str
    id: str
    path: str
    before: Any = field(compare=False, default=None)
    after: Any = field(compare=False, default=None)
    detected_only: bool = field(compare=False, default=False)

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "id": self.id,
            "path": self.path,
            "from": self.before,
            "to": self.after,
            "corrected": not self.detected_only,
        }


def drift_items(plan: Plan) -> list[DriftItem]:
    """Every drifted field the plan corrects (enforce) or only reports (detect). An
    action without fields (nothing field-level to say) counts as its resource."""

    def items(action: Action, *, detected: bool) -> Iterable[DriftItem]:
        changes = action.fields or ()
        if not changes:
            yield DriftItem(action.key, action.resource, action.id, "", detected_only=detected)
        for change in changes:
            yield DriftItem(
                action.key,
                action.resource,
                action.id,
                change.path,
                change.before,
                change.after,
                detected_only=detected,
            )

    found = [i for a in plan.actions if a.reason == "drift" for i in items(a, detected=False)]
    found += [i for a in plan.detected_drift for i in items(a, detected=True)]
    return sorted(set(found))


def by_key(items: Iterable[DriftItem]) -> dict[str, list[DriftItem]]:
    grouped: dict[str, list[DriftItem]] = {}
    for item in items:
        grouped.setdefault(item.key, []).append(item)
    return grouped


def key_report(items: Iterable[DriftItem], fights: Iterable[Fight] = ()) -> dict[str, Any]:
    """One key's drift as `/status` shows it: field paths, their detail, fights."""
    items = list(items)
    return {
        "drift": sorted({f"{i.resource}.{i.path}" if i.path else i.resource for i in items}),
        "drift_detail": [item.to_json() for item in items],
        "fights": [fight.to_json() for fight in fights],
    }


@dataclass(frozen=True, kw_only=True)
class Fight:
    key: str
    resource: str
    id: str
    path: str
    corrections: int
    since: float  # wall clock of the first correction in the window

    def to_json(self) -> dict[str, Any]:
        return {
            "resource": self.resource,
            "id": self.id,
            "path": self.path,
            "corrections": self.corrections,
            "window_s": FIGHT_WINDOW_S,
            "since": self.since,
        }


class DriftReporter:
    """Gauges, logs and fights from each level and each correction."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self.current: dict[str, list[DriftItem]] = {}  # by key
        self._seen: set[DriftItem] = set()
        self._series: set[tuple[str, str]] = set()  # (key, resource) with a gauge
        self._corrections: dict[tuple[str, str, str, str], deque[float]] = {}
        self.fights: dict[str, list[Fight]] = {}  # by key, fields in a fight right now

    # --- levels -----------------------------------------------------------------------

    def publish(self, plan: Plan, *, deployments: Iterable[str], clusters: Iterable[str]) -> None:
        items = drift_items(plan)
        self.current = by_key(items)
        self._log(set(items))

        live = {DEPLOYMENT_PREFIX + name for name in deployments}
        live |= {CLUSTER_PREFIX + name for name in clusters}
        series = {(DEPLOYMENT_PREFIX + n, r) for n in deployments for r in DEPLOYMENT_RESOURCES}
        series |= {(CLUSTER_PREFIX + n, r) for n in clusters for r in CLUSTER_RESOURCES}
        drifting = {(item.key, item.resource) for item in items}
        series |= {pair for pair in drifting | self._series if pair[0] in live}
        for key, resource in sorted(self._series - series):
            self._gauge_remove(key, resource)
        for key, resource in sorted(series):
            self._gauge_set(key, resource, 1 if (key, resource) in drifting else 0)
        self._series = series
        for key in list(self.fights):
            if key not in live:
                del self.fights[key]

    def _log(self, items: set[DriftItem]) -> None:
        for item in sorted(items - self._seen):
            log.warning(
                "drift.detected",
                key=item.key,
                resource=item.resource,
                id=item.id,
                path=item.path or None,
                live=item.before,
                desired=item.after,
                policy="detect" if item.detected_only else "enforce",
            )
        for item in sorted(self._seen - items):
            log.info(
                "drift.ended",
                key=item.key,
                resource=item.resource,
                id=item.id,
                path=item.path or None,
            )
        self._seen = items

    def _gauge_set(self, key: str, resource: str, value: int) -> None:
        if key.startswith(CLUSTER_PREFIX):
            name = key.removeprefix(CLUSTER_PREFIX)
            self.metrics.cluster_drift.labels(cluster=name, resource=resource).set(value)
        else:
            name = key.removeprefix(DEPLOYMENT_PREFIX)
            self.metrics.drift.labels(deployment=name, resource=resource).set(value)

    def _gauge_remove(self, key: str, resource: str) -> None:
        gauge = self.metrics.cluster_drift if key.startswith(CLUSTER_PREFIX) else self.metrics.drift
        with contextlib.suppress(KeyError):
            gauge.remove(key.split("/", 1)[-1], resource)

    # --- corrections --------------------------------------------------------------------

    def corrected(self, key: str, actions: Iterable[Action], *, now: float | None = None) -> None:
        """Count the drift the shell corrected; report fields corrected again and again."""
        now = time.time() if now is None else now
        label = key.removeprefix(DEPLOYMENT_PREFIX)
        for action in actions:
            if action.reason != "drift":
                continue
            self.metrics.drift_corrections.labels(deployment=label, resource=action.resource).inc()
            for path in [change.path for change in action.fields] or [""]:
                field_key = (key, action.resource, action.id, path)
                times = self._corrections.setdefault(field_key, deque())
                times.append(now)
                while times and times[0] < now - FIGHT_WINDOW_S:
                    times.popleft()
                if len(times) >= FIGHT_CORRECTIONS:
                    self._fight(field_key, len(times), since=times[0])

    def _fight(self, field_key: tuple[str, str, str, str], count: int, *, since: float) -> None:
        key, resource, id, path = field_key
        fight = Fight(key=key, resource=resource, id=id, path=path, corrections=count, since=since)
        others = [
            f for f in self.fights.get(key, []) if (f.resource, f.id, f.path) != field_key[1:]
        ]
        self.fights[key] = [*others, fight]
        log.warning(
            "drift.fight",
            key=key,
            resource=resource,
            id=id,
            path=path or None,
            corrections=count,
            window_s=FIGHT_WINDOW_S,
            hint="another actor keeps changing this field: add it to spec.ignore, or stop it",
        )

    def report(self, key: str) -> dict[str, Any]:
        """What `/status` shows for one key."""
        return key_report(self.current.get(key, []), self.fights.get(key, []))


def plan_report(plan: Plan) -> Callable[[str], dict[str, Any]]:
    """A key's drift from a plan alone (the `status` command without a daemon: no
    corrections seen, so no fights)."""
    grouped = by_key(drift_items(plan))
    return lambda key: key_report(grouped.get(key, []))
