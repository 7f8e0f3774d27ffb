"""`ecs-infer sandbox`: the embedded default, everything in one process on loopback.

Owns: the order of starting and stopping the AWS emulator (moto on 127.0.0.1), the
emulated data plane with its model servers, and the controller on a spec folder; the
console output a newcomer reads; signals. Must not: bind anything but loopback, or
leave a thread or process behind when it returns.

Until the daemon exists, the controller is an apply pass every few seconds while the
folder is valid (the folder is re-read before each pass), printing what each pass
changed. The controller reaches the emulator through the ordinary botocore chain:
`AWS_ENDPOINT_URL`, region and dummy credentials are set in this process's environment.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
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

log = logging.getLogger("controller.sandbox")

PASS_INTERVAL_S = 5.0


@dataclass(frozen=True, kw_only=True)
class SandboxOptions:
    specs: Path | None
    aws_port: int
    metrics_addr: str
    controller: bool
    pass_interval_s: float = PASS_INTERVAL_S


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


def _point_botocore_at(emulator: Emulator) -> None:
    os.environ["AWS_ENDPOINT_URL"] = emulator.endpoint
    os.environ["AWS_DEFAULT_REGION"] = REGION
    os.environ["AWS_REGION"] = REGION
    os.environ["AWS_ACCESS_KEY_ID"] = "testing"
    os.environ["AWS_SECRET_ACCESS_KEY"] = "testing"
    os.environ.pop("AWS_PROFILE", None)
    os.environ.pop("AWS_SESSION_TOKEN", None)


async def _controller_loop(
    options: SandboxOptions, say: Callable[[str], None], stopping: asyncio.Event
) -> None:
    """An apply pass every few seconds while the folder is valid (until the daemon)."""
    from controller.aws.clients import AwsClients
    from controller.aws.errors import AwsError
    from controller.aws.passes import reconcile_pass
    from controller.specs.loading import load_folder

    assert options.specs is not None
    last_errors: tuple[str, ...] = ()
    quiet = False
    async with AwsClients() as clients:
        while not stopping.is_set():
            loaded = await asyncio.to_thread(load_folder, options.specs)
            errors = tuple(str(error) for error in loaded.errors)
            if errors:
                if errors != last_errors:
                    say(f"[controller] {options.specs} is invalid; not applying until fixed:")
                    for line in errors:
                        say(f"[controller]   {line}")
                last_errors = errors
            else:
                last_errors = ()
                try:
                    result = await reconcile_pass(loaded.specs, clients=clients, apply=True)
                except AwsError as error:
                    say(f"[controller] pass failed: {error}")
                    quiet = False
                else:
                    report = result.report
                    lines = report.lines() if report is not None else []
                    for line in lines:
                        say(f"[controller] {line}")
                    for warning in result.plan.warnings:
                        say(f"[controller] warning: {warning}")
                    if lines or not quiet:
                        state = "changes applied" if lines else "in sync"
                        say(
                            f"[controller] pass: {state} ({len(loaded.specs.deployments)} "
                            f"deployments, {result.duration_s * 1000:.0f} ms)"
                        )
                    quiet = not lines and report is not None and report.ok
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), options.pass_interval_s)


async def _serve(
    options: SandboxOptions,
    emulator: Emulator,
    loading: Future[EncoderModel],
    say: Callable[[str], None],
) -> int:
    from controller.sandbox.dataplane import DataPlane

    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stopping.set)
    model = await asyncio.wrap_future(loading)
    dataplane = DataPlane(model=model, aws_port=emulator.port)
    controller_task: asyncio.Task[None] | None = None
    try:
        await dataplane.start()
        say(f"AWS endpoint: {emulator.endpoint}")
        say(
            f"  instances get private addresses {dataplane.address_prefix}.N; their tasks "
            "serve TF Serving gRPC there (model servers: MiniLM-L6 int8 on onnxruntime)"
        )
        say(f"  look: aws --endpoint-url {emulator.endpoint} --region {REGION} ecs list-clusters")
        if options.controller and options.specs is not None:
            say(f"  metrics (once the daemon serves them): http://{options.metrics_addr}/metrics")
            say(f"[controller] applying {options.specs} every {options.pass_interval_s:g} s")
            controller_task = asyncio.create_task(_controller_loop(options, say, stopping))
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
            error = controller_task.exception()
            if error is not None:
                say(f"[controller] stopped on an error: {error!r}")
                return 1
        say("stopping")
        return 0
    finally:
        stopping.set()
        if controller_task is not None:
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
    pass_interval_s: float = PASS_INTERVAL_S,
    stream: TextIO | None = None,
) -> int:
    """Run the sandbox until SIGINT/SIGTERM; 0 on a clean stop, 1 when it cannot run."""
    say = _console(stream or sys.stdout)
    options = SandboxOptions(
        specs=specs,
        aws_port=aws_port,
        metrics_addr=metrics_addr,
        controller=controller,
        pass_interval_s=pass_interval_s,
    )
    if not structlog.is_configured():
        # Not started by the CLI: the console lines below say what the passes did.
        configure_logging(level="WARNING")
    handler = _ConsoleHandler(say)
    dataplane_log = logging.getLogger("controller.sandbox.dataplane")
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
            _point_botocore_at(emulator)
            try:
                return asyncio.run(_serve(options, emulator, loading, say))
            finally:
                emulator.stop()
        finally:
            dataplane_log.removeHandler(handler)
