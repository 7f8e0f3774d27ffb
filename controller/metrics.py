"""Every Prometheus metric ecs-infer exports (CONTRACT §4), in one registry object.

Owns: metric names, types, labels and buckets. Must not: decide when to record (the
runner, the prober and the AWS shell call in), or serve HTTP (see `controller.serving`).

A `Metrics` holds its own `CollectorRegistry` rather than prometheus_client's global one,
so that tests and several controllers in one process never share state.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
)

# The `*_created` series double the exposition and no dashboard reads them.
disable_created_metrics()  # type: ignore[no-untyped-call]

# Inference latencies: about 1 ms to 5 s, denser where BERT on Inferentia lands (5 to 100 ms).
PROBE_LATENCY_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.0075,
    0.01,
    0.015,
    0.02,
    0.03,
    0.04,
    0.05,
    0.075,
    0.1,
    0.15,
    0.2,
    0.3,
    0.5,
    0.75,
    1.0,
    2.0,
    5.0,
)
RECONCILE_DURATION_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


@dataclass
class Metrics:
    registry: CollectorRegistry = field(
        default_factory=lambda: CollectorRegistry(auto_describe=True)
    )

    def __post_init__(self) -> None:
        r = self.registry
        self.probe_latency = Histogram(
            "ecsinfer_probe_latency_seconds",
            "Latency of the TF Serving Predict probe, as the client measures it.",
            ["deployment", "endpoint"],
            buckets=PROBE_LATENCY_BUCKETS,
            registry=r,
        )
        self.probe_success = Gauge(
            "ecsinfer_probe_success",
            "1 if the last probe of the endpoint succeeded, else 0.",
            ["deployment", "endpoint"],
            registry=r,
        )
        self.probe_server_compute = Histogram(
            "ecsinfer_probe_server_compute_seconds",
            "The model server's own compute time for the probe, when it reports one.",
            ["deployment", "endpoint"],
            buckets=PROBE_LATENCY_BUCKETS,
            registry=r,
        )
        self.probe_latency_objective = Gauge(
            "ecsinfer_probe_latency_objective_seconds",
            "The deployment's probe.latencyObjective, for alerting against.",
            ["deployment"],
            registry=r,
        )
        self.deployment_info = Gauge(
            "ecsinfer_deployment_info",
            "1 per deployment in the specs, its facts as labels (join on `deployment` to "
            "alert against each one's own latency objective).",
            ["deployment", "cluster", "model", "runtime", "latency_objective_seconds"],
            registry=r,
        )
        self.deployment_replicas = Gauge(
            "ecsinfer_deployment_replicas",
            "Replicas of a deployment by state: desired (the spec), running, pending (wanted by "
            "the service and not running, placed or not).",
            ["deployment", "state"],
            registry=r,
        )
        self.drift = Gauge(
            "ecsinfer_drift",
            "1 while the live resource differs from the spec.",
            ["deployment", "resource"],
            registry=r,
        )
        self.cluster_drift = Gauge(
            "ecsinfer_cluster_drift",
            "1 while a cluster's own resource (cluster, security-group, instance) differs "
            "from the spec.",
            ["cluster", "resource"],
            registry=r,
        )
        self.drift_corrections = Counter(
            "ecsinfer_drift_corrections",
            "Drift the controller corrected.",
            ["deployment", "resource"],
            registry=r,
        )
        self.reconcile = Counter(
            "ecsinfer_reconcile",
            "Reconciles by key and result (success, error).",
            ["deployment", "result"],
            registry=r,
        )
        self.reconcile_duration = Histogram(
            "ecsinfer_reconcile_duration_seconds",
            "Duration of one reconcile of a key.",
            ["deployment"],
            buckets=RECONCILE_DURATION_BUCKETS,
            registry=r,
        )
        self.aws_requests = Counter(
            "ecsinfer_aws_requests",
            "AWS API requests by service, operation and outcome (success, error, throttled).",
            ["service", "operation", "outcome"],
            registry=r,
        )
        self.spec_errors = Gauge(
            "ecsinfer_spec_errors",
            "Spec files that failed to load; while above 0 nothing is applied.",
            registry=r,
        )
        self.source_info = Gauge(
            "ecsinfer_source_info",
            "The revision (git commit) of the spec folder last loaded.",
            ["revision"],
            registry=r,
        )
        self.leader = Gauge(
            "ecsinfer_leader",
            "1 on the replica that holds the lease.",
            registry=r,
        )
        self.ready = Gauge(
            "ecsinfer_ready",
            "1 once the first reconcile pass is done.",
            registry=r,
        )
        # AWS events (`run --events`, CONTRACT §7): `runner.events` records these.
        self.events_received = Counter(
            "ecsinfer_events_received",
            "AWS events received by source (ecs, ec2, api), whether ours or not.",
            ["source"],
            registry=r,
        )
        self.events_dropped = Counter(
            "ecsinfer_events_dropped",
            "Event messages that made no key due, by reason (malformed, unknown, oversized, "
            "irrelevant, not-ours, own-call, no-level).",
            ["reason"],
            registry=r,
        )
        self.events_keys = Counter(
            "ecsinfer_events_keys_enqueued",
            "Keys marked stale and enqueued at once because an event named them.",
            registry=r,
        )
        self.events_receive_errors = Counter(
            "ecsinfer_events_receive_errors",
            "Failed receives (or set-ups) of the event source; each is retried with backoff.",
            registry=r,
        )

    def record_aws_request(self, service: str, operation: str, outcome: str) -> None:
        self.aws_requests.labels(service=service, operation=operation, outcome=outcome).inc()

    def set_source_revision(self, revision: str | None) -> None:
        self.source_info.clear()
        self.source_info.labels(revision=revision or "none").set(1)

    def forget_endpoint(self, deployment: str, endpoint: str) -> None:
        """Remove the series of an endpoint that is gone, rather than leave them stale."""
        for metric in (self.probe_latency, self.probe_success, self.probe_server_compute):
            _remove(metric, deployment, endpoint)

    def forget_deployment(self, deployment: str) -> None:
        """Remove the per-deployment series of a deployment whose spec is gone."""
        for state in ("desired", "running", "pending"):
            _remove(self.deployment_replicas, deployment, state)
        _remove(self.probe_latency_objective, deployment)
        # Its drift series are the runner's `DriftReporter`'s to remove.


def _remove(metric: Counter | Gauge | Histogram, *labels: str) -> None:
    with contextlib.suppress(KeyError):
        metric.remove(*labels)
