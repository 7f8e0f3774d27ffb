"""`ecs-infer probe HOST:PORT`: the walkthrough's latency client, done properly.

Owns one probe run against one endpoint: warm-up calls (excluded from the figures), then
`requests` Predict calls of the walkthrough's request from `concurrency` workers over one
channel, each with `timeout` as its deadline; the summary (count, errors, mean, p50, p90,
p99) printed as text or as one JSON object. Latency figures are over the successful calls;
failures are counted by gRPC status code. Must not: know about ECS or metrics (the
daemon's prober reuses `controller.tfserving.client`, not this module).
"""

from __future__ import annotations

import asyncio
import ipaddress
import itertools
import json
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from controller.probing.latencies import LatencySummary
from controller.tfserving.client import PredictResult, TFServingClient
from controller.tfserving.requests import encode_predict_request

_UNREACHABLE = "UNAVAILABLE"


class ProbeUsageError(ValueError):
    """An argument of the probe is invalid."""


def parse_target(target: str) -> tuple[str, int]:
    """`HOST:PORT` (or `[IPv6]:PORT`) as host and port; raises ProbeUsageError."""
    host, sep, port_text = target.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ProbeUsageError(f"target must be HOST:PORT, got {target!r}")
    port = int(port_text)
    if not 1 <= port <= 65535:
        raise ProbeUsageError(f"port must be 1..65535, got {port}")
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError as error:
            raise ProbeUsageError(f"invalid IPv6 address in {target!r}") from error
    elif ":" in host:
        raise ProbeUsageError(f"write an IPv6 target as [ADDRESS]:PORT, got {target!r}")
    return host, port


@dataclass(frozen=True)
class ProbeReport:
    """The outcome of one probe run."""

    target: str
    model: str
    sequence_length: int
    concurrency: int
    warmup: int
    count: int
    """Measured calls (warm-up excluded), successful or not."""
    errors: int
    error_codes: dict[str, int] = field(default_factory=dict)
    first_error: str = ""
    latency: LatencySummary | None = None
    """Over the successful measured calls."""
    server_compute: LatencySummary | None = None
    """The server's own `x-compute-us`, when it reports one."""
    wall_s: float = 0.0
    unreachable: bool = False
    """No call got through: every warm-up call, or every measured call when there was no
    warm-up, failed with UNAVAILABLE (connection refused, no route, name not resolved)."""

    @property
    def ok(self) -> bool:
        return self.count > 0 and self.errors == 0 and not self.unreachable

    def to_json(self) -> dict[str, Any]:
        return {
            "target": self.target,
            "ok": self.ok,
            "unreachable": self.unreachable,
            "model": self.model,
            "sequence_length": self.sequence_length,
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "count": self.count,
            "errors": self.errors,
            "error_codes": dict(sorted(self.error_codes.items())),
            "first_error": self.first_error or None,
            "latency_ms": self.latency.milliseconds() if self.latency else None,
            "server_compute_ms": (
                self.server_compute.milliseconds() if self.server_compute else None
            ),
            "throughput_rps": (round(self.count / self.wall_s, 2) if self.wall_s > 0 else None),
        }

    def to_text(self) -> str:
        header = (
            f"target      {self.target}  model {self.model}  sequence length "
            f"{self.sequence_length}  concurrency {self.concurrency}  "
            f"warm-up {self.warmup} (excluded)"
        )
        if self.unreachable and self.count == 0:
            return "\n".join(
                [header, "unreachable every warm-up call failed", f"first error {self.first_error}"]
            )
        codes = ", ".join(f"{code} {n}" for code, n in sorted(self.error_codes.items()))
        lines = [
            header,
            f"count       {self.count}",
            f"errors      {self.errors}" + (f" ({codes})" if codes else ""),
        ]
        if self.latency is not None:
            ms = self.latency.milliseconds()
            lines += [f"{name:<11} {ms[name]:.2f} ms" for name in ("mean", "p50", "p90", "p99")]
        else:
            lines.append("latency     n/a (no successful call)")
        if self.server_compute is not None:
            lines.append(
                f"server p50  {self.server_compute.milliseconds()['p50']:.2f} ms "
                "(the model's own compute time, x-compute-us)"
            )
        if self.wall_s > 0:
            lines.append(f"throughput  {self.count / self.wall_s:.1f} req/s")
        if self.unreachable:
            lines.append("unreachable every call failed with UNAVAILABLE")
        if self.first_error:
            lines.append(f"first error {self.first_error}")
        return "\n".join(lines)


def _describe(result: PredictResult) -> str:
    return f"{result.code}: {result.details}" if result.details else result.code


async def _run_calls(
    client: TFServingClient, request: bytes, *, calls: int, concurrency: int, deadline: float
) -> list[PredictResult]:
    results: list[PredictResult] = []
    tickets = itertools.count()

    async def worker() -> None:
        while next(tickets) < calls:
            results.append(await client.predict(request, deadline=deadline))

    await asyncio.gather(*(worker() for _ in range(min(concurrency, calls))))
    return results


async def probe(
    target: str,
    *,
    model: str = "bert",
    requests: int = 100,
    concurrency: int = 1,
    warmup: int = 5,
    deadline: float = 5.0,
    sequence_length: int = 128,
    output_filter: Sequence[str] = (),
) -> ProbeReport:
    """Runs the probe and returns its report; raises ProbeUsageError for bad arguments."""
    parse_target(target)
    if requests < 1:
        raise ProbeUsageError(f"requests must be at least 1, got {requests}")
    if concurrency < 1:
        raise ProbeUsageError(f"concurrency must be at least 1, got {concurrency}")
    if warmup < 0:
        raise ProbeUsageError(f"warm-up must not be negative, got {warmup}")
    if not deadline > 0:
        raise ProbeUsageError(f"timeout must be positive, got {deadline}")
    if sequence_length < 1:
        raise ProbeUsageError(f"sequence length must be positive, got {sequence_length}")
    request = encode_predict_request(
        model=model, sequence_length=sequence_length, output_filter=output_filter
    )
    report = ProbeReport(
        target=target,
        model=model,
        sequence_length=sequence_length,
        concurrency=concurrency,
        warmup=warmup,
        count=0,
        errors=0,
    )
    async with TFServingClient(target) as client:
        warm = await _run_calls(
            client, request, calls=warmup, concurrency=concurrency, deadline=deadline
        )
        if warm and all(result.code == _UNREACHABLE for result in warm):
            # The endpoint refused every warm-up call: report that, not N more refusals.
            return replace(report, unreachable=True, first_error=_describe(warm[0]))
        started = time.perf_counter()
        measured = await _run_calls(
            client, request, calls=requests, concurrency=concurrency, deadline=deadline
        )
        wall_s = time.perf_counter() - started
    return _report(report, measured, wall_s=wall_s)


def _report(base: ProbeReport, results: list[PredictResult], *, wall_s: float) -> ProbeReport:
    failures = [result for result in results if not result.ok]
    successes = [result for result in results if result.ok]
    compute = [result.compute_s for result in successes if result.compute_s is not None]
    return ProbeReport(
        target=base.target,
        model=base.model,
        sequence_length=base.sequence_length,
        concurrency=base.concurrency,
        warmup=base.warmup,
        count=len(results),
        errors=len(failures),
        error_codes=dict(Counter(result.code for result in failures)),
        first_error=_describe(failures[0]) if failures else "",
        latency=LatencySummary.of([result.latency_s for result in successes]),
        server_compute=LatencySummary.of(compute),
        wall_s=wall_s,
        unreachable=bool(results) and all(result.code == _UNREACHABLE for result in results),
    )


def run_probe(
    target: str,
    *,
    model: str = "bert",
    requests: int = 100,
    concurrency: int = 1,
    warmup: int = 5,
    timeout: float = 5.0,
    sequence_length: int = 128,
    output: str = "text",
    output_filter: Sequence[str] = (),
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """The `probe` command: prints the report; 0 when every call succeeded, else 1.

    `output_filter` asks the server for these outputs only (smaller answers; the names
    must exist in the model's signature, or every call fails with INVALID_ARGUMENT).
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    if output not in ("text", "json"):
        print(f"error: output must be text or json, got {output!r}", file=err)
        return 1
    try:
        report = asyncio.run(
            probe(
                target,
                model=model,
                requests=requests,
                concurrency=concurrency,
                warmup=warmup,
                deadline=timeout,
                sequence_length=sequence_length,
                output_filter=output_filter,
            )
        )
    except ProbeUsageError as error:
        print(f"error: {error}", file=err)
        return 1
    if report.unreachable:
        print(f"error: cannot reach {target}: {report.first_error}", file=err)
    elif not report.ok:
        print(
            f"error: {report.errors} of {report.count} calls failed; first: {report.first_error}",
            file=err,
        )
    if output == "json":
        print(json.dumps(report.to_json()), file=out)
    else:
        print(report.to_text(), file=out)
    return 0 if report.ok else 1
