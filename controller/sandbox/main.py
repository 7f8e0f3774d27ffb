"""`ecs-infer sandbox`: the embedded default, everything in one process on loopback.

Owns: the order of starting and stopping the AWS emulator (moto on 127.0.0.1), the
emulated data plane with its model servers, and the controller on a spec folder; the
console output a newcomer reads; signals. Must not: bind anything but loopback, or
leave a thread or process behind when it returns.

The controller is the daemon of `ecs-infer run` (`controller.daemon.run_daemon_async`),
serving metrics on `--metrics-addr`, looking again after a write sooner than on AWS
(1 s, and 3 s while a rollout settles: the data plane acts within a tick). It reaches
the emulator through its settings (`AwsSettings`: the emulator's endpoint, region and
dummy credentials), never through this process's environment. Its log lines are the
console output of what it does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

import structlog

from controller.logs import configure_logging
from controller.sandbox.emulator import REGION, Emulator, start_emulator
from controller.sandbox.modelserver import EncoderModel
from controller.settings import (
    AwsSettings,
    EventsSettings,
    ProberSettings,
    ProbingSettings,
    QueueSettings,
    RunnerSettings,
    ServingSettings,
    Settings,
)


@dataclass(frozen=True, kw_only=True)
class SandboxOptions:
    specs: Path | None
    aws_port: int
    metrics_addr: str
    controller: bool
    events: str = "auto"


def _console(stream: TextIO) -> Callable[[str], None]:
    def say(line: str) -> None:
        stream.write(f"{time.strftime('%H:%M:%S')} {line}\n")
        stream.flush()

    return say


class _ConsoleHandler(logging.Handler):
    """The data plane's log lines, as plain console lines."""

    def __init__(self, say: Callable[[str], None]) -> None:
        super().__init__(level=logging.INFO)
        self._say = say

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._say(f"[data plane] {record.getMessage()}")
        except Exception:  # a log line must never take the sandbox down
            self.handleError(record)


def controller_settings(*, endpoint: str, metrics_addr: str, events: str = "auto") -> Settings:
    """The controller's settings in the sandbox: the emulator's endpoint and dummy
    credentials, loopback-only probing, a runner that looks again sooner than on AWS
    (the emulated data plane acts within a tick), and AWS events (`auto` by default:
    the sandbox emits them, so drift is seen in about a second)."""
    return Settings(
        aws=AwsSettings(
            endpoint_url=endpoint,
            region=REGION,
            access_key_id="testing",
            secret_access_key="testing",
        ),
        runner=RunnerSettings(
            queue=QueueSettings(verify_after_s=1.0, settle_after_s=3.0),
            serving=ServingSettings(metrics_addr=metrics_addr),
            probing=ProbingSettings(prober=ProberSettings(allow_non_loopback=False)),
            events=EventsSettings(mode=events),
        ),
    )


async def _controller(options: SandboxOptions, emulator: Emulator, stopping: asyncio.Event) -> int:
    """The controller daemon on the spec folder, in this process, until `stopping`."""
    from controller.daemon import run_daemon_async

    assert options.specs is not None
    settings = controller_settings(
        endpoint=emulator.endpoint, metrics_addr=options.metrics_addr, events=options.events
    )
    return await run_daemon_async(options.specs, settings=settings, stop=stopping)


async def _serve(
    options: SandboxOptions,
    emulator: Emulator,
    loading: Future[EncoderModel],
    say: Callable[[str], None],
) -> int:
    from controller.sandbox.ecs.dataplane import DataPlane

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    model = await asyncio.wrap_future(loading)
    dataplane = DataPlane(model=model, aws_port=emulator.port)
    controller_task: asyncio.Task[int] | None = None
    try:
        await dataplane.start()
        say(f"AWS endpoint: {emulator.endpoint}")
        say(
            f"  instances get private addresses {dataplane.address_prefix}.N; their tasks "
            "serve TF Serving gRPC there (model servers: MiniLM-L6 int8 on onnxruntime)"
        )
        say(f"  look: aws --endpoint-url {emulator.endpoint} --region {REGION} ecs list-clusters")
        if options.controller and options.specs is not None:
            if options.metrics_addr.endswith(":0"):
                say("  metrics: on a free port (the controller logs it: serving.started)")
            else:
                say(f"  metrics: http://{options.metrics_addr}/metrics (also /status, /readyz)")
            say(f"[controller] running on {options.specs}")
            controller_task = asyncio.create_task(_controller(options, emulator, stopping))
        elif options.controller:
            say("  no --specs: the controller is not running (emulated AWS and data plane only)")
        else:
            say("  --no-controller: emulated AWS and data plane only")
        stop_wait = asyncio.create_task(stopping.wait())
        waiting: set[asyncio.Future[object]] = {stop_wait}  # type: ignore[arg-type]
        if controller_task is not None:
            waiting.add(controller_task)  # type: ignore[arg-type]
        done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        stop_wait.cancel()
        if controller_task is not None and controller_task in done:
            code = controller_task.result()  # the daemon returns before a stop only on error
            say(f"[controller] stopped with exit code {code}")
            return code or 1
        say("stopping")
        return 0
    finally:
        stopping.set()
        if controller_task is not None:
            try:  # the daemon stops by itself once `stopping` is set (shutdown grace 8 s)
                await asyncio.wait_for(asyncio.shield(controller_task), 15)
            except (TimeoutError, Exception):
                controller_task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await controller_task
        await dataplane.stop()
        model.close()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run_sandbox(
    *,
    specs: Path | None,
    aws_port: int,
    metrics_addr: str,
    controller: bool,
    events: str = "auto",
    stream: TextIO | None = None,
) -> int:
    """Run the sandbox until SIGINT/SIGTERM; 0 on a clean stop, 1 when it cannot run."""
    say = _console(stream or sys.stdout)
    options = SandboxOptions(
        specs=specs,
        aws_port=aws_port,
        metrics_addr=metrics_addr,
        controller=controller,
        events=events,
    )
    if not structlog.is_configured():  # not started by the CLI
        configure_logging(level="INFO", fmt="console")
    handler = _ConsoleHandler(say)
    dataplane_log = logging.getLogger("controller.sandbox.ecs")
    dataplane_log.addHandler(handler)
    dataplane_log.setLevel(logging.INFO)
    dataplane_log.propagate = False
    # The encoder loads while moto starts (about a second each, mostly outside the GIL).
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder-load") as pool:
        loading = pool.submit(EncoderModel.load)
        try:
            try:
                emulator = start_emulator(aws_port)
            except OSError as error:
                say(f"cannot start the AWS emulator on 127.0.0.1:{aws_port}: {error}")
                with contextlib.suppress(Exception):
                    loading.result().close()
                return 1
            try:
                return asyncio.run(_serve(options, emulator, loading, say))
            finally:
                emulator.stop()
        finally:
            dataplane_log.removeHandler(handler)
