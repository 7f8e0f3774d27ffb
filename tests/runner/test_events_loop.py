"""The events loop (`runner.events`) with a fake source: the keys an event names are
marked stale and enqueued now; garbage is counted, deleted and survived; a failing source
backs off without stopping anything; stop is prompt even during a long poll."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from collections.abc import Sequence
from pathlib import Path

import pytest
from runner_helpers import CLUSTER, DEPLOYMENT, FACTS, ScriptedShell, level, specs
from test_runner_daemon import FolderShell, free_port, settings, until

from controller.core.errors import TerminalError, TransientError
from controller.core.states import (
    CLUSTER_TAG,
    DEPLOYMENT_TAG,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    LiveCluster,
    LiveInstance,
    LiveService,
)
from controller.metrics import Metrics
from controller.runner.daemon import Daemon
from controller.runner.events import EventsLoop, backoff_delay
from controller.runner.reconciling import Informer, Level, Reconciler
from controller.runner.running import Runner
from controller.runner.watching import SpecSnapshot
from controller.settings import EventsSettings, QueueSettings
from controller.specs.loading import SpecSet

OURS = {MANAGED_BY: MANAGED_BY_VALUE}
EVENTS = EventsSettings(mode="auto", backoff_base_s=0.01, backoff_cap_s=0.05)


def event(source: str, detail_type: str, detail: object, resources: Sequence[str] = ()) -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "1",
            "detail-type": detail_type,
            "source": source,
            "account": FACTS.account_id,
            "time": "2026-12-02T00:00:00Z",
            "region": FACTS.region,
            "resources": list(resources),
            "detail": detail,
        }
    )


TASK_OF_A = event(
    "aws.ecs",
    "ECS Task State Change",
    {"clusterArn": "arn:aws:ecs:us-east-1:123456789012:cluster/demo", "group": "service:a"},
)
INSTANCE_OF_DEMO = event(
    "aws.ec2", "EC2 Spot Instance Interruption Warning", {"instance-id": "i-0demo"}
)
SOMEONE_ELSES = event("aws.ec2", "EC2 Instance State-change Notification", {"instance-id": "i-0x"})


def world(spec_set: SpecSet) -> Level:
    """A level where deployment `a`'s service and cluster `demo`'s instance are ours."""
    base = level(spec_set)
    service = LiveService(
        arn="arn:aws:ecs:us-east-1:123456789012:service/demo/a",
        name="a",
        cluster="demo",
        status="ACTIVE",
        desired_count=1,
        running_count=1,
        pending_count=0,
        task_definition="arn:aws:ecs:us-east-1:123456789012:task-definition/a:1",
        deployments=(),
        placement_constraints=(),
        tags={**OURS, DEPLOYMENT_TAG: "a"},
    )
    instance = LiveInstance(
        instance_id="i-0demo",
        state="running",
        instance_type="inf1.xlarge",
        image_id="ami-1",
        lifecycle="spot",
        private_ip=None,
        launch_time=0.0,
        tags={**OURS, CLUSTER_TAG: "demo"},
    )
    observed = dataclasses.replace(
        base.observed,
        clusters={"demo": LiveCluster(name="demo", arn="arn", status="ACTIVE", tags=OURS)},
        services={("demo", "a"): service},
        instances={"demo": (instance,)},
    )
    return dataclasses.replace(base, observed=observed)


@dataclasses.dataclass(frozen=True)
class Message:
    body: str


class FakeSource:
    """Batches (or exceptions) handed out in order; then a long poll that never ends."""

    name = "fake"
    own_actor: str | None = "arn:aws:sts::123456789012:assumed-role/ecs-infer/controller"

    def __init__(
        self, *batches: Sequence[str] | Exception, start_errors: Sequence[Exception] = ()
    ) -> None:
        self.batches: list[Sequence[str] | Exception] = list(batches)
        self.start_errors = list(start_errors)
        self.starts = 0
        self.receives = 0
        self.deleted: list[str] = []
        self.more = asyncio.Event()

    def push(self, *bodies: str) -> None:
        self.batches.append(bodies)
        self.more.set()

    async def start(self) -> None:
        self.starts += 1
        if self.start_errors:
            raise self.start_errors.pop(0)

    async def receive(self) -> list[Message]:
        self.receives += 1
        while not self.batches:
            self.more.clear()
            await self.more.wait()
        batch = self.batches.pop(0)
        if isinstance(batch, Exception):
            raise batch
        return [Message(body) for body in batch]

    async def delete(self, messages: Sequence[Message]) -> None:
        self.deleted += [message.body for message in messages]


def parts(metrics: Metrics) -> tuple[Informer, Runner]:
    shell = ScriptedShell(world)
    informer = Informer(shell)
    informer.set_specs(specs("a", "b"))
    reconciler = Reconciler(
        shell=shell,
        informer=informer,
        snapshot=lambda: SpecSnapshot(specs=specs("a", "b")),
        settings=QueueSettings(),
    )
    return informer, Runner(reconciler=reconciler, metrics=metrics, settings=QueueSettings())


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(name, labels)
    return value or 0.0


async def test_an_event_marks_and_enqueues_the_keys_it_names() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)
    await informer.level()
    loop = EventsLoop(
        FakeSource(), informer=informer, runner=runner, metrics=metrics, settings=EVENTS
    )

    keys = loop.handle([TASK_OF_A, INSTANCE_OF_DEMO, SOMEONE_ELSES, "{garbage", "[]"])

    assert keys == {"deployment/a", "cluster/demo"}
    assert set(runner.queue.queued) == keys
    assert not informer.fresh_for("deployment/a") and not informer.fresh_for("cluster/demo")
    assert informer.fresh_for("deployment/b"), "other keys keep the level they have"
    assert sample(metrics, "ecsinfer_events_received_total", source="ecs") == 1
    assert sample(metrics, "ecsinfer_events_received_total", source="ec2") == 2
    assert sample(metrics, "ecsinfer_events_dropped_total", reason="malformed") == 2
    assert sample(metrics, "ecsinfer_events_dropped_total", reason="not-ours") == 1
    assert sample(metrics, "ecsinfer_events_keys_enqueued_total") == 2


async def test_before_the_first_level_events_do_nothing() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)
    loop = EventsLoop(
        FakeSource(), informer=informer, runner=runner, metrics=metrics, settings=EVENTS
    )
    assert loop.handle([TASK_OF_A]) == set()
    assert runner.queue.queued == ()
    assert sample(metrics, "ecsinfer_events_received_total", source="ecs") == 1
    assert sample(metrics, "ecsinfer_events_dropped_total", reason="no-level") == 1


async def test_the_loop_survives_failures_and_garbage_and_stops_promptly() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)
    await informer.level()
    source = FakeSource(
        ["{", "x" * (EVENTS.max_message_bytes + 1)],
        TransientError("cannot reach AWS"),
        RuntimeError("anything at all"),
        [TASK_OF_A],
        start_errors=[TransientError("throttled")],
    )
    loop = EventsLoop(source, informer=informer, runner=runner, metrics=metrics, settings=EVENTS)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))

    await until(lambda: "deployment/a" in runner.queue.queued)
    assert source.starts == 2  # the failed start was retried
    assert source.deleted == ["{", "x" * (EVENTS.max_message_bytes + 1), TASK_OF_A]
    assert sample(metrics, "ecsinfer_events_receive_errors_total") == 3
    assert sample(metrics, "ecsinfer_events_dropped_total", reason="oversized") == 1

    source.push(INSTANCE_OF_DEMO)
    await until(lambda: "cluster/demo" in runner.queue.queued)
    await until(lambda: source.receives == 6)  # now in a long poll that never returns
    started = time.monotonic()
    stop.set()
    await asyncio.wait_for(running, 1.0)
    assert time.monotonic() - started < 0.5


async def test_a_terminal_error_at_start_turns_events_off_and_nothing_else() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)
    source = FakeSource(start_errors=[TerminalError("queue ecs-infer-events is not ours")])
    loop = EventsLoop(source, informer=informer, runner=runner, metrics=metrics, settings=EVENTS)
    await asyncio.wait_for(loop.run(asyncio.Event()), 1.0)
    assert source.starts == 1 and source.receives == 0


@pytest.mark.parametrize("failures", [1, 2, 5, 50, 10_000])
def test_backoff_is_bounded_and_jittered(failures: int) -> None:
    delays = {backoff_delay(failures, base_s=1.0, cap_s=60.0) for _ in range(20)}
    ceiling = min(60.0, 2.0 ** min(failures - 1, 30))
    assert all(ceiling / 2 <= delay <= ceiling for delay in delays)
    assert len(delays) > 1


async def test_the_daemon_reconciles_a_key_an_event_names_at_once(tmp_path: Path) -> None:
    """A resync far away: only the event can make the key due again."""
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "a.yaml").write_text(DEPLOYMENT.format(name="a", replicas=1))
    runner_settings = dataclasses.replace(
        settings(f"127.0.0.1:{free_port()}"),
        resync=dataclasses.replace(settings("x").resync, interval_s=3600),
        events=EVENTS,
    )

    class WorldShell(FolderShell):
        def _level(self, spec_set: SpecSet) -> Level:
            planned = super()._level(spec_set)
            return dataclasses.replace(planned, observed=world(spec_set).observed)

    shell, metrics, source = WorldShell(), Metrics(), FakeSource()
    daemon = Daemon(tmp_path, settings=runner_settings, shell=shell, metrics=metrics, events=source)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))
    try:
        await until(daemon.runner.ready.is_set)
        await until(lambda: not daemon.runner.queue.queued and not daemon.runner.queue.processing)
        await asyncio.sleep(0.3)  # verifications after the first writes settle
        before = daemon.runner.statuses["deployment/a"].finished_at
        reads = shell.reads
        source.push(TASK_OF_A)
        await until(lambda: daemon.runner.statuses["deployment/a"].finished_at != before, 2.0)
        assert shell.reads > reads, "the key was reconciled from a fresh read of AWS"
        assert source.deleted == [TASK_OF_A]
    finally:
        stop.set()
        await asyncio.wait_for(running, 5)


async def test_an_empty_queue_that_answers_at_once_is_not_a_busy_loop() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)

    class ShortPolls(FakeSource):
        async def receive(self) -> list[Message]:
            self.receives += 1
            return []

    source = ShortPolls()
    quick = dataclasses.replace(EVENTS, empty_pause_s=0.1)
    loop = EventsLoop(source, informer=informer, runner=runner, metrics=metrics, settings=quick)
    stop = asyncio.Event()
    running = asyncio.create_task(loop.run(stop))
    await asyncio.sleep(0.5)
    stop.set()
    await asyncio.wait_for(running, 1.0)
    assert 3 <= source.receives <= 7


def update_service_by(actor: str) -> str:
    detail = {
        "eventSource": "ecs.amazonaws.com",
        "eventName": "UpdateService",
        "userIdentity": {"type": "AssumedRole", "arn": actor},
        "requestParameters": {"cluster": "demo", "service": "a", "desiredCount": 3},
    }
    return event("aws.ecs", "AWS API Call via CloudTrail", detail)


async def test_our_own_api_calls_are_not_events_for_us() -> None:
    metrics = Metrics()
    informer, runner = parts(metrics)
    await informer.level()
    source = FakeSource()
    loop = EventsLoop(source, informer=informer, runner=runner, metrics=metrics, settings=EVENTS)
    assert source.own_actor is not None
    assert loop.handle([update_service_by(source.own_actor)]) == set()
    assert sample(metrics, "ecsinfer_events_dropped_total", reason="own-call") == 1
    someone = "arn:aws:sts::123456789012:assumed-role/Admin/alice"
    assert loop.handle([update_service_by(someone)]) == {"deployment/a"}
    assert sample(metrics, "ecsinfer_events_received_total", source="api") == 2
