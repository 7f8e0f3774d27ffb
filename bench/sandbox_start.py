"""How long `ecs-infer sandbox --specs specs/ecs-inf1-demo.yaml` takes to be useful, and
how much memory it holds.

Starts the sandbox as its own process (as `make run` does) and measures, from the moment
the process is spawned:
- until it prints `AWS endpoint:` (emulator, data plane and encoder ready);
- until the demo's task answers a Predict, at the address the controller would use
  (describe_tasks + describe_container_instances + describe_instances);
then sends the walkthrough's 100 Predict requests (int32 [1,128] zeros) and reports the
mean latency, reads the process's peak RSS (VmHWM), stops it with SIGTERM and checks that
it exits 0.

    .venv/bin/python bench/sandbox_start.py [--runs 3] [--specs specs/ecs-inf1-demo.yaml]
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
import grpc
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from controller.tfserving import serving_pb2, serving_pb2_grpc, tensor_pb2  # noqa: E402

CLUSTER, SERVICE = "ecs-inf1-demo", "bert-inf1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def walkthrough_request() -> serving_pb2.PredictRequest:
    request = serving_pb2.PredictRequest()
    request.model_spec.name = "bert"
    for name in ("input_ids", "input_mask", "segment_ids"):
        tensor = request.inputs[name]
        tensor.dtype = tensor_pb2.DT_INT32
        tensor.tensor_shape.dim.add(size=1)
        tensor.tensor_shape.dim.add(size=128)
        tensor.tensor_content = np.zeros((1, 128), dtype="<i4").tobytes()
    return request


def task_address(endpoint: str) -> str | None:
    """The demo task's instance private IP and host port, as on AWS; None until RUNNING."""
    kwargs: dict[str, Any] = {
        "endpoint_url": endpoint,
        "region_name": "us-east-1",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    ecs, ec2 = boto3.client("ecs", **kwargs), boto3.client("ec2", **kwargs)
    if not ecs.list_clusters()["clusterArns"]:
        return None
    arns = ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE)["taskArns"]
    tasks = [
        t
        for t in (ecs.describe_tasks(cluster=CLUSTER, tasks=arns)["tasks"] if arns else [])
        if t["lastStatus"] == "RUNNING"
    ]
    if not tasks:
        return None
    task = tasks[0]
    (instance,) = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=[task["containerInstanceArn"]]
    )["containerInstances"]
    reservation = ec2.describe_instances(InstanceIds=[instance["ec2InstanceId"]])
    private_ip = reservation["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    port = next(
        b["hostPort"]
        for c in task["containers"]
        for b in c.get("networkBindings", [])
        if b["containerPort"] == 8500
    )
    return f"{private_ip}:{port}"


def peak_rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def one_run(specs: Path, requests: int) -> dict[str, float]:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    with tempfile.TemporaryFile() as log:
        started = time.perf_counter()
        process = subprocess.Popen(
            [sys.executable, "-m", "controller", "sandbox", "--specs", str(specs),
             "--aws-port", str(port), "--metrics-addr", "127.0.0.1:0"],
            stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, env=env,
        )  # fmt: skip
        try:
            ready = answering = None
            request = walkthrough_request()
            while answering is None:
                if process.poll() is not None:
                    log.seek(0)
                    raise SystemExit(f"the sandbox exited early:\n{log.read().decode()}")
                if time.perf_counter() - started > 180:
                    raise SystemExit("the demo did not answer within 180 s")
                if ready is None:
                    log.seek(0)
                    if b"AWS endpoint:" in log.read():
                        ready = time.perf_counter() - started
                    else:
                        time.sleep(0.05)
                        continue
                address = task_address(endpoint)
                if address is not None:
                    with grpc.insecure_channel(address) as channel:
                        stub = serving_pb2_grpc.PredictionServiceStub(channel)
                        try:
                            stub.Predict(request, timeout=5)
                            answering = time.perf_counter() - started
                        except grpc.RpcError:
                            pass
                if answering is None:
                    time.sleep(0.05)
            assert address is not None
            latencies = []
            with grpc.insecure_channel(address) as channel:
                stub = serving_pb2_grpc.PredictionServiceStub(channel)
                for _ in range(requests):
                    before = time.perf_counter()
                    stub.Predict(request, timeout=5)
                    latencies.append((time.perf_counter() - before) * 1000)
            rss = peak_rss_mib(process.pid)
        finally:
            stop = time.perf_counter()
            process.send_signal(signal.SIGTERM)
            code = process.wait(timeout=30)
        stop_s = time.perf_counter() - stop
    if code != 0:
        raise SystemExit(f"the sandbox exited {code} on SIGTERM")
    return {
        "ready_s": ready,
        "answering_s": answering,
        "mean_ms": statistics.fmean(latencies),
        "p50_ms": statistics.median(latencies),
        "peak_rss_mib": rss,
        "stop_s": stop_s,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--requests", type=int, default=100)
    parser.add_argument("--specs", type=Path, default=ROOT / "specs" / "ecs-inf1-demo.yaml")
    args = parser.parse_args()
    print(f"sandbox start, {args.runs} runs, {os.cpu_count()} CPUs, specs {args.specs}")
    results = []
    for run in range(1, args.runs + 1):
        result = one_run(args.specs, args.requests)
        results.append(result)
        print(
            f"run {run}: 'AWS endpoint' after {result['ready_s']:.2f} s, demo task answering "
            f"Predict after {result['answering_s']:.2f} s; {args.requests} Predicts mean "
            f"{result['mean_ms']:.1f} ms (p50 {result['p50_ms']:.1f}); peak RSS "
            f"{result['peak_rss_mib']:.0f} MiB; SIGTERM to exit 0 in {result['stop_s']:.2f} s"
        )
    answering = [r["answering_s"] for r in results]
    print(
        f"median: answering after {statistics.median(answering):.2f} s "
        f"(ready {statistics.median(r['ready_s'] for r in results):.2f} s), "
        f"peak RSS {max(r['peak_rss_mib'] for r in results):.0f} MiB, "
        f"Predict mean {statistics.median(r['mean_ms'] for r in results):.1f} ms"
    )


if __name__ == "__main__":
    main()
