"""The status document: per deployment and cluster, what the daemon knows right now.

Owns: the JSON shape served at `/status` and printed by `ecs-infer status --output json`
(the same builder serves both, so the two never disagree): replicas, drift field by
field (and fields fought over), probe results per endpoint and the last reconcile of
each key. Must not: read AWS or probe anything; it
only arranges what the informer, the runner and the prober already hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from controller.core.plans import Plan
from controller.core.states import LiveService
from controller.runner.drifting import plan_report
from controller.runner.reconciling import CLUSTER_PREFIX, DEPLOYMENT_PREFIX, Level
from controller.runner.running import KeyStatus, key_label
from controller.runner.watching import SpecSnapshot

ProbeReport = Mapping[str, Mapping[str, Mapping[str, Any]]]
"""deployment -> endpoint (`host:port`) -> the prober's per-endpoint JSON."""


def status_document(
    *,
    level: Level | None,
    statuses: Mapping[str, KeyStatus] | None = None,
    probes: ProbeReport | None = None,
    snapshot: SpecSnapshot | None = None,
    ready: bool | None = None,
    source: str = "daemon",
    drift: Callable[[str], Mapping[str, Any]] | None = None,
) -> dict[str, Any]:
    """Everything `/status` serves. `probes` None means "no probe data here" (the
    `status` command reading AWS directly), as opposed to "no endpoints". `drift` gives
    a key's drift and fights (the runner's `DriftReporter.report`); without it, drift
    is read from the level's plan alone."""
    statuses = statuses or {}
    specs = snapshot.specs if snapshot is not None else (level.specs if level else None)
    deployment_names = set(specs.deployments) if specs else set()
    cluster_names = set(specs.clusters) if specs else set()
    for key in statuses:
        if key.startswith(DEPLOYMENT_PREFIX):
            deployment_names.add(key.removeprefix(DEPLOYMENT_PREFIX))
        elif key.startswith(CLUSTER_PREFIX):
            cluster_names.add(key.removeprefix(CLUSTER_PREFIX))
    if drift is None:
        drift = plan_report(level.plan if level is not None else Plan())
    pending = _pending_by_label(level)

    deployments: dict[str, Any] = {}
    for name in sorted(deployment_names):
        spec = specs.deployments.get(name) if specs else None
        service = level.service_of(name) if level else None
        reconcile = statuses.get(DEPLOYMENT_PREFIX + name)
        deployments[name] = {
            "cluster": spec.spec.cluster if spec else None,
            "service": spec.service_name if spec else None,
            "in_spec": spec is not None,
            "replicas": {
                "desired": level.desired_replicas(name)
                if level
                else (spec.spec.replicas if spec else 0),
                "running": service.running_count if service else 0,
                "pending": service.replicas_not_running if service else 0,
                "service_desired": service.desired_count if service else None,
            },
            "rollout": _rollout(service),
            **drift(DEPLOYMENT_PREFIX + name),
            "pending_actions": pending.get(name, 0),
            "probe": _probe_summary(probes.get(name, {})) if probes is not None else None,
            "reconcile": reconcile.to_json() if reconcile else None,
        }

    clusters: dict[str, Any] = {}
    for name in sorted(cluster_names):
        label = key_label(CLUSTER_PREFIX + name)
        live = level.observed.clusters.get(name) if level else None
        instances = level.observed.instances.get(name, ()) if level else ()
        reconcile = statuses.get(CLUSTER_PREFIX + name)
        clusters[name] = {
            "status": live.status if live else None,
            "instances": {
                "desired": level.desired.clusters[name].fleet.count
                if level and name in level.desired.clusters
                else None,
                "alive": sum(1 for instance in instances if instance.alive),
            },
            **drift(CLUSTER_PREFIX + name),
            "pending_actions": pending.get(label, 0),
            "reconcile": reconcile.to_json() if reconcile else None,
        }

    return {
        "source": source,
        "generated_at": time.time(),
        "ready": ready,
        "revision": snapshot.revision if snapshot else None,
        "specs_valid": snapshot.valid if snapshot else None,
        "spec_errors": [str(error) for error in snapshot.errors] if snapshot else [],
        "observed_at": level.read_at if level else None,
        "warnings": list(level.plan.warnings) if level else [],
        "probes_available": probes is not None,
        "deployments": deployments,
        "clusters": clusters,
    }


def _pending_by_label(level: Level | None) -> dict[str, int]:
    counts: dict[str, int] = {}
    if level is not None:
        for action in level.plan.actions:
            label = key_label(action.key)
            counts[label] = counts.get(label, 0) + 1
    return counts


def _rollout(service: LiveService | None) -> dict[str, Any] | None:
    if service is None:
        return None
    primary = next((d for d in service.deployments if d.status == "PRIMARY"), None)
    return {
        "deployments": len(service.deployments),
        "state": primary.rollout_state if primary else None,
        "reason": primary.rollout_state_reason if primary else None,
    }


def _probe_summary(endpoints: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Per endpoint as the prober reports it, plus the worst p50 / p99 over endpoints
    (the table's one figure per deployment) and how many answered their last probe."""

    def worst(field: str) -> float | None:
        values = [float(e[field]) for e in endpoints.values() if e.get(field) is not None]
        return max(values) if values else None

    return {
        "endpoints": {address: dict(endpoint) for address, endpoint in endpoints.items()},
        "count": len(endpoints),
        "ok": sum(1 for endpoint in endpoints.values() if endpoint.get("last_ok") is True),
        "p50_ms": worst("p50_ms"),
        "p99_ms": worst("p99_ms"),
    }
