"""How much of a probe's measured latency is the probe's own: latency minus server compute.

Starts the sandbox's model server (`controller.sandbox.modelserver`, one onnxruntime
session) on 127.0.0.1 in a child process, so that the client's CPU use is not mixed with
the server's event loop in one interpreter, then sends `--requests` sequential Predicts
after `--warmup` with ecs-infer's probe client and prints, in milliseconds:

- overhead = probe-measured latency - the server's `x-compute-us` (p50, p99, mean): what
  the probe, gRPC, the loopback and the server's own handler add to the model's time;
- outside-handler = latency - `x-handler-us`: the client and transport part of it;
- in-handler = `x-handler-us` - `x-compute-us`: the server's own part (parsing the
  request, the hop to the encoder's thread, building the response);
- the raw latency p50 and p99.

Goal (issue 4): overhead p50 <= 1.5 ms on this project's 2-core machines. Usage:

    .venv/bin/python bench/probe_overhead.py [--requests 500] [--warmup 20]
        [--output-filter pooled_output] [--server-threads 1] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.probing.command import percentile  # noqa: E402
from controller.tfserving.client import (  # noqa: E402
    DEFAULT_CHANNEL_OPTIONS,
    PredictResult,
    TFServingClient,
)
from controller.tfserving.requests import encode_predict_request  # noqa: E402


async def _serve(threads: int) -> None:
    from controller.sandbox.modelserver import EncoderModel, start_model_server

    model = EncoderModel.load(threads=threads)
    server = await start_model_server(host="127.0.0.1", port=0, model=model)
    print(server.port, flush=True)
    # Serve until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)
    model.close()


def _start_server(threads: int) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--server-threads", str(threads)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise SystemExit(f"model server did not start (got {line!r})")
    return process, f"127.0.0.1:{line}"


async def _measure(
    endpoint: str,
    *,
    requests: int,
    warmup: int,
    output_filter: tuple[str, ...],
    options: tuple[tuple[str, int | str], ...],
) -> list[PredictResult]:
    request = encode_predict_request(model="bert", output_filter=output_filter)
    async with TFServingClient(endpoint, options=DEFAULT_CHANNEL_OPTIONS + options) as client:
        for _ in range(warmup):
            await client.predict(request, deadline=10.0)
        return [await client.predict(request, deadline=10.0) for _ in range(requests)]


def _option(text: str) -> tuple[str, int | str]:
    key, _, value = text.partition("=")
    return (key, int(value) if value.lstrip("-").isdigit() else value)


def _ms(values: list[float], q: float) -> float:
    return round(percentile(sorted(values), q) * 1e3, 3)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--output-filter",
        action="append",
        default=[],
        help="ask only for this output (repeatable); default: all outputs",
    )
    parser.add_argument(
        "--server-threads",
        type=int,
        default=1,
        help="onnxruntime threads in the server (default 1: one core is "
        "left to the client on a 2-core machine)",
    )
    parser.add_argument(
        "--channel-option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an extra gRPC channel option for the client (repeatable), e.g. "
        "grpc.http2.bdp_probe=0",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.server_threads))
        return 0

    load_before = os.getloadavg()[0]
    process, endpoint = _start_server(args.server_threads)
    try:
        started = time.perf_counter()
        results = asyncio.run(
            _measure(
                endpoint,
                requests=args.requests,
                warmup=args.warmup,
                output_filter=tuple(args.output_filter),
                options=tuple(_option(text) for text in args.channel_option),
            )
        )
        wall = time.perf_counter() - started
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=10)

    failed = [result for result in results if not result.ok]
    if failed:
        print(
            f"{len(failed)} of {len(results)} calls failed: {failed[0].code} {failed[0].details}",
            file=sys.stderr,
        )
        return 1
    timed = [result for result in results if result.compute_s is not None]
    if len(timed) != len(results):
        print("the server sent no x-compute-us", file=sys.stderr)
        return 1
    latency = [result.latency_s for result in timed]
    overhead = [result.latency_s - (result.compute_s or 0.0) for result in timed]
    outside = [
        result.latency_s - result.handler_s for result in timed if result.handler_s is not None
    ]
    in_handler = [
        result.handler_s - (result.compute_s or 0.0)
        for result in timed
        if result.handler_s is not None
    ]
    compute = [result.compute_s or 0.0 for result in timed]
    figures = {
        "requests": len(results),
        "output_filter": list(args.output_filter),
        "channel_options": list(args.channel_option),
        "server_threads": args.server_threads,
        "cpus": os.cpu_count(),
        "overhead_ms": {
            "p50": _ms(overhead, 50),
            "p99": _ms(overhead, 99),
            "mean": round(sum(overhead) / len(overhead) * 1e3, 3),
        },
        "outside_handler_ms": (
            {"p50": _ms(outside, 50), "p99": _ms(outside, 99)} if outside else None
        ),
        "in_handler_ms": (
            {"p50": _ms(in_handler, 50), "p99": _ms(in_handler, 99)} if in_handler else None
        ),
        "latency_ms": {"p50": _ms(latency, 50), "p99": _ms(latency, 99)},
        "server_compute_ms": {"p50": _ms(compute, 50), "p99": _ms(compute, 99)},
        "wall_s": round(wall, 2),
        "load_average_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
    }
    if args.json:
        print(json.dumps(figures))
        return 0
    goal = "meets" if figures["overhead_ms"]["p50"] <= 1.5 else "MISSES"
    print(
        f"probe overhead over {len(results)} sequential Predicts "
        f"(output_filter={list(args.output_filter) or 'none'}, "
        f"server onnxruntime threads={args.server_threads}, {os.cpu_count()} CPUs)"
    )
    print(
        f"  overhead (latency - x-compute-us)  p50 {figures['overhead_ms']['p50']:.3f} ms"
        f"  p99 {figures['overhead_ms']['p99']:.3f} ms"
        f"  mean {figures['overhead_ms']['mean']:.3f} ms  ({goal} the 1.5 ms p50 goal)"
    )
    if outside:
        print(
            f"    client + transport (- x-handler-us) p50 {_ms(outside, 50):.3f} ms"
            f"  p99 {_ms(outside, 99):.3f} ms"
        )
        print(
            f"    server handler minus compute     p50 {_ms(in_handler, 50):.3f} ms"
            f"  p99 {_ms(in_handler, 99):.3f} ms"
        )
    print(
        f"  raw latency                        p50 {figures['latency_ms']['p50']:.3f} ms"
        f"  p99 {figures['latency_ms']['p99']:.3f} ms"
    )
    print(f"  server compute                     p50 {figures['server_compute_ms']['p50']:.3f} ms")
    load = figures["load_average_1m"]
    busy = " (busy machine: figures are inflated)" if max(load) > (os.cpu_count() or 1) else ""
    print(f"  load average (1 min) before/after  {load[0]:.2f} / {load[1]:.2f}{busy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
