"""The runner: workers that take keys from the queue and reconcile them, and the one place
every outcome is counted, logged and remembered.

Owns: the workers, what a reconcile's outcome does to the queue (success: forget the
key's failures, requeue when asked; error: back off that key alone), the reconcile and
drift metrics, the replica gauges (published from each level the informer reads), the
series of deployments whose spec is gone, the summary log line of each reconcile, the
per-key record `/status` shows, and readiness (the first full pass is done).
Must not: decide what a key needs (`reconciling`) or talk to AWS.

Outcomes (controller-runtime's contract): a transient error backs the key off alone; a
`TerminalError` (access denied, an invalid parameter, a role that does not exist) is
counted and reported on its key like any error, but the key is parked, not retried,
until its fingerprint (its specs, the account) changes or the next resync.

Metric labels: the `deployment` label of a deployment key is the deployment's name
(`deployment/bert` → `bert`); a cluster key keeps its key as the label (`cluster/demo`),
so that cluster outcomes share the contract's metrics without ever colliding with a
deployment (names cannot hold a `/`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

import structlog

from controller.core.errors import TerminalError
from controller.core.plans import Plan
from controller.metrics import Metrics
from controller.runner.drifting import DriftReporter
from controller.runner.queueing import Backoff, ShutDown, WorkQueue
from controller.runner.reconciling import (
    DEPLOYMENT_PREFIX,
    Fingerprint,
    Level,
    Reconciled,
    ReconcileError,
    Reconciler,
)
from controller.settings import QueueSettings
from controller.specs.models import InferenceDeployment

log = structlog.get_logger(__name__)

Result = Literal["success", "error", "skipped"]
TERMINAL_NOTE = (
    "terminal error: not retried until its spec or the account changes, or the next resync"
)


def info_labels(spec: InferenceDeployment) -> tuple[str, ...]:
    """`ecsinfer_deployment_info`'s labels, in the metric's order."""
    return (
        spec.metadata.name,
        spec.spec.cluster,
        spec.spec.model.name,
        spec.spec.runtime,
        f"{spec.spec.probe.latencyObjective:g}",
    )


def key_label(key: str) -> str:
    """The `deployment` label of a key (see the module docstring)."""
    return key.removeprefix(DEPLOYMENT_PREFIX)


@dataclass(frozen=True, kw_only=True)
class KeyStatus:
    """The last reconcile of one key, for `/status`."""

    key: str
    result: Result | None = None
    finished_at: float | None = None
    """Wall-clock time (epoch seconds)."""
    duration_s: float = 0.0
    actions: int = 0
    """Actions the key's plan held."""
    changed: int = 0
    """Actions that changed AWS."""
    error: str | None = None
    failures: int = 0
    """Consecutive failures (0 after a success)."""
    retry_in_s: float | None = None
    terminal: bool = False
    """The last error was terminal: the key waits for its spec or the account to change,
    or the next resync, instead of backing off."""
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        return {
            "result": self.result,
            "finished_at": self.finished_at,
            "duration_ms": round(self.duration_s * 1000, 1),
            "actions": self.actions,
            "changed": self.changed,
            "error": self.error,
            "consecutive_failures": self.failures,
            "retry_in_s": self.retry_in_s,
            "terminal": self.terminal,
            "note": self.note or None,
        }


@dataclass
class _FirstPass:
    pending: set[str] = field(default_factory=set)
    started: bool = False


class Runner:
    def __init__(
        self,
        *,
        reconciler: Reconciler,
        metrics: Metrics,
        settings: QueueSettings,
        owns: Callable[[str], bool] = lambda key: True,
    ) -> None:
        self.reconciler = reconciler
        self.metrics = metrics
        self.settings = settings
        # The sharding seam: a replica reconciles only the keys it owns.
        self.owns = owns
        self.queue = WorkQueue(
            backoff=Backoff(base_s=settings.backoff_base_s, cap_s=settings.backoff_cap_s)
        )
        self.statuses: dict[str, KeyStatus] = {}
        self.ready = asyncio.Event()
        self._first = _FirstPass()
        self._workers: list[asyncio.Task[None]] = []
        # Keys parked by a terminal error, with the fingerprint they wait to see change.
        self.parked: dict[str, Fingerprint] = {}
        self.drift = DriftReporter(metrics)
        self._deployments: set[str] = set()
        self._info: dict[str, tuple[str, ...]] = {}  # deployment -> its info labels

    # --- work -----------------------------------------------------------------------

    def start(self) -> None:
        for index in range(max(1, self.settings.workers)):
            self._workers.append(
                asyncio.get_running_loop().create_task(self._work(), name=f"worker {index}")
            )

    def first_pass(self, keys: Iterable[str]) -> None:
        """Enqueue the first full pass; ready once each of its keys was reconciled."""
        keys = [key for key in keys if self.owns(key)]
        self._first = _FirstPass(pending=set(keys), started=True)
        self.enqueue(keys, now=True)
        self._check_ready()

    def enqueue(self, keys: Iterable[str], *, now: bool = False, resync: bool = False) -> None:
        """Queue these keys. Unless `now`, a key waiting on a timer (backing off after a
        failure, or due for verification) keeps waiting, and a key being reconciled is
        not queued again (it reads the same level): a resync does not undo backoff.
        A key parked by a terminal error stays parked unless this is a `resync` or its
        fingerprint changed."""
        for key in keys:
            if not self.owns(key):
                continue
            unparked = False
            if key in self.parked:
                if not resync and self.parked[key] == self.reconciler.fingerprint(key):
                    continue
                del self.parked[key]
                unparked = True
            if now or unparked or not (self.queue.scheduled(key) or self.queue.busy(key)):
                self.queue.add(key)

    async def stop(self, *, grace_s: float) -> None:
        """Take no more work; wait up to `grace_s` for reconciles in flight, then cancel."""
        self.queue.shut_down()
        if not self._workers:
            return
        _, pending = await asyncio.wait(self._workers, timeout=grace_s)
        for task in pending:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        if pending:
            log.warning("runner.cancelled_in_flight", workers=len(pending))

    async def _work(self) -> None:
        while True:
            try:
                key = await self.queue.get()
            except ShutDown:
                return
            try:
                await self.process(key)
            finally:
                self.queue.done(key)

    async def process(self, key: str) -> KeyStatus:
        """Reconcile `key` once and account for it: metrics, queue, status, log."""
        started = time.monotonic()
        label = key_label(key)
        previous = self.statuses.get(key, KeyStatus(key=key))
        result: Result
        plan: Plan = Plan()
        changed: tuple[Any, ...] = ()
        error: str | None = None
        retry_in: float | None = None
        note = ""
        fingerprint = self.reconciler.fingerprint(key)
        with structlog.contextvars.bound_contextvars(key=key):
            try:
                outcome: Reconciled = await self.reconciler.reconcile(key)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                result = "error"
                cause: Exception = exc
                if isinstance(exc, ReconcileError):
                    plan, changed, cause = exc.plan, exc.changed, exc.error
                error = str(exc) or type(exc).__name__
                if isinstance(cause, TerminalError):
                    note = TERMINAL_NOTE
                    self._park(key, fingerprint)
                else:
                    retry_in = self.queue.add_rate_limited(key)
            else:
                plan, changed, note = outcome.plan, outcome.changed, outcome.note
                result = "skipped" if note == "spec errors" else "success"
                self.queue.forget(key)
                if outcome.requeue_after is not None:
                    self.queue.add_after(key, outcome.requeue_after)
                    retry_in = outcome.requeue_after
            duration = time.monotonic() - started
            if result != "skipped":
                self.metrics.reconcile.labels(deployment=label, result=result).inc()
                self.metrics.reconcile_duration.labels(deployment=label).observe(duration)
            self.drift.corrected(key, changed)
            status = KeyStatus(
                key=key,
                result=result,
                finished_at=time.time(),
                duration_s=duration,
                actions=len(plan.actions),
                changed=len(changed),
                error=error,
                failures=previous.failures + 1 if result == "error" else 0,
                terminal=key in self.parked,
                retry_in_s=retry_in,
                note=note,
            )
            self.statuses[key] = status
            log_method = log.warning if result == "error" else log.info
            log_method(
                "reconcile.finished",
                actions=len(plan.actions),
                changed=len(changed),
                duration_ms=round(duration * 1000),
                result=result,
                error=error,
                requeue_after=retry_in,
                note=note or None,
            )
        self._first.pending.discard(key)
        self._check_ready()
        return status

    def _park(self, key: str, before: Fingerprint) -> None:
        """Hold `key` until its fingerprint changes or a resync; a spec change that came
        while it was being reconciled lets its pending re-add stand."""
        self.queue.forget(key)
        now = self.reconciler.fingerprint(key)
        if now.specs != before.specs:
            return
        self.parked[key] = now
        self.queue.drop(key)

    def _check_ready(self) -> None:
        if self._first.started and not self._first.pending and not self.ready.is_set():
            self.ready.set()
            self.metrics.ready.set(1)
            log.info("runner.ready")

    # --- what a level says ----------------------------------------------------------

    def _publish_info(self, level: Level) -> None:
        """One `ecsinfer_deployment_info` series per deployment in the specs; the old
        series of a deployment whose facts changed, or that is gone, removed."""
        info = {name: info_labels(spec) for name, spec in level.specs.deployments.items()}
        for name, labels in self._info.items():
            if info.get(name) != labels:
                with contextlib.suppress(KeyError):
                    self.metrics.deployment_info.remove(*labels)
        for labels in info.values():
            self.metrics.deployment_info.labels(*labels).set(1)
        self._info = info

    def publish_level(self, level: Level) -> None:
        """Replica and drift gauges from a fresh level; series of gone specs removed.
        Runs as an informer listener, and enqueues keys the level has work for."""
        deployments = set(level.specs.deployments)
        for name in sorted(self._deployments - deployments):
            self.metrics.forget_deployment(name)
            self.statuses.pop(DEPLOYMENT_PREFIX + name, None)
        self._deployments = deployments

        self._publish_info(level)
        for name in sorted(level.specs.deployments):
            service = level.service_of(name)
            gauge = self.metrics.deployment_replicas
            gauge.labels(deployment=name, state="desired").set(level.desired_replicas(name))
            gauge.labels(deployment=name, state="running").set(
                service.running_count if service else 0
            )
            gauge.labels(deployment=name, state="pending").set(
                service.replicas_not_running if service else 0
            )

        self.drift.publish(
            level.plan, deployments=level.specs.deployments, clusters=level.specs.clusters
        )

        # Work the refresh revealed (drift, an orphan, a service that vanished); keys
        # waiting on a timer keep waiting (see `enqueue`).
        self.enqueue(sorted({action.key for action in level.plan.actions}))
