"""The pipeline: load -> observe -> plan -> apply -> report, above both core and shell.

Owns: the order of a pass, as reusable steps

    read_facts ─▶ desired_state ─▶ observe ─▶ families_to_read ─▶ observe families
        ─▶ plan ─▶ apply

used by `ecs-infer plan` / `apply` (`run_pass`, one pass over every key) and, through
`AwsShell`, by the runner: `read_level` once per level, then a key's share of the plan
applied per key. It sits above the core (which decides) and the AWS shell (which reads
and writes), so that neither drives the other.
Must not: decide anything itself (the core plans), retry, or wait for rollouts.

An empty spec folder never deletes anything: the planner's one guard
(`core.planning.pruning.guard_empty_folder`) plans no action at all for it (CONTRACT §5).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import structlog

from controller.aws.applying import ApplyReport, apply_plan
from controller.aws.clients import AwsClients, RequestHook
from controller.aws.errors import AwsError
from controller.aws.observing import (
    observe,
    observe_revisions,
    observe_task_definitions,
    read_facts,
)
from controller.aws.waiting import ServiceRollout, ServiceTarget, wait_until_stable
from controller.core.desired import ami_parameters_needed, desired_state
from controller.core.planning import (
    families_to_read,
    newest_to_read,
    plan,
    revisions_to_read,
)
from controller.core.plans import Plan
from controller.core.states import DesiredState, ObservedState
from controller.runner.reconciling import Applied, Level
from controller.settings import Settings
from controller.specs.loading import SpecSet

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class World:
    """What a pass knows before it plans: the desired and the observed state."""

    desired: DesiredState
    observed: ObservedState


@dataclass(frozen=True, kw_only=True)
class PassResult:
    world: World
    plan: Plan
    report: ApplyReport | None  # None when the pass only planned
    duration_s: float
    # `apply --wait` only: where each service's rollout ended, and why waiting failed.
    rollouts: tuple[ServiceRollout, ...] = ()
    wait_error: AwsError | None = None

    @property
    def desired(self) -> DesiredState:
        return self.world.desired

    @property
    def observed(self) -> ObservedState:
        return self.world.observed

    @property
    def in_sync(self) -> bool:
        return self.plan.in_sync

    @property
    def ok(self) -> bool:
        return self.report is None or self.report.ok

    @property
    def succeeded(self) -> bool:
        """Every action done, every key planned, and (when waited for) every rollout
        completed."""
        return self.ok and not self.plan.errors and self.wait_error is None

    def report_lines(self) -> list[str]:
        """What `ecs-infer apply` prints: one sentence per action, warnings, rollouts."""
        lines = [f"warning: {warning}" for warning in self.plan.warnings]
        lines += [f"error: {key}: {error}" for key, error in sorted(self.plan.errors.items())]
        if self.report is not None:
            lines += self.report.lines()
        if self.plan.in_sync and not self.plan.errors:
            lines.append("nothing to do: AWS matches the specs")
        lines += [
            f"service {r.target.name}: rollout {r.state}" + (f" ({r.detail})" if r.detail else "")
            for r in self.rollouts
        ]
        if self.wait_error is not None:
            lines.append(f"error: {self.wait_error}")
        return lines


async def read_world(specs: SpecSet, *, clients: AwsClients) -> World:
    """Facts, the desired state, and the observed state with the task-definition
    families the planner needs (a pass in sync reads none)."""
    facts = await read_facts(
        clients, ami_parameters=ami_parameters_needed(specs), subnet_ids=_named_subnets(specs)
    )
    desired = desired_state(specs, facts)
    observed = await observe(
        clients,
        facts=facts,
        cluster_names=_cluster_names(specs),
        service_names=_service_names(desired),
    )
    return await _with_families(desired, observed, clients=clients)


def _cluster_names(specs: SpecSet) -> set[str]:
    """The clusters a read must look at for these specs (every managed one besides)."""
    return set(specs.clusters) | {d.spec.cluster for d in specs.deployments.values()}


def _service_names(desired: DesiredState) -> dict[str, set[str]]:
    """The specs' services by cluster: read even when deleted, to tell drift."""
    names: dict[str, set[str]] = {}
    for deployment in desired.deployments.values():
        names.setdefault(deployment.service.cluster, set()).add(deployment.service.name)
    return names


def _named_subnets(specs: SpecSet) -> set[str]:
    """The subnets the specs name explicitly (the default VPC's are always read)."""
    return {subnet for cluster in specs.clusters.values() for subnet in cluster.spec.subnetIds}


async def _with_families(
    desired: DesiredState, observed: ObservedState, *, clients: AwsClients
) -> World:
    """The world, once the task-definition families the planner asks for are read, and
    the revisions it judges drift by: each family's newest, then those it names."""
    families = families_to_read(desired, observed)
    if families:
        observed = await observe_task_definitions(clients, observed, families=families)
    observed = await observe_revisions(
        clients, observed, newest_of=newest_to_read(desired, observed)
    )
    observed = await observe_revisions(
        clients, observed, describe=revisions_to_read(desired, observed)
    )
    return World(desired=desired, observed=observed)


async def replan_world(
    specs: SpecSet, *, read_for: SpecSet, observed: ObservedState, clients: AwsClients
) -> World | None:
    """The world for `specs` from an observed state read for other specs (`read_for`),
    reading only what the new specs need and that read lacks: task-definition families.
    None when it lacks more (an AMI parameter, a subnet, a cluster it never looked at):
    then only a full `read_world` will do. A spec change leaves AWS as it was, so the
    keys plan from the level in hand instead of waiting for a read of everything."""
    facts = observed.facts
    if (
        not ami_parameters_needed(specs) <= set(facts.ami_ids)
        or not _named_subnets(specs) <= set(facts.subnet_vpcs)
        or not _cluster_names(specs) <= _cluster_names(read_for)
    ):
        return None
    return await _with_families(desired_state(specs, facts), observed, clients=clients)


async def reconcile_pass(specs: SpecSet, *, clients: AwsClients, apply: bool) -> PassResult:
    """One pass over every key: plan, and when `apply`, carry the plan out.

    AWS failures leave as TransientError / TerminalError from the reads; a failed action
    is in `result.report` (`report.raise_for_error()` to raise it).
    """
    started = time.monotonic()
    world = await read_world(specs, clients=clients)
    planned = plan(world.desired, world.observed)
    report = None
    if apply and planned.actions:
        report = await apply_plan(clients, planned)
    elif apply:
        report = ApplyReport()
    result = PassResult(
        world=world, plan=planned, report=report, duration_s=time.monotonic() - started
    )
    log.info(
        "reconcile.pass_finished",
        apply=apply,
        actions=len(planned.actions),
        drift_detected=len(planned.detected_drift),
        outcomes=report.counts() if report is not None else None,
        error=str(report.error) if report is not None and report.error else None,
        duration_ms=round(result.duration_s * 1000),
    )
    return result


class AwsShell:
    """The runner's `Shell` on real (or emulated) AWS."""

    def __init__(self, clients: AwsClients) -> None:
        self.clients = clients

    async def read_level(self, specs: SpecSet) -> Level:
        started = time.monotonic()
        world = await read_world(specs, clients=self.clients)
        return self._level(specs, world, read_at=time.time(), started=started)

    async def replan(self, specs: SpecSet, *, level: Level) -> Level | None:
        started = time.monotonic()
        world = await replan_world(
            specs, read_for=level.specs, observed=level.observed, clients=self.clients
        )
        if world is None:
            return None
        return self._level(specs, world, read_at=level.read_at, started=started)

    @staticmethod
    def _level(specs: SpecSet, world: World, *, read_at: float, started: float) -> Level:
        return Level(
            specs=specs,
            desired=world.desired,
            observed=world.observed,
            plan=plan(world.desired, world.observed),
            read_at=read_at,
            duration_s=time.monotonic() - started,
        )

    async def apply(self, plan: Plan, *, level: Level) -> Applied:
        report = await apply_plan(self.clients, plan)
        return Applied(
            changed=tuple(item.action for item in report.applied if item.outcome != "unchanged"),
            attempted=bool(report.applied) or report.failed is not None,
            error=report.error,
        )


def wait_targets(desired: DesiredState) -> tuple[ServiceTarget, ...]:
    """The services of the desired deployments; each must reach the revision we set."""
    return tuple(
        ServiceTarget(cluster=d.service.cluster, name=d.service.name)
        for d in desired.deployments.values()
    )


async def run_pass(
    specs: SpecSet,
    *,
    apply: bool,
    wait: bool = False,
    settings: Settings | None = None,
    on_request: RequestHook | None = None,
) -> PassResult:
    """`ecs-infer plan` / `apply [--wait]`: open clients, make one pass, maybe wait
    (`settings.waits`).

    A failed or rolled-back rollout, or a timeout, is in `wait_error` (not raised), so
    that the report of what was applied is printed either way.
    """
    settings = settings or Settings()
    async with AwsClients(settings=settings.aws, on_request=on_request) as clients:
        result = await reconcile_pass(specs, clients=clients, apply=apply)
        if not (apply and wait and result.ok):
            return result
        targets = wait_targets(result.desired)
        if not targets:
            return result
        try:
            rollouts = await wait_until_stable(clients, services=targets, settings=settings.waits)
        except AwsError as exc:
            return replace(result, rollouts=getattr(exc, "rollouts", ()), wait_error=exc)
        return replace(result, rollouts=rollouts)
