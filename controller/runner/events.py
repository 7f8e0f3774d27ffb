"""The events loop: AWS events make the keys they name due now.

Owns: `EventsLoop`, which takes batches of raw message bodies from an `EventSource`,
parses each (`core.events.parse_event`), counts it (`ecsinfer_events_received_total`
by source, `ecsinfer_events_dropped_total` by reason), maps the batch to keys with the
informer's latest level (`core.events.KeyIndex`), and for each key marks the
informer stale for it and enqueues it now; deleting every message it was handed,
whatever it held; skipping API calls the controller made itself (the source knows whom
it calls AWS as: each write's reconcile verifies it already); backing off (bounded,
with jitter) from a source that fails, without ever stopping the daemon; and stopping
with the daemon's stop event.
Must not: read an event as state (the key's reconcile reads AWS as always: the event
only says which key to look at now), or import the AWS shell: it is handed a source
(`controller.aws.events.SqsEventSource` on AWS, a fake in tests).

Before the first level is read there is nothing to map events to; they are dropped, as
the first pass, which is coming, reads everything anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import Awaitable, Sequence
from typing import Generic, Protocol, TypeVar

import structlog

from controller.core.errors import TerminalError
from controller.core.events import KeyIndex, Rejected, Touched, parse_event
from controller.metrics import Metrics
from controller.runner.reconciling import Informer
from controller.runner.running import Runner
from controller.settings import EventsSettings

log = structlog.get_logger(__name__)

_T = TypeVar("_T")


class EventMessage(Protocol):
    """One message of a source: its raw body (an EventBridge event, as text)."""

    @property
    def body(self) -> str: ...


_M = TypeVar("_M", bound=EventMessage)


class EventSource(Protocol[_M]):
    """Where events come from (an SQS queue, on AWS)."""

    @property
    def name(self) -> str:
        """For logs."""

    @property
    def own_actor(self) -> str | None:
        """The principal the controller calls AWS as (known once started), if known: API
        calls it made itself are not events for it (it verifies each write anyway)."""

    async def start(self) -> None:
        """Make ready (e.g. create the queue); a `TerminalError` turns events off."""

    async def receive(self) -> Sequence[_M]:
        """One batch, waiting a while (a long poll) when there is none."""

    async def delete(self, messages: Sequence[_M]) -> None:
        """These were handled: never hand them out again."""


class EventsLoop(Generic[_M]):
    def __init__(
        self,
        source: EventSource[_M],
        *,
        informer: Informer,
        runner: Runner,
        metrics: Metrics,
        settings: EventsSettings,
    ) -> None:
        self.source = source
        self.informer = informer
        self.runner = runner
        self.metrics = metrics
        self.settings = settings
        self._failures = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Receive and handle batches until `stop` is set."""
        if not await self._start(stop):
            return
        log.info("events.started", source=self.source.name)
        while not stop.is_set():
            started = time.monotonic()
            try:
                messages = await _until(self.source.receive(), stop)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._back_off(stop, "events.receive_failed", exc)
                continue
            if messages is None:  # stopped
                return
            self._failures = 0
            if not messages:
                rest = self.settings.empty_pause_s - (time.monotonic() - started)
                if rest > 0:  # a short poll: never a busy loop on an empty queue
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), rest)
                continue
            try:
                self.handle([message.body for message in messages])
            finally:
                # Whatever they held, handled messages are not handed out again.
                try:
                    await self.source.delete(messages)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    log.warning("events.delete_failed", error=str(exc) or type(exc).__name__)

    async def _start(self, stop: asyncio.Event) -> bool:
        while not stop.is_set():
            try:
                await _until(self.source.start(), stop)
                return not stop.is_set()
            except asyncio.CancelledError:
                raise
            except TerminalError as exc:
                # E.g. a same-named queue that is not ours: no retry will help. The daemon
                # runs on without events; the resync still sees everything.
                log.error("events.disabled", source=self.source.name, error=str(exc))
                return False
            except Exception as exc:
                await self._back_off(stop, "events.start_failed", exc)
        return False

    def handle(self, bodies: Sequence[str]) -> set[str]:
        """Parse, count and map one batch; mark and enqueue its keys. Returns the keys."""
        touched: list[Touched] = []
        for body in bodies:
            parsed = parse_event(body, max_bytes=self.settings.max_message_bytes)
            if isinstance(parsed, Rejected):
                if parsed.source is not None:
                    self.metrics.events_received.labels(source=parsed.source).inc()
                self.metrics.events_dropped.labels(reason=parsed.reason).inc()
                log.debug("events.dropped", reason=parsed.reason, detail=parsed.detail)
                continue
            self.metrics.events_received.labels(source=parsed.source).inc()
            if parsed.actor is not None and parsed.actor == self.source.own_actor:
                # Our own write: its reconcile verifies it already; one more read of
                # AWS for each of our writes would only double the cost of a rollout.
                self.metrics.events_dropped.labels(reason="own-call").inc()
                continue
            touched.append(parsed)
        level = self.informer.latest
        if level is None:
            # The first read is coming and covers everything.
            if touched:
                self.metrics.events_dropped.labels(reason="no-level").inc(len(touched))
            log.debug("events.before_first_level", messages=len(bodies))
            return set()
        index = KeyIndex.of(level.desired, level.observed)
        keys: set[str] = set()
        for one in touched:
            found = index.keys(one)
            if not found:
                self.metrics.events_dropped.labels(reason="not-ours").inc()
            keys |= found
        for key in sorted(keys):
            self.informer.mark_stale(key)
            self.runner.enqueue([key], now=True)
        if keys:
            self.metrics.events_keys.inc(len(keys))
            log.info(
                "events.batch",
                messages=len(bodies),
                events=len(touched),
                keys=sorted(keys),
                kinds=sorted({one.kind for one in touched}),
            )
        else:
            log.debug("events.batch", messages=len(bodies), events=len(touched), keys=[])
        return keys

    async def _back_off(self, stop: asyncio.Event, event: str, exc: Exception) -> None:
        self._failures += 1
        delay = backoff_delay(
            self._failures, base_s=self.settings.backoff_base_s, cap_s=self.settings.backoff_cap_s
        )
        self.metrics.events_receive_errors.inc()
        log.warning(
            event,
            source=self.source.name,
            error=str(exc) or type(exc).__name__,
            failures=self._failures,
            retry_in_s=round(delay, 2),
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)


def backoff_delay(failures: int, *, base_s: float, cap_s: float) -> float:
    """base, 2 x base, 4 x base, ... capped; each between half and all of that, at random
    (so that several controllers do not retry in step)."""
    ceiling = min(cap_s, base_s * 2.0 ** min(max(0, failures - 1), 30))
    return float(ceiling * (0.5 + random.random() / 2))


async def _until(work: Awaitable[_T], stop: asyncio.Event) -> _T | None:
    """`work`'s result, or None (and `work` cancelled) once `stop` is set first: a long
    poll must not hold up the daemon's stop for its 20 seconds."""
    task = asyncio.ensure_future(work)
    stopped = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopped}, return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        task.cancel()
        raise
    finally:
        stopped.cancel()
    if task.done():
        return task.result()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    return None
