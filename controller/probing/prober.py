"""The daemon's prober: one probe loop per discovered endpoint, and the metrics they feed.

Owns: the set of probe loops (`update` reconciles it with the deployments' probe settings
and the endpoints discovery found: new endpoints get a loop, gone ones lose theirs, their
gRPC channel and their metric series); each loop's cadence (every `probe.interval`, start
to start, stretched or shrunk at random by `jitter`, first probes of new endpoints spread
over `start_spread_s`, every start on the `tick_s` grid shared by all loops); readiness
(`GetModelStatus` must report a version AVAILABLE before a `Predict` is sent: checked
before the first Predict, after every failed probe, and at least every
`status_recheck_s`); the walkthrough's `Predict` with `probe.timeout` as its
deadline; the series `ecsinfer_probe_latency_seconds`, `ecsinfer_probe_success`,
`ecsinfer_probe_server_compute_seconds` and `ecsinfer_probe_latency_objective_seconds`;
the last `history` latencies of each endpoint, for `snapshot()` (the daemon's /status).

Must not: talk to AWS (discovery is `controller.aws.discovering`, the daemon calls it and
hands the endpoints over), or dial an address outside 127.0.0.0/8 unless
`ProberSettings.allow_non_loopback` says so.

What is measured: a success is a Predict answered OK within the deadline; its latency is
the client's (`perf_counter` around the call, about 1 to 2.5 ms above the server's own
compute time on a 2-core host). Only successes are observed in the latency histogram, so
that timeouts do not masquerade as latency; failures show in `ecsinfer_probe_success` = 0.

Lifecycle: make a `Prober` inside a running event loop; `await update(...)` after each
discovery; `await close()` (or leave `async with`) to stop every loop, close every channel
and remove every series. `run()` is for a task group: it waits until `close()` is called
or it is cancelled, and closes the prober either way.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal

import structlog

from controller.core.endpoints import Endpoint, is_loopback
from controller.core.states import ProbeSettings
from controller.metrics import Metrics
from controller.probing.latencies import percentile
from controller.settings import ProberSettings
from controller.tfserving.client import TFServingClient
from controller.tfserving.requests import encode_predict_request

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class EndpointStatus:
    """One endpoint as the prober sees it, for the daemon's /status."""

    deployment: str
    endpoint: str
    """`host:port`, the `endpoint` label of the metrics."""
    task_arn: str
    state: Literal["probing", "refused"]
    ready: bool
    """The model reported a version AVAILABLE and no probe has failed since."""
    last_ok: bool | None
    """Whether the last probe succeeded; None before the first one."""
    last_probe_at: float | None
    """Wall-clock time (epoch seconds) of the last probe's end."""
    last_success_at: float | None
    last_latency_s: float | None
    """Latency of the last successful probe."""
    p50_s: float | None
    p99_s: float | None
    samples: int
    """Successful latencies behind p50 / p99 (at most `ProberSettings.history`)."""
    last_error: str
    last_error_at: float | None
    consecutive_failures: int
    probes: int
    failures: int

    def to_json(self) -> dict[str, Any]:
        def ms(value: float | None) -> float | None:
            return None if value is None else round(value * 1e3, 3)

        return {
            "endpoint": self.endpoint,
            "task_arn": self.task_arn,
            "state": self.state,
            "ready": self.ready,
            "last_ok": self.last_ok,
            "last_probe_at": self.last_probe_at,
            "last_success_at": self.last_success_at,
            "last_latency_ms": ms(self.last_latency_s),
            "p50_ms": ms(self.p50_s),
            "p99_ms": ms(self.p99_s),
            "samples": self.samples,
            "last_error": self.last_error or None,
            "last_error_at": self.last_error_at,
            "consecutive_failures": self.consecutive_failures,
            "probes": self.probes,
            "failures": self.failures,
        }


@dataclass(frozen=True, kw_only=True)
class ProbeChanges:
    """What one `update` did, by (deployment, endpoint)."""

    started: tuple[tuple[str, str], ...] = ()
    stopped: tuple[tuple[str, str], ...] = ()
    restarted: tuple[tuple[str, str], ...] = ()
    """Loops restarted because their deployment's probe settings changed."""
    refused: tuple[tuple[str, str], ...] = ()
    """Endpoints not dialled: outside 127.0.0.0/8 while non-loopback is not allowed."""


_Key = tuple[str, str]  # (deployment, endpoint address)


class _Series:
    """An endpoint's metric children, each made on first use (`labels()` costs a lock
    and a dict lookup per call, and a series appears only once it has a value)."""

    def __init__(self, metrics: Metrics, endpoint: Endpoint) -> None:
        self._metrics = metrics
        self._labels = {"deployment": endpoint.deployment, "endpoint": endpoint.address}
        self._latency: Any = None
        self._success: Any = None
        self._success_value: int | None = None
        self._compute: Any = None

    def observe_latency(self, seconds: float) -> None:
        if self._latency is None:
            self._latency = self._metrics.probe_latency.labels(**self._labels)
        self._latency.observe(seconds)

    def set_success(self, value: int) -> None:
        if self._success is None:
            self._success = self._metrics.probe_success.labels(**self._labels)
        elif value == self._success_value:
            return  # set already: most probes repeat the last outcome
        self._success.set(value)
        self._success_value = value

    def observe_compute(self, seconds: float) -> None:
        if self._compute is None:
            self._compute = self._metrics.probe_server_compute.labels(**self._labels)
        self._compute.observe(seconds)


@dataclass(eq=False)
class _EndpointState:
    """The mutable record of one probed endpoint; only its own loop writes to it."""

    endpoint: Endpoint
    history: int
    latencies: deque[float] = field(init=False)
    ready_until: float = 0.0  # loop time until which readiness holds without a recheck
    ready: bool = False
    last_ok: bool | None = None
    last_probe_at: float | None = None
    last_success_at: float | None = None
    last_latency_s: float | None = None
    last_error: str = ""
    last_error_at: float | None = None
    consecutive_failures: int = 0
    probes: int = 0
    failures: int = 0
    # Only valid until `Metrics.forget_endpoint`, which runs after the loop has stopped.
    series: _Series | None = None

    def __post_init__(self) -> None:
        self.latencies = deque(maxlen=max(1, self.history))

    def renew(self, endpoint: Endpoint) -> None:
        self.endpoint = endpoint
        self.ready = False
        self.ready_until = 0.0
        self.latencies.clear()

    def status(self) -> EndpointStatus:
        ordered = sorted(self.latencies)
        return EndpointStatus(
            deployment=self.endpoint.deployment,
            endpoint=self.endpoint.address,
            task_arn=self.endpoint.task_arn,
            state="probing",
            ready=self.ready,
            last_ok=self.last_ok,
            last_probe_at=self.last_probe_at,
            last_success_at=self.last_success_at,
            last_latency_s=self.last_latency_s,
            p50_s=percentile(ordered, 50) if ordered else None,
            p99_s=percentile(ordered, 99) if ordered else None,
            samples=len(ordered),
            last_error=self.last_error,
            last_error_at=self.last_error_at,
            consecutive_failures=self.consecutive_failures,
            probes=self.probes,
            failures=self.failures,
        )


@dataclass(eq=False)
class _Loop:
    state: _EndpointState
    settings: ProbeSettings
    task: asyncio.Task[None]


class Prober:
    """Keeps one probe loop per endpoint of the deployments it is given."""

    def __init__(
        self,
        *,
        metrics: Metrics,
        settings: ProberSettings | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.metrics = metrics
        self.settings = settings or ProberSettings()
        self._rng = rng or random.Random()
        self._targets: dict[str, ProbeSettings] = {}
        self._loops: dict[_Key, _Loop] = {}
        self._refused: dict[_Key, Endpoint] = {}
        self._lock = asyncio.Lock()
        self._closing = asyncio.Event()
        self._closed = False

    # --- lifecycle ------------------------------------------------------------------

    async def update(
        self,
        targets: Mapping[str, ProbeSettings],
        endpoints: Iterable[Endpoint],
        *,
        unknown: Iterable[str] = (),
    ) -> ProbeChanges:
        """Probe exactly `endpoints` of the deployments in `targets`, with their settings.

        targets: deployment name -> its probe settings; endpoints of other deployments
        are ignored, and every loop of a deployment no longer here is stopped.
        endpoints: what discovery found this pass.
        unknown: deployments whose endpoints could not be discovered this pass
        (`Discovery.failed_deployments`): their loops are left running as they are, so
        that a failed AWS call is not taken for "every task is gone".
        """
        async with self._lock:
            if self._closed:
                raise RuntimeError("the prober is closed")
            return await self._update(dict(targets), list(endpoints), frozenset(unknown))

    async def _update(
        self,
        targets: dict[str, ProbeSettings],
        endpoints: list[Endpoint],
        unknown: frozenset[str],
    ) -> ProbeChanges:
        wanted: dict[_Key, Endpoint] = {}
        for endpoint in endpoints:
            if endpoint.deployment in targets:
                wanted[(endpoint.deployment, endpoint.address)] = endpoint
        known = [(key, loop.state.endpoint) for key, loop in self._loops.items()]
        for key, endpoint in [*known, *self._refused.items()]:
            if key[0] in unknown and key[0] in targets:
                wanted.setdefault(key, endpoint)

        refused: dict[_Key, Endpoint] = {}
        if not self.settings.allow_non_loopback:
            for key, endpoint in list(wanted.items()):
                if not is_loopback(endpoint.host):
                    refused[key] = wanted.pop(key)
        newly_refused = sorted(set(refused) - set(self._refused))
        for key in newly_refused:
            log.warning(
                "probe.refused",
                deployment=key[0],
                endpoint=key[1],
                reason="not a loopback address and allow_non_loopback is off",
            )
        self._refused = refused

        gone = sorted(key for key in self._loops if key not in wanted)
        changed = sorted(
            key
            for key, loop in self._loops.items()
            if key in wanted and loop.settings != targets[key[0]]
        )
        previous = await self._stop([*gone, *changed])
        for key in gone:
            self.metrics.forget_endpoint(*key)

        started: list[_Key] = []
        for key, endpoint in sorted(wanted.items()):
            running = self._loops.get(key)
            if running is not None:
                if running.state.endpoint.task_arn != endpoint.task_arn:
                    # Another task now holds the address (a fixed host port, a replaced
                    # task): the series go on, but readiness and history are the old one's.
                    running.state.renew(endpoint)
                continue
            state = previous.get(key) or _EndpointState(
                endpoint=endpoint, history=self.settings.history
            )
            state.endpoint = endpoint
            self._start(key, state, targets[key[0]])
            if key not in changed:
                started.append(key)

        for deployment in sorted(set(self._targets) - set(targets)):
            with contextlib.suppress(KeyError):
                self.metrics.probe_latency_objective.remove(deployment)
        for deployment, probe in targets.items():
            self.metrics.probe_latency_objective.labels(deployment=deployment).set(
                probe.latency_objective_s
            )
        self._targets = targets

        changes = ProbeChanges(
            started=tuple(started),
            stopped=tuple(gone),
            restarted=tuple(changed),
            refused=tuple(newly_refused),
        )
        if started or gone or changed:
            log.info(
                "probe.updated",
                loops=len(self._loops),
                started=len(started),
                stopped=len(gone),
                restarted=len(changed),
                refused=len(refused),
            )
        return changes

    async def _stop(self, keys: list[_Key]) -> dict[_Key, _EndpointState]:
        """Cancel these loops and wait for them (each closes its own channel); returns
        their states, which a restarted loop carries on with."""
        loops = {key: self._loops.pop(key) for key in keys}
        for loop in loops.values():
            loop.task.cancel()
        await asyncio.gather(*(loop.task for loop in loops.values()), return_exceptions=True)
        return {key: loop.state for key, loop in loops.items()}

    def _start(self, key: _Key, state: _EndpointState, probe: ProbeSettings) -> None:
        # The last line of defence: nothing below dials an address this refuses.
        if not self.settings.allow_non_loopback and not is_loopback(state.endpoint.host):
            raise AssertionError(f"refusing to dial non-loopback {state.endpoint.address}")
        task = asyncio.create_task(self._probe_loop(state, probe), name=f"probe {key[0]} {key[1]}")
        task.add_done_callback(_report_crash)
        self._loops[key] = _Loop(state=state, settings=probe, task=task)

    async def run(self) -> None:
        """Wait until `close()` is called or this is cancelled, then close the prober.
        The loops themselves run from `update` on; this only ties them to a task."""
        try:
            await self._closing.wait()
        finally:
            await self.close()

    async def close(self) -> None:
        """Stop every loop, close every channel and remove every series; idempotent."""
        async with self._lock:
            if self._closed:
                return
            self._closed = True
            self._closing.set()
            keys = sorted(self._loops)
            await self._stop(keys)
            for key in keys:
                self.metrics.forget_endpoint(*key)
            for deployment in self._targets:
                with contextlib.suppress(KeyError):
                    self.metrics.probe_latency_objective.remove(deployment)
            self._targets = {}
            self._refused = {}

    async def __aenter__(self) -> Prober:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.close()

    # --- what the daemon reads ------------------------------------------------------

    def snapshot(self) -> dict[str, dict[str, EndpointStatus]]:
        """Per deployment (every target, even one without endpoints), per endpoint:
        the last outcome, p50 / p99 of the last `history` successes, the last error."""
        result: dict[str, dict[str, EndpointStatus]] = {name: {} for name in self._targets}
        for (deployment, address), loop in self._loops.items():
            result.setdefault(deployment, {})[address] = loop.state.status()
        for (deployment, address), endpoint in self._refused.items():
            result.setdefault(deployment, {})[address] = EndpointStatus(
                deployment=deployment,
                endpoint=address,
                task_arn=endpoint.task_arn,
                state="refused",
                ready=False,
                last_ok=None,
                last_probe_at=None,
                last_success_at=None,
                last_latency_s=None,
                p50_s=None,
                p99_s=None,
                samples=0,
                consecutive_failures=0,
                probes=0,
                failures=0,
                last_error="not dialled: not a loopback address (allow_non_loopback is off)",
                last_error_at=None,
            )
        return {
            deployment: dict(sorted(endpoints.items()))
            for deployment, endpoints in sorted(result.items())
        }

    @property
    def endpoints(self) -> frozenset[tuple[str, str]]:
        """(deployment, endpoint) of every running probe loop."""
        return frozenset(self._loops)

    # --- one endpoint ---------------------------------------------------------------

    async def _probe_loop(self, state: _EndpointState, probe: ProbeSettings) -> None:
        loop = asyncio.get_running_loop()
        request = encode_predict_request(
            model=probe.model_name,
            sequence_length=probe.sequence_length,
            output_filter=probe.output_filter,
        )
        client = TFServingClient(state.endpoint.address)
        tick = min(self.settings.tick_s, probe.interval_s / 4)
        try:
            spread = min(self.settings.start_spread_s, probe.interval_s)
            if spread > 0:
                first = on_grid(loop.time() + self._rng.uniform(0, spread), tick)
                await asyncio.sleep(max(0.0, first - loop.time()))
            while True:
                started = loop.time()
                try:
                    await self._probe_once(state, probe, client, request, loop)
                except Exception as error:  # a bug must not end the endpoint's probing
                    log.exception("probe.crashed", endpoint=state.endpoint.address)
                    self._record_failure(state, f"probe error: {error!r}")
                jitter = self.settings.jitter
                interval = probe.interval_s * (1 + self._rng.uniform(-jitter, jitter))
                await asyncio.sleep(max(0.0, on_grid(started + interval, tick) - loop.time()))
        finally:
            await client.close()

    async def _probe_once(
        self,
        state: _EndpointState,
        probe: ProbeSettings,
        client: TFServingClient,
        request: bytes,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        now = loop.time()
        task = state.endpoint  # a probe that outlives its task (see `renew`) is dropped
        if not state.ready or now >= state.ready_until:
            status = await client.model_status(model=probe.model_name, deadline=probe.timeout_s)
            if state.endpoint is not task:
                return
            if not status.available:
                state.ready = False
                if status.code != "OK":
                    reason = f"GetModelStatus {status.code}: {status.details}".rstrip(": ")
                else:
                    states = (
                        ", ".join(f"v{v.version} {v.state_name}" for v in status.versions)
                        or "no versions"
                    )
                    reason = f"model {probe.model_name} not available ({states})"
                self._record_failure(state, reason)
                return
            state.ready = True
            state.ready_until = now + self.settings.status_recheck_s
        result = await client.predict(request, deadline=probe.timeout_s)
        if state.endpoint is not task:
            return
        if result.ok:
            self._record_success(state, result.latency_s, result.compute_s)
        else:
            state.ready = False  # look at the model's status again before the next Predict
            reason = f"Predict {result.code}"
            if result.details:
                reason += f": {result.details}"
            self._record_failure(state, reason)

    def _record_success(
        self, state: _EndpointState, latency_s: float, compute_s: float | None
    ) -> None:
        series = self._series(state)
        series.observe_latency(latency_s)
        series.set_success(1)
        if compute_s is not None:
            series.observe_compute(compute_s)
        now = time.time()
        if state.last_ok is False:
            log.info(
                "probe.recovered",
                deployment=state.endpoint.deployment,
                endpoint=state.endpoint.address,
                after_failures=state.consecutive_failures,
            )
        state.latencies.append(latency_s)
        state.last_ok = True
        state.last_probe_at = state.last_success_at = now
        state.last_latency_s = latency_s
        state.consecutive_failures = 0
        state.probes += 1

    def _series(self, state: _EndpointState) -> _Series:
        if state.series is None:
            state.series = _Series(self.metrics, state.endpoint)
        return state.series

    def _record_failure(self, state: _EndpointState, reason: str) -> None:
        self._series(state).set_success(0)
        deployment, address = state.endpoint.deployment, state.endpoint.address
        now = time.time()
        # Logged when the endpoint starts failing or fails differently, not every probe.
        if state.last_ok is not False or _kind(reason) != _kind(state.last_error):
            log.warning(
                "probe.failing",
                deployment=deployment,
                endpoint=address,
                error=reason,
                task_arn=state.endpoint.task_arn,
            )
        state.last_ok = False
        state.last_probe_at = state.last_error_at = now
        state.last_error = reason
        state.consecutive_failures += 1
        state.probes += 1
        state.failures += 1


def on_grid(when: float, tick: float) -> float:
    """`when` moved to the nearest multiple of `tick` (unchanged when `tick` is 0)."""
    return round(when / tick) * tick if tick > 0 else when


def _kind(reason: str) -> str:
    """`Predict UNAVAILABLE` of `Predict UNAVAILABLE: failed to connect ...`."""
    return reason.partition(":")[0]


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("probe.loop_died", task=task.get_name(), error=repr(task.exception()))
