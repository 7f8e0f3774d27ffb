"""The daemon's main loop, whatever it talks to: watch, resync, work, serve, stop.

Owns: the order things start and stop in; what a file change and a resync do (reload
the folder; a file change re-plans the level in hand, a resync reads a fresh one; then
enqueue every key); the events loop (an AWS event makes the key it names due now, see
`events`); the leadership seam (a replica works
only while it leads: `SingleReplica` for now, a DynamoDB lease later); `/status` built
on the event loop for the HTTP thread; and a clean stop (no new work, reconciles in flight
finish within the grace period, companions closed, HTTP stopped).
Must not: import the AWS shell. `Daemon` is handed a `Shell` (reads and writes),
optional `Companion`s (the prober) and an optional `EventSource` (an SQS queue);
`controller.daemon` builds the AWS-backed ones.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import structlog

from controller.core.planning import cluster_key, deployment_key
from controller.metrics import Metrics
from controller.runner.events import EventsLoop, EventSource
from controller.runner.reconciling import (
    Informer,
    Level,
    Reconciler,
    Shell,
)
from controller.runner.reporting import ProbeReport, status_document
from controller.runner.running import Runner
from controller.runner.watching import SpecSnapshot, SpecSource, resync_forever, watch_folder
from controller.serving import MetricsServer
from controller.settings import RunnerSettings

log = structlog.get_logger(__name__)


class Companion(Protocol):
    """Something that follows the level alongside the runner (the prober)."""

    def on_level(self, level: Level) -> None:
        """A fresh level was read; must not block."""

    async def run(self, stop: asyncio.Event) -> None:
        """Work until `stop` is set."""

    def report(self) -> ProbeReport:
        """What `/status` shows of it, per deployment and endpoint."""

    async def close(self) -> None: ...


class Leadership(Protocol):
    """Who may write. A replica reconciles only while `acquire` has returned and the
    lease is held; the roadmap's DynamoDB lease (with fencing) plugs in here."""

    async def acquire(self, stop: asyncio.Event) -> bool:
        """Wait until this replica leads (True), or `stop` is set (False)."""

    async def release(self) -> None: ...


class SingleReplica:
    """The only replica, so always the leader."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    async def acquire(self, stop: asyncio.Event) -> bool:
        self.metrics.leader.set(1)
        return True

    async def release(self) -> None:
        self.metrics.leader.set(0)


def spec_keys(snapshot: SpecSnapshot) -> list[str]:
    """The keys of the specs themselves, clusters first."""
    specs = snapshot.specs
    return [cluster_key(name) for name in sorted(specs.clusters)] + [
        deployment_key(name) for name in sorted(specs.deployments)
    ]


class Daemon:
    def __init__(
        self,
        path: Path,
        *,
        settings: RunnerSettings,
        shell: Shell,
        metrics: Metrics,
        companions: Sequence[Companion] = (),
        leadership: Leadership | None = None,
        events: EventSource[Any] | None = None,
    ) -> None:
        self.path = path
        self.settings = settings
        self.metrics = metrics
        self.companions = list(companions)
        self.leadership = leadership or SingleReplica(metrics)
        self.source = SpecSource(path, metrics=metrics, settings=settings.watch)
        self.informer = Informer(shell)
        self.reconciler = Reconciler(
            shell=shell,
            informer=self.informer,
            snapshot=lambda: self.source.snapshot,
            settings=settings.queue,
        )
        self.runner = Runner(reconciler=self.reconciler, metrics=metrics, settings=settings.queue)
        self.informer.listeners.append(self.runner.publish_level)
        for companion in self.companions:
            self.informer.listeners.append(companion.on_level)
        self.events_loop: EventsLoop[Any] | None = None
        if events is not None:
            self.events_loop = EventsLoop(
                events,
                informer=self.informer,
                runner=self.runner,
                metrics=metrics,
                settings=settings.events,
            )
        self.server = MetricsServer(
            settings.serving.metrics_addr,
            metrics=metrics,
            ready=self.runner.ready.is_set,
            status=self._status_from_thread,
        )
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- running --------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Serve, reconcile and probe until `stop` is set; then stop cleanly."""
        self._loop = asyncio.get_running_loop()
        self.metrics.ready.set(0)
        self.server.start()
        background: list[asyncio.Task[None]] = []
        try:
            snapshot, _ = await self.source.reload()
            self.informer.set_specs(snapshot.specs)
            if not await self.leadership.acquire(stop):
                return
            self.runner.start()
            self.runner.first_pass(await self._keys_after_read(snapshot))
            if self.settings.watch.enabled:
                background.append(asyncio.create_task(self._watch(stop), name="watch"))
            background.append(
                asyncio.create_task(
                    resync_forever(on_resync=self.resync, stop=stop, settings=self.settings.resync),
                    name="resync",
                )
            )
            if self.events_loop is not None:
                background.append(asyncio.create_task(self.events_loop.run(stop), name="events"))
            for companion in self.companions:
                background.append(asyncio.create_task(companion.run(stop), name="companion"))
            await stop.wait()
        finally:
            await self._shut_down(background)

    async def _shut_down(self, background: list[asyncio.Task[None]]) -> None:
        log.info("daemon.stopping")
        await self.runner.stop(grace_s=self.settings.shutdown.grace_s)
        for task in background:
            task.cancel()
        await asyncio.gather(*background, return_exceptions=True)
        for companion in self.companions:
            try:
                await companion.close()
            except Exception:
                log.exception("daemon.companion_close_failed")
        await self.informer.close()
        await self.leadership.release()
        self.server.stop()
        log.info("daemon.stopped")

    async def _watch(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await watch_folder(
                    self.path, on_change=self.on_change, stop=stop, settings=self.settings.watch
                )
                return
            except Exception:
                # The folder may not exist yet, or was replaced: the resync still runs.
                log.warning("watch.failed", path=str(self.path), exc_info=True)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.settings.resync.interval_s)

    async def on_change(self) -> None:
        """A spec file changed: reload; when the specs moved, re-plan and enqueue every key."""
        snapshot, changed = await self.source.reload()
        if not changed or not snapshot.valid:
            return
        self.informer.set_specs(snapshot.specs)
        self.runner.enqueue(await self._keys_after_read(snapshot), now=True)

    async def resync(self) -> None:
        """The periodic full pass: reload, re-read AWS, enqueue every key."""
        snapshot, _ = await self.source.reload()
        if snapshot.valid:
            self.informer.set_specs(snapshot.specs)
        self.informer.mark_stale()
        self.runner.enqueue(await self._keys_after_read(snapshot), resync=True)

    async def _keys_after_read(self, snapshot: SpecSnapshot) -> list[str]:
        """Every key of a fresh level; the specs' own keys when AWS cannot be read
        (their reconciles then fail, are counted, and back off)."""
        if not snapshot.valid:
            return spec_keys(snapshot)
        try:
            level = await self.informer.level()
        except Exception as exc:
            log.warning("informer.read_failed", error=str(exc) or type(exc).__name__)
            return spec_keys(snapshot)
        keys = level.keys()
        return keys + [key for key in spec_keys(snapshot) if key not in keys]

    # --- /status --------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        probes: dict[str, Mapping[str, Mapping[str, Any]]] | None = None
        if self.companions:
            probes = {}
            for companion in self.companions:
                probes.update(companion.report())
        return status_document(
            level=self.informer.latest,
            statuses=self.runner.statuses,
            probes=probes,
            snapshot=self.source.snapshot,
            ready=self.runner.ready.is_set(),
            source="daemon",
            drift=self.runner.drift.report,
        )

    def _status_from_thread(self) -> Mapping[str, Any]:
        """`status()` on the event loop (its state is only safe to read there)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return {"ready": False, "error": "not running"}

        async def build() -> dict[str, Any]:
            return self.status()

        return asyncio.run_coroutine_threadsafe(build(), loop).result(timeout=5)
