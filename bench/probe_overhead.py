"""How much of a probe's measured latency is the probe's own: latency minus the server's time.

Starts the sandbox's model server (`controller.sandbox.modelserver`, one onnxruntime
session) on 127.0.0.1 in a child process, so that the client's CPU use is not mixed with
the server's, then sends `--requests` sequential Predicts after `--warmup` with
ecs-infer's probe client (`TFServingClient`, the prober's channel options) and prints, in
milliseconds, for each request shape (every output, a 197 KB answer at 128 tokens; and
`output_filter=pooled_output`, 1.5 KB, as `probe.outputFilter` asks):

- overhead = probe-measured latency - the server's own time for the request (`x-handler-us`:
  its handler, from the request's bytes to the answer's message: decoding and checking
  the request, the model, building the answer) (p50, p99, mean): what the probe adds,
  that is the client, gRPC on both ends (the server's serialising of the answer too) and
  the loopback;
- model-only overhead = latency - the server's `x-compute-us` (the model's run alone):
  the stricter figure, which also counts the sandbox server's own Python (decoding the
  request, building the answer), work that TF Serving does in C++;
- server handler = `x-handler-us` - `x-compute-us`, that Python;
- floor: the same client against a no-op gRPC server (Python, threaded) that sleeps as
  long as the model computes (its median over 5 runs) and returns the same answer bytes:
  latency minus the sleep. That is what any gRPC server answering after the same wait
  costs on this machine (the client and the server's threads go idle for the wait and
  must wake up again), with no model and no handler work.

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
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.probing.latencies import percentile  # noqa: E402
from controller.tfserving.client import (  # noqa: E402
    DEFAULT_CHANNEL_OPTIONS,
    PredictResult,
    TFServingClient,
)
from controller.tfserving.requests import encode_predict_request  # noqa: E402

GOAL_MS = 1.5
SHAPES: tuple[tuple[str, ...], ...] = ((), ("pooled_output",))


async def _serve(threads: int) -> None:
    from controller.sandbox.modelserver import EncoderModel, start_model_server

    model = EncoderModel.load(threads=threads)
    server = await start_model_server(host="127.0.0.1", port=0, model=model)
    print(server.port, flush=True)
    # Serve until the parent closes our stdin.
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await server.stop(0)
    model.close()


def _serve_floor(output_filter: tuple[str, ...], threads: int) -> None:
    """A no-op server answering every Predict, after the model's median compute time,
    with the bytes the model server would send for this request shape (computed here,
    before serving)."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    from controller.sandbox.modelserver import (
        OUTPUT_NAMES,
        EncoderModel,
        fill_float_tensor,
        parse_inputs,
    )
    from controller.tfserving import serving_pb2

    model = EncoderModel.load(threads=threads)
    request = serving_pb2.PredictRequest.FromString(
        encode_predict_request(model="bert", output_filter=output_filter)
    )
    inputs = parse_inputs(request.inputs)
    model.encode(*inputs)  # warm-up
    runs = [model.encode(*inputs) for _ in range(5)]
    wait_s = sorted(run.compute_s for run in runs)[2]
    encoding = runs[0]
    response = serving_pb2.PredictResponse()
    for name in OUTPUT_NAMES:
        if not output_filter or name in output_filter:
            fill_float_tensor(response.outputs[name], getattr(encoding, name))
    answer = response.SerializeToString()
    model.close()

    def predict(data: bytes, context: Any) -> bytes:
        started = time.perf_counter()
        time.sleep(wait_s)
        waited = str(int((time.perf_counter() - started) * 1e6))
        context.set_trailing_metadata((("x-compute-us", waited), ("x-handler-us", waited)))
        return answer

    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService",
                {"Predict": grpc.unary_unary_rpc_method_handler(predict)},
            ),
        )
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    print(port, flush=True)
    sys.stdin.read()
    server.stop(0)


def _start_server(arguments: list[str]) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, __file__, *arguments],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    assert process.stdout is not None
    line = process.stdout.readline().strip()
    if not line.isdigit():
        process.kill()
        raise SystemExit(f"server did not start (got {line!r})")
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


def _run(arguments: list[str], **measure: Any) -> list[PredictResult]:
    process, endpoint = _start_server(arguments)
    try:
        results = asyncio.run(_measure(endpoint, **measure))
    finally:
        assert process.stdin is not None
        process.stdin.close()
        process.wait(timeout=30)
    failed = [result for result in results if not result.ok]
    if failed:
        raise SystemExit(
            f"{len(failed)} of {len(results)} calls failed: {failed[0].code} {failed[0].details}"
        )
    if any(result.compute_s is None or result.handler_s is None for result in results):
        raise SystemExit("the server sent no x-compute-us / x-handler-us")
    return results


def _option(text: str) -> tuple[str, int | str]:
    key, _, value = text.partition("=")
    return (key, int(value) if value.lstrip("-").isdigit() else value)


def _ms(values: list[float], q: float) -> float:
    return round(percentile(sorted(values), q) * 1e3, 3)


def _figures(results: list[PredictResult], floor: list[PredictResult]) -> dict[str, Any]:
    latency = [r.latency_s for r in results]
    overhead = [r.latency_s - (r.handler_s or 0.0) for r in results]
    model_only = [r.latency_s - (r.compute_s or 0.0) for r in results]
    in_handler = [(r.handler_s or 0.0) - (r.compute_s or 0.0) for r in results]
    compute = [r.compute_s or 0.0 for r in results]
    floor_latency = [r.latency_s - (r.compute_s or 0.0) for r in floor]
    return {
        "requests": len(results),
        "overhead_ms": {
            "p50": _ms(overhead, 50),
            "p99": _ms(overhead, 99),
            "mean": round(sum(overhead) / len(overhead) * 1e3, 3),
        },
        "model_only_overhead_ms": {
            "p50": _ms(model_only, 50),
            "p99": _ms(model_only, 99),
            "mean": round(sum(model_only) / len(model_only) * 1e3, 3),
        },
        "server_handler_ms": {"p50": _ms(in_handler, 50), "p99": _ms(in_handler, 99)},
        "floor_ms": {"p50": _ms(floor_latency, 50), "p99": _ms(floor_latency, 99)},
        "latency_ms": {"p50": _ms(latency, 50), "p99": _ms(latency, 99)},
        "server_compute_ms": {"p50": _ms(compute, 50), "p99": _ms(compute, 99)},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--output-filter",
        action="append",
        default=None,
        help="measure only this request shape: ask only for this output (repeatable)",
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
        "grpc.http2.bdp_probe=1",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--serve-floor", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args.server_threads))
        return 0
    if args.serve_floor:
        _serve_floor(tuple(args.output_filter or ()), args.server_threads)
        return 0

    shapes = SHAPES if args.output_filter is None else (tuple(args.output_filter),)
    options = tuple(_option(text) for text in args.channel_option)
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    figures: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "server_threads": args.server_threads,
        "channel_options": list(args.channel_option),
        "shapes": {},
    }
    for shape in shapes:
        measure = {
            "requests": args.requests,
            "warmup": args.warmup,
            "output_filter": shape,
            "options": options,
        }
        results = _run(["--serve", "--server-threads", str(args.server_threads)], **measure)
        floor_arguments = ["--serve-floor", "--server-threads", str(args.server_threads)]
        for name in shape:
            floor_arguments += ["--output-filter", name]
        floor = _run(floor_arguments, **measure)
        figures["shapes"][",".join(shape) or "all outputs"] = _figures(results, floor)
    figures["wall_s"] = round(time.perf_counter() - started, 1)
    figures["load_average_1m"] = [round(load_before, 2), round(os.getloadavg()[0], 2)]
    if args.json:
        print(json.dumps(figures))
        return 0

    print(
        f"probe overhead = probe latency - the server's own time, {args.requests} sequential "
        f"Predicts per row (server onnxruntime threads={args.server_threads}, "
        f"{os.cpu_count()} CPUs), in ms"
    )
    print(
        f"  {'request':28} {'overhead p50':>12} {'p99':>6} {'mean':>6}   "
        f"{'model-only p50':>14} {'p99':>6}   {'server handler':>14} {'floor':>6}"
    )
    for name, shape_figures in figures["shapes"].items():
        overhead = shape_figures["overhead_ms"]
        model_only = shape_figures["model_only_overhead_ms"]
        goal = "meets" if overhead["p50"] <= GOAL_MS else "MISSES"
        strict = "meets" if model_only["p50"] <= GOAL_MS else "misses"
        label = "every output" if name == "all outputs" else f"output_filter={name}"
        print(
            f"  {label:28} {overhead['p50']:>12.3f} {overhead['p99']:>6.2f} "
            f"{overhead['mean']:>6.3f}   {model_only['p50']:>14.3f} {model_only['p99']:>6.2f}   "
            f"{shape_figures['server_handler_ms']['p50']:>14.3f} "
            f"{shape_figures['floor_ms']['p50']:>6.3f}   ({goal} the {GOAL_MS} ms p50 goal, "
            f"model-only {strict} it; compute p50 "
            f"{shape_figures['server_compute_ms']['p50']:.1f} ms)"
        )
    load = figures["load_average_1m"]
    busy = " (busy machine: figures are inflated)" if max(load) > (os.cpu_count() or 1) else ""
    print(f"  load average (1 min) before/after  {load[0]:.2f} / {load[1]:.2f}{busy}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
