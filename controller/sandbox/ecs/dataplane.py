"""The data plane's facade: its settings, its tick, and the model servers of running tasks.

Owns: one tick, in order, under the emulator's `BACKEND_LOCK` (keep
moto's tasks alive, addresses, agents, stopped tasks, crashes, orphans, services, counts,
forgetting; then the endpoints); running the ticks on the event loop; and starting and
stopping one model server (`modelserver`) per endpoint, reporting back which tasks
started and which could not. Must not: make a decision that belongs to a concern (each
concern has its module; this one only calls them in order), or listen on anything but
the loopback addresses the agents give out.

Use `async with DataPlane(model=..., aws_port=...)` or `start()` / `stop()`; `step()` runs
one tick by hand (tests). The moto server must run in this process. A model server that
cannot bind its address fails its task (CannotStartContainerError).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Mapping, Sequence

from controller.sandbox.ecs.agents import Agents, address_prefix_for
from controller.sandbox.ecs.backends import Ec2Backend, EcsBackend, backends_of, short
from controller.sandbox.ecs.endpoints import EndpointSpec, endpoints_of
from controller.sandbox.ecs.faults import SpotInterruptions, crash_tasks
from controller.sandbox.ecs.notifications import Watch
from controller.sandbox.ecs.patches import install_patches, keep_tasks_alive, remove_patches
from controller.sandbox.ecs.placement import Placer
from controller.sandbox.ecs.scheduler import ServiceScheduler
from controller.sandbox.ecs.tasks import (
    count_tasks,
    forget_stopped,
    mark_running,
    settle_stopped,
    stop_orphaned,
    stop_task,
    tasks_by_arn,
)
from controller.sandbox.emulator import BACKEND_LOCK
from controller.sandbox.modelserver import EncoderModel, ModelServerHandle, start_model_server
from controller.settings import DataPlaneSettings

log = logging.getLogger(__name__)


class _Emulation:
    """The synchronous half: every concern's step, under BACKEND_LOCK."""

    def __init__(self, settings: DataPlaneSettings, address_prefix: str) -> None:
        self._settings = settings
        self.agents = Agents(address_prefix)
        self._scheduler = ServiceScheduler(
            placer=Placer(address_of=self.agents.address_of),
            event_repeat_s=settings.event_repeat_s,
            start_failure_backoff_s=settings.start_failure_backoff_s,
        )
        self._interruptions = SpotInterruptions(notice_s=settings.spot_interruption_notice_s)
        self._watch = Watch()

    def _look(self, ecs: EcsBackend, ec2: Ec2Backend) -> None:
        self._watch.look(ecs, ec2, {instance.id: instance for instance in ec2.all_instances()})

    def tick(self) -> dict[str, EndpointSpec]:
        with BACKEND_LOCK:
            keep_tasks_alive()
            ecs, ec2 = backends_of(self._settings.account_id, self._settings.region)
            instances = {instance.id: instance for instance in ec2.all_instances()}
            self.agents.assign_addresses(instances)
            self._interruptions.run(ec2, instances)
            self.agents.run(ecs, instances)
            settle_stopped(ecs)
            for task in crash_tasks(ecs):
                self._scheduler.note_start_failure(ecs, task)
            stop_orphaned(ecs)
            self._scheduler.schedule_all(ecs, ec2)
            count_tasks(ecs)
            forget_stopped(ecs, retention_s=self._settings.stopped_task_retention_s)
            self._look(ecs, ec2)
            return endpoints_of(ecs, address_of=self.agents.address_of)

    def started(self, task_arns: Sequence[str]) -> None:
        with BACKEND_LOCK:
            ecs, ec2 = backends_of(self._settings.account_id, self._settings.region)
            for task in tasks_by_arn(ecs, task_arns):
                mark_running(task)
                log.info("task %s RUNNING (%s)", short(task.task_arn), task.group)
            self._look(ecs, ec2)

    def failed(self, failures: Mapping[str, str]) -> None:
        with BACKEND_LOCK:
            ecs, ec2 = backends_of(self._settings.account_id, self._settings.region)
            for task in tasks_by_arn(ecs, list(failures)):
                stop_task(
                    ecs,
                    task,
                    reason=f"CannotStartContainerError: {failures[task.task_arn]}",
                    code="TaskFailedToStart",
                )
                self._scheduler.note_start_failure(ecs, task)
            self._look(ecs, ec2)


class DataPlane:
    """The emulated ECS data plane, running on the current event loop.

    Use `async with DataPlane(model=..., aws_port=...)` or `start()` / `stop()`; `step()`
    runs one tick by hand (tests). The moto server must run in this process.
    """

    def __init__(
        self,
        *,
        model: EncoderModel,
        aws_port: int,
        settings: DataPlaneSettings | None = None,
    ) -> None:
        self.settings = settings or DataPlaneSettings()
        prefix = self.settings.address_prefix or address_prefix_for(aws_port)
        self._emulation = _Emulation(self.settings, prefix)
        self._model = model
        self._servers: dict[str, ModelServerHandle] = {}
        self._loop_task: asyncio.Task[None] | None = None
        self._step_lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._patched = False

    @property
    def address_prefix(self) -> str:
        return self._emulation.agents.address_prefix

    @property
    def servers(self) -> Mapping[str, ModelServerHandle]:
        """The model servers running now, by task ARN."""
        return dict(self._servers)

    def address_of(self, instance_id: str) -> str | None:
        """The loopback private address given to an EC2 instance."""
        return self._emulation.agents.address_of(instance_id)

    async def start(self) -> None:
        if not self._patched:
            install_patches()
            self._patched = True
        if self._loop_task is None:
            self._loop_task = asyncio.create_task(self._run(), name="sandbox-dataplane")

    async def stop(self) -> None:
        if self._loop_task is not None:
            # Let a step in flight finish (it may be starting a server), then stop ticking.
            self._stopping.set()
            try:
                await asyncio.wait_for(asyncio.shield(self._loop_task), 10)
            except TimeoutError:
                self._loop_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._loop_task
            self._loop_task = None
            self._stopping.clear()
        async with self._step_lock:
            servers, self._servers = self._servers, {}
            await asyncio.gather(*(server.stop(0) for server in servers.values()))
        if self._patched:
            remove_patches()
            self._patched = False

    async def __aenter__(self) -> DataPlane:
        await self.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.stop()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.step()
            except Exception:  # one bad tick must not end the data plane
                log.exception("data plane tick failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.settings.tick_s)

    async def step(self) -> None:
        """One tick: schedule, then make the model servers match the running tasks."""
        async with self._step_lock:
            wanted = await asyncio.to_thread(self._emulation.tick)
            gone = [
                arn
                for arn, server in self._servers.items()
                if arn not in wanted or wanted[arn].address != server.address
            ]
            if gone:
                await asyncio.gather(*(self._servers.pop(arn).stop(0.1) for arn in gone))
            started: list[str] = []
            failures: dict[str, str] = {}
            for arn, spec in wanted.items():
                server = self._servers.get(arn)
                if server is None:
                    try:
                        server = await start_model_server(
                            host=spec.host,
                            port=spec.port,
                            model=self._model,
                            model_name=spec.model_name,
                        )
                    except OSError as error:
                        failures[arn] = str(error).split(";")[0]
                        continue
                    self._servers[arn] = server
                    started.append(arn)
                server.faults.delay_s = spec.delay_s
                server.faults.fail = spec.fail
            if started:
                await asyncio.to_thread(self._emulation.started, started)
            if failures:
                await asyncio.to_thread(self._emulation.failed, failures)
