"""Reconciling one key: read the level, plan that key, apply that key's actions.

Owns: `reconcile(key)` (controller-runtime's contract: it returns `Reconciled`, whose
`requeue_after` says when to look again, or raises), and the informer: one batched read
of AWS (`Level`: desired, observed, plan) shared by every key, re-read after each resync
(stale for every key) and when a key that wrote, or waits on another key, comes back
(stale for that key only; concurrent requests share one read); re-planned without
reading AWS again when only the specs changed.
Must not: count outcomes, back off, or log a summary (the runner does, in one place); or
import the AWS shell: it reaches AWS through the `Shell` it is given (the AWS-backed
one is `controller.daemon.AwsShell`), which keeps this package testable without AWS and
inside the import contract that only the shell talks to AWS.

A reconcile never reads an event payload, only the level: whatever made the key due (a
file change, a resync, a verification after a write), the same three steps run.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import structlog

from controller.core.errors import TerminalError
from controller.core.planning import cluster_key, deployment_key
from controller.core.plans import Action, Plan
from controller.core.states import DesiredState, LiveService, ObservedState
from controller.runner.watching import SpecSnapshot
from controller.settings import QueueSettings
from controller.specs.loading import SpecSet

log = structlog.get_logger(__name__)

# Keys are built by `planning.cluster_key` / `deployment_key`; these read them back.
CLUSTER_PREFIX = cluster_key("")
DEPLOYMENT_PREFIX = deployment_key("")


# --- what the shell gives the runner ---------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Level:
    """The world at one moment: what the specs want, what AWS has, and the plan between."""

    specs: SpecSet
    desired: DesiredState
    observed: ObservedState
    plan: Plan
    """The whole plan; `plan.for_key(key)` is one key's share."""
    read_at: float
    """Wall-clock time (epoch seconds) the read finished."""
    duration_s: float = 0.0

    def keys(self) -> list[str]:
        """Every key with something to look at: each spec, and each key the plan names
        (a removed spec's resources still have to be deleted under their old key)."""
        keys = {cluster_key(name) for name in self.specs.clusters}
        keys |= {deployment_key(name) for name in self.specs.deployments}
        keys |= {action.key for action in (*self.plan.actions, *self.plan.detected_drift)}
        # Clusters first: a deployment's service needs its cluster.
        return sorted(keys, key=lambda key: (not key.startswith(CLUSTER_PREFIX), key))

    def desired_replicas(self, deployment: str) -> int:
        """The replicas a deployment should run: the spec's, or under `ignore: [replicas]`
        the service's own desired count (an autoscaler owns it)."""
        wanted = self.desired.deployments.get(deployment)
        spec = self.specs.deployments.get(deployment)
        service = self.service_of(deployment)
        if wanted is not None and service is not None and "desiredCount" in wanted.ignore:
            return service.desired_count
        if wanted is not None:
            return wanted.replicas
        return spec.spec.replicas if spec is not None else 0

    def service_of(self, deployment: str) -> LiveService | None:
        wanted = self.desired.deployments.get(deployment)
        if wanted is None:
            return None
        service = self.observed.services.get((wanted.cluster, wanted.service.name))
        return None if service is None or service.status == "INACTIVE" else service


@dataclass(frozen=True, kw_only=True)
class Applied:
    """What the shell did with one key's plan."""

    changed: tuple[Action, ...] = ()
    """Actions carried out that changed AWS (not those found already done)."""
    attempted: bool = False
    """Whether any write was sent (a failed one included)."""
    error: Exception | None = None
    """The failure that stopped the plan, if any; later actions were not attempted."""


class Shell(Protocol):
    """The runner's view of AWS: read a level, plan new specs, carry out a plan."""

    async def read_level(self, specs: SpecSet) -> Level: ...

    async def replan(self, specs: SpecSet, *, level: Level) -> Level | None:
        """A level for `specs` from what `level` observed, reading only the little the
        new specs need and it lacks; None when it lacks more (read everything then)."""

    async def apply(self, plan: Plan, *, level: Level) -> Applied: ...


# --- the informer -----------------------------------------------------------------------

LevelListener = Callable[[Level], None]


class Informer:
    """One shared, batched read of AWS, fresh per key.

    `level(key)` returns a level observed after the last `mark_stale(key)` and the last
    `mark_stale()` (every key), planned from the current specs; reads requested together
    share one (single flight). A write marks stale only the key that made it, so the
    other keys keep planning from the level they have, instead of every write costing
    every key a re-read. A spec change leaves AWS as it was: the level is re-planned from
    what it observed (`Shell.replan`, which reads only what the new specs lack)."""

    def __init__(self, shell: Shell) -> None:
        self.shell = shell
        self.specs = SpecSet()
        self.latest: Level | None = None
        """The last level read (maybe stale): for status and metrics, never for writes."""
        self.listeners: list[LevelListener] = []
        # Generations: each mark takes the next one; a read covers every mark before it.
        self._marked = 1
        self._wanted_by_all = 1  # a level observed before this is stale for every key
        self._wanted_by_key: dict[str, int] = {}
        self._have = 0
        self._specs_version = 0  # bumped by every spec change
        self._planned_for = -1  # the specs version `latest` was planned from
        self._read: asyncio.Task[Level] | None = None

    def set_specs(self, specs: SpecSet) -> None:
        if specs != self.specs:
            self.specs = specs
            self._specs_version += 1

    def mark_stale(self, key: str | None = None) -> None:
        """The level no longer holds for `key` (it wrote to AWS, or waits on a change),
        or for every key when `key` is None (a resync)."""
        self._marked += 1
        if key is None:
            self._wanted_by_all = self._marked
            self._wanted_by_key.clear()
        else:
            self._wanted_by_key[key] = self._marked

    def _wanted(self, key: str | None) -> int:
        if key is None:
            return self._wanted_by_all
        return max(self._wanted_by_all, self._wanted_by_key.get(key, 0))

    def fresh_for(self, key: str | None = None) -> bool:
        """Whether `latest` may be planned from for `key`: observed after its marks, and
        planned from the current specs."""
        return (
            self.latest is not None
            and self._have >= self._wanted(key)
            and self._planned_for == self._specs_version
        )

    @property
    def fresh(self) -> bool:
        """Fresh for every key."""
        return self.fresh_for(None) and all(
            self._have >= wanted for wanted in self._wanted_by_key.values()
        )

    async def level(self, key: str | None = None) -> Level:
        """A level fresh for `key` (for every key's common marks when None)."""
        while True:
            if self.fresh_for(key):
                assert self.latest is not None
                return self.latest
            if self._read is None or self._read.done():
                observed_enough = self.latest is not None and self._have >= self._wanted(key)
                self._read = asyncio.get_running_loop().create_task(
                    self._read_level(
                        self._marked, self.specs, self._specs_version, replan=observed_enough
                    ),
                    name="informer read",
                )
            # shield: a cancelled reconcile must not cancel the read others wait for.
            await asyncio.shield(self._read)

    async def _read_level(
        self, generation: int, specs: SpecSet, version: int, *, replan: bool
    ) -> Level:
        base, have = self.latest, self._have
        replanned = await self.shell.replan(specs, level=base) if replan and base else None
        if replanned is not None:
            level, generation = replanned, have  # observed nothing new
        else:
            level = await self.shell.read_level(specs)
        if generation >= self._have:
            self._have = generation
            self.latest = level
            self._planned_for = version
            # Marks the read covered are done with.
            self._wanted_by_key = {
                key: wanted for key, wanted in self._wanted_by_key.items() if wanted > generation
            }
            for listener in self.listeners:
                try:
                    listener(level)
                except Exception:
                    log.exception("informer.listener_failed")
        return level

    async def close(self) -> None:
        if self._read is not None and not self._read.done():
            self._read.cancel()
            await asyncio.gather(self._read, return_exceptions=True)


# --- one reconcile ----------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class Reconciled:
    """A reconcile that did not fail."""

    plan: Plan
    """The key's plan, as it was when the reconcile ran."""
    changed: tuple[Action, ...] = ()
    requeue_after: float | None = None
    """Look at the key again this much later (verification, a rollout, a dependency)."""
    note: str = ""
    """Why nothing was applied, when nothing was (`spec errors`, `waiting for cluster`)."""


class ReconcileError(Exception):
    """Applying a key's plan failed part way; `changed` is what was done before."""

    def __init__(self, error: Exception, *, plan: Plan, changed: tuple[Action, ...]) -> None:
        super().__init__(str(error))
        self.error = error
        self.plan = plan
        self.changed = changed


@dataclass(frozen=True, kw_only=True)
class Fingerprint:
    """What a key is planned from, besides AWS: the specs it depends on (a deployment's
    own and its cluster's; a cluster's own and its deployments') and the AWS account.
    A key parked by a terminal error is retried once this differs."""

    account: str | None
    specs: tuple[object, ...]


class Reconciler:
    """`reconcile(key)`: level, plan, apply; one key at a time is the queue's job."""

    def __init__(
        self,
        *,
        shell: Shell,
        informer: Informer,
        snapshot: Callable[[], SpecSnapshot],
        settings: QueueSettings,
    ) -> None:
        self.shell = shell
        self.informer = informer
        self.snapshot = snapshot
        self.settings = settings

    def fingerprint(self, key: str) -> Fingerprint:
        """What a terminal error of `key` waits on (see `Fingerprint`)."""
        specs = self.snapshot().specs
        latest = self.informer.latest
        account = latest.observed.facts.account_id if latest is not None else None
        if key.startswith(DEPLOYMENT_PREFIX):
            deployment = specs.deployments.get(key.removeprefix(DEPLOYMENT_PREFIX))
            cluster = specs.clusters.get(deployment.spec.cluster) if deployment else None
            return Fingerprint(account=account, specs=(deployment, cluster))
        name = key.removeprefix(CLUSTER_PREFIX)
        members = tuple(
            (member, spec)
            for member, spec in sorted(specs.deployments.items())
            if spec.spec.cluster == name
        )
        return Fingerprint(account=account, specs=(specs.clusters.get(name), members))

    async def reconcile(self, key: str) -> Reconciled:
        if not self.snapshot().valid:
            # A folder with an invalid file is never acted on (see `watching`).
            return Reconciled(plan=Plan(), note="spec errors")
        level = await self.informer.level(key)
        plan = level.plan.for_key(key)
        if key in plan.errors:
            # The account lacks a fact this key's specs need (its cluster's AMI parameter,
            # a subnet): no plan can help until the spec or the account changes.
            raise TerminalError(plan.errors[key])
        waiting = self._waiting_for_cluster(key, level)
        if waiting is not None and plan.actions:
            # Another key creates the cluster: look again with a level read after now.
            self.informer.mark_stale(key)
            return Reconciled(plan=plan, requeue_after=self.settings.verify_after_s, note=waiting)
        if not plan.actions:
            return Reconciled(plan=plan, requeue_after=self._settle_after(key, level))
        applied = await self.shell.apply(plan, level=level)
        if applied.attempted:
            # What this key wrote; other keys' share of the level still holds.
            self.informer.mark_stale(key)
        if applied.error is not None:
            raise ReconcileError(applied.error, plan=plan, changed=applied.changed)
        return Reconciled(
            plan=plan, changed=applied.changed, requeue_after=self.settings.verify_after_s
        )

    def _waiting_for_cluster(self, key: str, level: Level) -> str | None:
        """A deployment whose cluster is not there yet waits for it, without an error."""
        if not key.startswith(DEPLOYMENT_PREFIX):
            return None
        deployment = level.desired.deployments.get(key.removeprefix(DEPLOYMENT_PREFIX))
        if deployment is None:
            return None
        live = level.observed.clusters.get(deployment.cluster)
        if live is not None and live.status == "ACTIVE":
            return None
        return f"waiting for cluster {deployment.cluster}"

    def _settle_after(self, key: str, level: Level) -> float | None:
        """While a deployment rolls out, look again soon (with a fresh level), so that
        replicas and status follow the rollout rather than the next resync."""
        if not key.startswith(DEPLOYMENT_PREFIX):
            return None
        service = level.service_of(key.removeprefix(DEPLOYMENT_PREFIX))
        if service is None:
            return None
        settled = (
            service.running_count == service.desired_count
            and service.pending_count == 0
            and len(service.deployments) <= 1
        )
        if settled:
            return None
        # The key comes back with a fresh read (shared by every key that is rolling out).
        self.informer.mark_stale(key)
        return self.settings.settle_after_s
