"""`ecs-infer run`: the runner wired to AWS and the prober. The composition root.

Owns: opening the AWS clients (every request counted in `ecsinfer_aws_requests_total`
through their `on_request` hook), handing the runner the AWS-backed `Shell`
(`pipeline.AwsShell`), the probing companion (discovery of the running tasks' endpoints after each
read of AWS and every `discovery_interval_s`, through one incremental `Discoverer` that
describes only the tasks it has not seen yet, handed to the `Prober`), the event source
of `--events` (`aws.events.SqsEventSource`: `auto` ensures its queue and rules, a URL is
read as it is), signals, and the exit code.
Must not: decide anything the runner, the planner or the shell decides.

It lives outside `controller.runner` on purpose: the import contract lets only the AWS
shell talk to AWS, and `controller.runner` stays free of it (and testable without it).

In-process use (the sandbox): `await run_daemon_async(path, settings=..., stop=event)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable
from pathlib import Path

import structlog

from controller.aws.clients import AwsClients
from controller.aws.discovering import Discoverer
from controller.aws.errors import AwsError
from controller.aws.events import SqsEventSource
from controller.core.endpoints import discovery_targets, probe_targets
from controller.metrics import Metrics
from controller.pipeline import AwsShell
from controller.probing.prober import Prober
from controller.runner.daemon import Daemon
from controller.runner.reconciling import Level
from controller.runner.reporting import ProbeReport
from controller.settings import EventsSettings, ProbingSettings, Settings

log = structlog.get_logger(__name__)

EXIT_OK = 0
EXIT_ERROR = 1


class ProbeCompanion:
    """Keeps the prober's endpoints in step with the running tasks of the deployments."""

    def __init__(self, clients: AwsClients, *, metrics: Metrics, settings: ProbingSettings) -> None:
        self.clients = clients
        self.settings = settings
        self.prober = Prober(metrics=metrics, settings=settings.prober)
        self.discoverer = Discoverer(clients, full_refresh_s=settings.discovery_full_refresh_s)
        self._level: Level | None = None
        self._wake = asyncio.Event()

    def on_level(self, level: Level) -> None:
        self._level = level
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.settings.discovery_interval_s)
            self._wake.clear()
            if stop.is_set():
                return
            try:
                await self.discover_once()
            except Exception as exc:
                log.warning("probe.discovery_failed", error=str(exc) or type(exc).__name__)

    async def discover_once(self) -> None:
        level = self._level
        if level is None:
            return
        deployments = level.desired.deployments.values()
        discovery = await self.discoverer.discover(targets=discovery_targets(deployments))
        await self.prober.update(
            probe_targets(deployments),
            discovery.endpoints,
            unknown=discovery.failed_deployments,
        )

    def report(self) -> ProbeReport:
        return {
            deployment: {address: status.to_json() for address, status in endpoints.items()}
            for deployment, endpoints in self.prober.snapshot().items()
        }

    async def close(self) -> None:
        await self.prober.close()


async def run_daemon_async(
    path: Path,
    *,
    settings: Settings | None = None,
    stop: asyncio.Event | None = None,
    metrics: Metrics | None = None,
) -> int:
    """Run the daemon in the current event loop until `stop` is set; returns the exit
    code (0 after a clean stop, 1 when it could not start, e.g. the port is taken).

    `settings.aws` opens the clients and `settings.runner` drives the loop. `metrics`
    lets an embedding process (the sandbox, a benchmark) read the same registry.
    """
    settings = settings or Settings()
    runner = settings.runner
    stop = stop or asyncio.Event()
    metrics = metrics or Metrics()
    try:
        async with AwsClients(
            settings=settings.aws, on_request=metrics.record_aws_request
        ) as clients:
            companions = []
            if runner.probing.enabled:
                companions.append(ProbeCompanion(clients, metrics=metrics, settings=runner.probing))
            daemon = Daemon(
                path,
                settings=runner,
                shell=AwsShell(clients),
                metrics=metrics,
                companions=companions,
                events=event_source(clients, settings=runner.events),
            )
            log.info(
                "daemon.starting",
                path=str(path),
                metrics_addr=runner.serving.metrics_addr,
                resync_s=runner.resync.interval_s,
                workers=runner.queue.workers,
                probing=runner.probing.enabled,
                events=runner.events.mode if runner.events.mode in ("off", "auto") else "queue",
            )
            await daemon.run(stop)
    except (OSError, AwsError) as exc:  # the port is taken; no region or credentials
        log.error("daemon.failed", error=str(exc))
        return EXIT_ERROR
    return EXIT_OK


def event_source(clients: AwsClients, *, settings: EventsSettings) -> SqsEventSource | None:
    """The `--events` source: None for `off`, the ensured queue for `auto`, else the
    queue URL given."""
    if settings.mode == "off":
        return None
    if settings.mode == "auto":
        return SqsEventSource(clients, settings=settings)
    return SqsEventSource(clients, settings=settings, queue_url=settings.mode)


def run_daemon(path: Path, *, settings: Settings | None = None) -> int:
    """`ecs-infer run`: until SIGTERM / SIGINT, then exit 0 (within the shutdown grace)."""

    async def main() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, _stopper(stop, signum))
        return await run_daemon_async(path, settings=settings, stop=stop)

    return asyncio.run(main())


def _stopper(stop: asyncio.Event, signum: int) -> Callable[[], None]:
    def on_signal() -> None:
        log.info("daemon.signal", signal=signal.Signals(signum).name)
        stop.set()

    return on_signal
