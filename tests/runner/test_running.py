"""The runner against a scripted shell: the informer, reconcile(key), and the accounting
the runner does in one place (metrics, backoff, status, readiness). No AWS involved."""

from __future__ import annotations

import asyncio
import dataclasses
import time

import pytest
from runner_helpers import ScriptedShell, action, deployment, level, specs

from controller.core.plans import Plan
from controller.metrics import Metrics
from controller.runner.reconciling import Applied, Informer, Level, ReconcileError, Reconciler
from controller.runner.running import Runner, key_label
from controller.runner.watching import SpecSnapshot
from controller.settings import QueueSettings
from controller.specs.loading import SpecSet


def snapshot_of(spec_set: SpecSet, *, valid: bool = True) -> SpecSnapshot:
    return SpecSnapshot(specs=spec_set, valid=valid, errors=(), revision=None, generation=1)


def make(
    shell: ScriptedShell, spec_set: SpecSet, *, valid: bool = True, **queue: float
) -> tuple[Runner, Informer, Metrics]:
    settings = QueueSettings(
        workers=2,
        backoff_base_s=queue.get("backoff_base_s", 0.05),
        backoff_cap_s=queue.get("backoff_cap_s", 0.2),
        verify_after_s=queue.get("verify_after_s", 0.05),
    )
    informer = Informer(shell)
    informer.set_specs(spec_set)
    metrics = Metrics()
    reconciler = Reconciler(
        shell=shell,
        informer=informer,
        snapshot=lambda: snapshot_of(spec_set, valid=valid),
        settings=settings,
    )
    runner = Runner(reconciler=reconciler, metrics=metrics, settings=settings)
    informer.listeners.append(runner.publish_level)
    return runner, informer, metrics


def value(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(name, labels)


# --- the informer -------------------------------------------------------------------


async def test_concurrent_reads_share_one_and_stale_marks_force_another() -> None:
    shell = ScriptedShell(lambda s: level(s), read_delay_s=0.05)
    informer = Informer(shell)
    first = await asyncio.gather(*(informer.level() for _ in range(10)))
    assert shell.reads == 1 and all(item is first[0] for item in first)
    assert await informer.level() is first[0]  # fresh: no read
    informer.mark_stale()
    waiting = asyncio.gather(*(informer.level() for _ in range(5)))
    await asyncio.sleep(0.01)
    informer.mark_stale()  # during the read: that read is not fresh enough
    await waiting
    assert shell.reads == 3
    assert informer.fresh


async def test_a_write_makes_the_level_stale_for_its_own_key_only() -> None:
    shell = ScriptedShell(lambda s: level(s), read_delay_s=0.01)
    informer = Informer(shell)
    first = await informer.level()
    informer.mark_stale("deployment/a")
    informer.mark_stale("deployment/b")
    # Other keys plan from the level they have: no read.
    assert await informer.level("deployment/c") is first and shell.reads == 1
    # The keys that wrote share one new read; after it, nobody needs another.
    both = await asyncio.gather(informer.level("deployment/a"), informer.level("deployment/b"))
    assert shell.reads == 2 and both[0] is both[1] is not first
    assert await informer.level("deployment/a") is both[0] and shell.reads == 2
    # A mark for every key (a resync, a spec change) is a mark for each.
    informer.mark_stale()
    assert not informer.fresh_for("deployment/c")
    await informer.level("deployment/c")
    assert shell.reads == 3 and informer.fresh


async def test_a_spec_change_replans_from_the_level_in_hand_without_a_read() -> None:
    shell = ScriptedShell(lambda s: level(s))
    informer = Informer(shell)
    await informer.level()
    informer.set_specs(specs("a", "b"))
    assert not informer.fresh_for("deployment/c")
    replanned = await asyncio.gather(informer.level("deployment/a"), informer.level())
    assert shell.reads == 1 and shell.replans == 1  # shared, and AWS not read again
    assert replanned[0] is replanned[1] and set(replanned[0].specs.deployments) == {"a", "b"}
    # A key that wrote still gets a level observed after its write.
    informer.mark_stale("deployment/a")
    await informer.level("deployment/a")
    assert shell.reads == 2 and shell.replans == 1


async def test_a_replan_that_lacks_what_the_specs_need_reads_everything() -> None:
    shell = ScriptedShell(lambda s: level(s))

    async def cannot(spec_set: SpecSet, *, level: Level) -> Level | None:
        shell.replans += 1
        return None

    shell.replan = cannot  # type: ignore[method-assign]
    informer = Informer(shell)
    await informer.level()
    informer.set_specs(specs("z"))
    fresh = await informer.level("deployment/z")
    assert shell.replans == 1 and shell.reads == 2
    assert set(fresh.specs.deployments) == {"z"}


async def test_a_cancelled_reader_does_not_cancel_the_shared_read() -> None:
    shell = ScriptedShell(lambda s: level(s), read_delay_s=0.05)
    informer = Informer(shell)
    impatient = asyncio.create_task(informer.level())
    patient = asyncio.create_task(informer.level())
    await asyncio.sleep(0.01)
    impatient.cancel()
    assert isinstance(await patient, Level)
    assert shell.reads == 1


# --- reconcile(key) -----------------------------------------------------------------


async def test_reconcile_applies_only_its_keys_actions_and_asks_to_verify() -> None:
    shell = ScriptedShell(
        lambda s: level(s, action("deployment/a"), action("deployment/b"), action("cluster/demo"))
    )
    runner, informer, _ = make(shell, specs("a", "b"))
    result = await runner.reconciler.reconcile("deployment/a")
    assert [a.key for a in result.plan.actions] == ["deployment/a"]
    assert result.requeue_after == 0.05 and len(result.changed) == 1
    # A write makes the shared level stale for the key that wrote, not for the others.
    assert not informer.fresh_for("deployment/a") and not informer.fresh
    assert informer.fresh_for("deployment/b") and informer.fresh_for()


async def test_reconcile_raises_with_what_was_planned() -> None:
    shell = ScriptedShell(lambda s: level(s, action("deployment/a")), failing={"deployment/a"})
    runner, _, _ = make(shell, specs("a"))
    with pytest.raises(ReconcileError, match="refused by AWS") as caught:
        await runner.reconciler.reconcile("deployment/a")
    assert len(caught.value.plan.actions) == 1


async def test_nothing_is_read_or_applied_while_the_folder_is_invalid() -> None:
    shell = ScriptedShell(lambda s: level(s, action("deployment/a")))
    runner, _, metrics = make(shell, specs("a"), valid=False)
    status = await runner.process("deployment/a")
    assert status.result == "skipped" and status.note == "spec errors"
    assert shell.reads == 0 and shell.applied == []
    assert value(metrics, "ecsinfer_reconcile_total", deployment="a", result="success") is None


# --- the runner ---------------------------------------------------------------------


def converging_shell(**failures: set[str]) -> tuple[ScriptedShell, set[str]]:
    """A shell planning a create for deployments a, b and c until each is applied once;
    `failures` as ScriptedShell takes them. Returns it and the names applied."""
    done: set[str] = set()

    def next_level(spec_set: SpecSet) -> Level:
        return level(spec_set, *(action(f"deployment/{n}") for n in "abc" if n not in done))

    shell = ScriptedShell(next_level, **failures)  # type: ignore[arg-type]
    original = shell.apply

    async def apply(plan: Plan, *, level: Level) -> Applied:
        result = await original(plan, level=level)
        if result.error is None:
            done.add(plan.actions[0].key.rpartition("/")[2])
        return result

    shell.apply = apply  # type: ignore[method-assign]
    return shell, done


async def test_a_failing_key_backs_off_alone_while_the_others_converge() -> None:
    shell, done = converging_shell(failing={"deployment/b"})
    runner, _, metrics = make(shell, specs("a", "b", "c"))
    runner.start()
    runner.first_pass(["deployment/a", "deployment/b", "deployment/c"])
    await asyncio.wait_for(runner.ready.wait(), 2)
    await asyncio.sleep(0.6)
    await runner.stop(grace_s=1)
    assert done == {"a", "c"}
    assert value(metrics, "ecsinfer_reconcile_total", deployment="a", result="success")
    errors = value(metrics, "ecsinfer_reconcile_total", deployment="b", result="error")
    # base 0.05 doubling, capped at 0.2: about 0.05 + 0.1 + 0.2 + 0.2 ... within 0.6 s
    assert errors is not None and 3 <= errors <= 6
    status = runner.statuses["deployment/b"]
    assert status.result == "error" and status.failures == errors
    assert status.retry_in_s == 0.2  # at the cap
    assert runner.statuses["deployment/a"].result == "success"
    assert value(metrics, "ecsinfer_ready") == 1
    assert value(metrics, "ecsinfer_reconcile_duration_seconds_count", deployment="c")


async def test_a_terminal_error_is_not_retried_until_its_spec_changes_or_a_resync() -> None:
    current = {"specs": specs("a", "b", "c")}
    shell, done = converging_shell(refused={"deployment/b"})
    settings = QueueSettings(workers=2, backoff_base_s=0.05, backoff_cap_s=0.2, verify_after_s=0.05)
    informer = Informer(shell)
    informer.set_specs(current["specs"])
    metrics = Metrics()
    reconciler = Reconciler(
        shell=shell,
        informer=informer,
        snapshot=lambda: snapshot_of(current["specs"]),
        settings=settings,
    )
    runner = Runner(reconciler=reconciler, metrics=metrics, settings=settings)
    informer.listeners.append(runner.publish_level)
    runner.start()
    runner.first_pass(["deployment/a", "deployment/b", "deployment/c"])
    await asyncio.wait_for(runner.ready.wait(), 2)
    # Several backoff windows (0.05 + 0.1 + 0.2 ...), and fresh levels that still plan b.
    for _ in range(3):
        await asyncio.sleep(0.2)
        informer.mark_stale()
        runner.enqueue(["deployment/a", "deployment/b", "deployment/c"])
    assert done == {"a", "c"}
    assert shell.applied.count("deployment/b") == 1
    assert value(metrics, "ecsinfer_reconcile_total", deployment="b", result="error") == 1
    status = runner.statuses["deployment/b"]
    assert status.result == "error" and status.terminal and status.retry_in_s is None
    assert "AccessDeniedException" in (status.error or "")
    assert status.to_json()["terminal"] is True

    # A resync tries it again, once.
    runner.enqueue(["deployment/b"], resync=True)
    await asyncio.sleep(0.3)
    assert shell.applied.count("deployment/b") == 2

    # So does a change of its spec: AWS may now accept it.
    current["specs"] = SpecSet(
        clusters=current["specs"].clusters,
        deployments={**current["specs"].deployments, "b": deployment("b", replicas=2)},
    )
    runner.enqueue(["deployment/b"])
    await asyncio.sleep(0.3)
    assert shell.applied.count("deployment/b") == 3
    # An unchanged spec does not.
    runner.enqueue(["deployment/b"], now=True)
    await asyncio.sleep(0.3)
    await runner.stop(grace_s=1)
    assert shell.applied.count("deployment/b") == 3


async def test_drift_is_published_from_the_level_and_corrections_counted() -> None:
    drifted = action("deployment/a", reason="drift")
    detected = action("deployment/b", reason="drift", resource="task-definition")
    fixed: list[bool] = []

    def next_level(spec_set: SpecSet) -> Level:
        return level(spec_set, *([] if fixed else [drifted]), detected=(detected,))

    shell = ScriptedShell(next_level)
    runner, informer, metrics = make(shell, specs("a", "b"))
    await informer.level()
    assert value(metrics, "ecsinfer_drift", deployment="a", resource="service") == 1
    assert value(metrics, "ecsinfer_drift", deployment="a", resource="task-definition") == 0
    assert value(metrics, "ecsinfer_drift", deployment="b", resource="task-definition") == 1
    await runner.process("deployment/a")
    fixed.append(True)
    assert value(metrics, "ecsinfer_drift_corrections_total", deployment="a", resource="service")
    await informer.level("deployment/a")  # the write made it stale for a: read again
    assert value(metrics, "ecsinfer_drift", deployment="a", resource="service") == 0
    # driftPolicy: detect is reported, never corrected
    assert value(metrics, "ecsinfer_drift", deployment="b", resource="task-definition") == 1
    assert shell.applied == ["deployment/a"]


async def test_series_of_a_removed_spec_are_removed() -> None:
    current = {"spec_set": specs("a", "b")}
    shell = ScriptedShell(lambda s: level(current["spec_set"]))
    _, informer, metrics = make(shell, current["spec_set"])
    await informer.level()
    assert value(metrics, "ecsinfer_deployment_replicas", deployment="b", state="desired") == 1
    assert value(metrics, "ecsinfer_drift", deployment="b", resource="service") == 0
    current["spec_set"] = specs("a")
    informer.set_specs(current["spec_set"])
    await informer.level()
    assert value(metrics, "ecsinfer_deployment_replicas", deployment="b", state="desired") is None
    assert value(metrics, "ecsinfer_drift", deployment="b", resource="service") is None
    assert value(metrics, "ecsinfer_deployment_replicas", deployment="a", state="running") == 0


async def test_ready_only_once_every_key_of_the_first_pass_ran() -> None:
    shell = ScriptedShell(lambda s: level(s), apply_delay_s=0.0, read_delay_s=0.05)
    runner, _, metrics = make(shell, specs("a"))
    runner.first_pass(["cluster/demo", "deployment/a"])
    assert not runner.ready.is_set()
    await runner.process("cluster/demo")
    assert not runner.ready.is_set() and value(metrics, "ecsinfer_ready") == 0
    await runner.process("deployment/a")
    assert runner.ready.is_set() and value(metrics, "ecsinfer_ready") == 1


def test_cluster_keys_keep_their_prefix_as_the_label() -> None:
    assert key_label("deployment/bert") == "bert"
    assert key_label("cluster/demo") == "cluster/demo"


async def test_stop_lets_the_reconcile_in_flight_finish() -> None:
    shell = ScriptedShell(lambda s: level(s, action("deployment/a")), apply_delay_s=0.2)
    runner, _, _ = make(shell, specs("a"))
    runner.start()
    runner.enqueue(["deployment/a"])
    await asyncio.sleep(0.05)  # the apply is in flight
    started = time.monotonic()
    await runner.stop(grace_s=2)
    assert shell.applied == ["deployment/a"]
    assert runner.statuses["deployment/a"].result == "success"
    assert time.monotonic() - started < 1


async def test_unparking_one_key_leaves_another_key_s_backoff_alone() -> None:
    shell = ScriptedShell(lambda s: level(s))
    runner, _, _ = make(shell, specs("a", "b"), backoff_base_s=60)
    runner.parked["deployment/a"] = dataclasses.replace(
        runner.reconciler.fingerprint("deployment/a"), account="another account"
    )
    runner.queue.add_rate_limited("deployment/b")  # backing off for a minute
    runner.enqueue(["deployment/a", "deployment/b"])
    assert runner.queue.queued == ("deployment/a",)
    assert "deployment/a" not in runner.parked and runner.queue.scheduled("deployment/b")
    runner.queue.shut_down()


async def test_deployment_info_carries_each_deployments_facts_and_follows_the_specs() -> None:
    current = {"spec_set": specs("a", "b")}
    shell = ScriptedShell(lambda s: level(current["spec_set"]))
    _, informer, metrics = make(shell, current["spec_set"])
    await informer.level()
    labels = {
        "deployment": "a",
        "cluster": "demo",
        "model": "bert",
        "runtime": "neuron",
        "latency_objective_seconds": "0.1",
    }
    assert value(metrics, "ecsinfer_deployment_info", **labels) == 1

    base = deployment("a")
    probe = base.spec.probe.model_copy(update={"latencyObjective": 0.25})
    changed = base.model_copy(update={"spec": base.spec.model_copy(update={"probe": probe})})
    current["spec_set"] = SpecSet(clusters=current["spec_set"].clusters, deployments={"a": changed})
    informer.set_specs(current["spec_set"])
    await informer.level()
    assert value(metrics, "ecsinfer_deployment_info", **labels) is None
    assert (
        value(
            metrics, "ecsinfer_deployment_info", **{**labels, "latency_objective_seconds": "0.25"}
        )
        == 1
    )
    assert value(metrics, "ecsinfer_deployment_info", **{**labels, "deployment": "b"}) is None
