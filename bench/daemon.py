"""The daemon at 100 deployments: edit-to-update latency, peak RSS, CPU, AWS calls per resync.

Starts `ecs-infer sandbox --no-controller` and then `ecs-infer run` (default settings,
only the metrics port chosen) as two processes on loopback, on a folder of one cluster
(inf1.6xlarge, 16 NeuronCores each) and `--deployments` deployments of `--replicas`
replicas (1 NeuronCore each, every deployment on its own gRPC port so that replicas of
different deployments share instances), probed every second. Then it measures:

- edit → service updated: a deployment's `replicas` is edited in its file; seconds until
  `describe_services` shows the new desiredCount (goal: <= 5 s with default settings);
- the daemon's peak RSS (`VmHWM`; goal: <= 150 MB);
- the daemon's CPU over a steady window while it probes every endpoint at 1 Hz, in % of
  one core (the window includes one resync and the periodic discoveries), then the same
  window for a second daemon with `--no-probe` on the converged account: the difference
  is probing's share (goal for 200 endpoints at 1 Hz: <= 10 % of one core);
- AWS calls of one resync pass (`read_level`: what the informer reads), by operation,
  counted through the shell's request hook in this process against the same sandbox;
  and the calls of one endpoint discovery.

The probe's `sequenceLength` defaults to 8 here (the walkthrough's is 128): the 200
model servers share this machine's 2 cores with everything else, and the figure being
measured is the controller's cost, not the encoder's.

    .venv/bin/python bench/daemon.py [--deployments 100] [--replicas 2] [--window 40] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from processes import env_for, free_port, scrape, wait_for  # noqa: E402

CLUSTER = "bench"
REGION = "us-east-1"
TICKS = os.sysconf("SC_CLK_TCK")


def write_specs(
    folder: Path, *, deployments: int, replicas: int, sequence_length: int, group_id: str
) -> None:
    cores = deployments * replicas
    instances = -(-cores // 16)
    (folder / "cluster.yaml").write_text(
        f"""apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: {CLUSTER}
spec:
  capacity:
    instanceType: inf1.6xlarge
    market: on-demand
    minInstances: 1
    maxInstances: {instances + 4}
  # A group of our own: the managed one would open one rule per deployment port, and
  # 200 ports are past the 60 rules a security group may hold.
  securityGroupIds: [{group_id}]
"""
    )
    for index in range(deployments):
        write_deployment(folder, index, replicas=replicas, sequence_length=sequence_length)


def write_deployment(folder: Path, index: int, *, replicas: int, sequence_length: int) -> None:
    name = f"m{index:03d}"
    (folder / f"{name}.yaml").write_text(
        f"""apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: {CLUSTER}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:latest
    grpcPort: {9000 + 2 * index}
    restPort: {9001 + 2 * index}
  neuronCores: 1
  replicas: {replicas}
  executionRoleArn: arn:aws:iam::123456789012:role/ecsTaskExecutionRole
  probe:
    interval: 1s
    timeout: 900ms
    sequenceLength: {sequence_length}
"""
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def services(ecs: Any, names: list[str]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for start in range(0, len(names), 10):
        response = ecs.describe_services(cluster=CLUSTER, services=names[start : start + 10])
        for raw in response["services"]:
            if raw["status"] == "ACTIVE":
                found[raw["serviceName"]] = raw
    return found


async def resync_calls(
    endpoint: str, folder: Path
) -> tuple[dict[str, int], dict[str, int], dict[str, int]]:
    """AWS calls of one informer read, of a full endpoint discovery (the daemon's first, and
    one every `discovery_full_refresh_s`), and of a steady one (the daemon's `Discoverer`
    once it knows the tasks), by operation."""
    os.environ.update(env_for(endpoint))
    from controller.aws.clients import AwsClients, RequestCounter
    from controller.aws.discovering import Discoverer
    from controller.core.endpoints import discovery_targets
    from controller.logs import configure_logging
    from controller.pipeline import AwsShell
    from controller.specs.loading import load_folder

    configure_logging(level="WARNING")  # on stderr: stdout is the figures (`--json`)
    specs = load_folder(folder).specs
    counter = RequestCounter()
    async with AwsClients(on_request=counter) as clients:
        shell = AwsShell(clients)
        await shell.read_level(specs)  # warm: the account id is asked once per process
        counter.reset()
        durations = []
        for _ in range(3):
            counter.reset()
            level = await shell.read_level(specs)
            durations.append(level.duration_s)
        read = counter.by_operation()
        read["_read_s_median"] = round(sorted(durations)[1], 3)  # type: ignore[assignment]
        targets = discovery_targets(level.desired.deployments.values())
        discoverer = Discoverer(clients)
        counter.reset()
        await discoverer.discover(targets=targets)
        full = counter.by_operation()
        counter.reset()
        await discoverer.discover(targets=targets)
        steady = counter.by_operation()
    return read, full, steady


def serve_stand_ins(count: int) -> None:
    """Child process: `count` stand-in model servers (one gRPC server, `count` ports),
    each answering at once; prints the ports, then serves until killed."""
    from concurrent import futures

    import grpc

    from controller.tfserving import serving_pb2
    from controller.tfserving.requests import STATE_AVAILABLE
    from controller.tfserving.testserver import _response

    predict = _response()
    status = serving_pb2.GetModelStatusResponse()
    status.model_version_status.add(version=1, state=STATE_AVAILABLE)
    status_bytes = status.SerializeToString()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
    server.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.PredictionService",
                {"Predict": grpc.unary_unary_rpc_method_handler(lambda data, ctx: predict)},
            ),
            grpc.method_handlers_generic_handler(
                "tensorflow.serving.ModelService",
                {
                    "GetModelStatus": grpc.unary_unary_rpc_method_handler(
                        lambda data, ctx: status_bytes
                    )
                },
            ),
        )
    )
    ports = [server.add_insecure_port("127.0.0.1:0") for _ in range(count)]
    server.start()
    print(" ".join(str(port) for port in ports), flush=True)
    server.wait_for_termination()


async def prober_cpu(ports: list[int], *, window_s: float, sequence_length: int) -> dict[str, Any]:
    """The prober alone in this process, probing every port at 1 Hz: CPU and RSS."""
    import resource

    from controller.core.endpoints import Endpoint
    from controller.core.states import ProbeSettings
    from controller.metrics import Metrics
    from controller.probing.prober import Prober

    metrics = Metrics()
    probe = ProbeSettings(
        model_name="bert",
        grpc_port=0,
        interval_s=1.0,
        timeout_s=0.9,
        sequence_length=sequence_length,
        latency_objective_s=0.1,
    )
    endpoints = [
        Endpoint(
            deployment=f"m{index // 2:03d}",
            cluster=CLUSTER,
            service=f"m{index // 2:03d}",
            task_arn=f"task-{index}",
            host="127.0.0.1",
            port=port,
            task_definition_arn="td",
            last_status="RUNNING",
        )
        for index, port in enumerate(ports)
    ]
    targets = {endpoint.deployment: probe for endpoint in endpoints}
    async with Prober(metrics=metrics) as prober:
        await prober.update(targets, endpoints)
        await asyncio.sleep(5)  # channels open, first probes spread over a second

        def used() -> float:
            usage = resource.getrusage(resource.RUSAGE_SELF)
            return usage.ru_utime + usage.ru_stime

        def successes() -> float:
            return sum(
                sample.value
                for family in metrics.registry.collect()
                if family.name == "ecsinfer_probe_latency_seconds"
                for sample in family.samples
                if sample.name.endswith("_count")
            )

        cpu, count, started = used(), successes(), time.monotonic()
        await asyncio.sleep(window_s)
        elapsed = time.monotonic() - started
        return {
            "endpoints": len(ports),
            "cpu_percent_of_one_core": round(100 * (used() - cpu) / elapsed, 1),
            "successful_probes_per_s": round((successes() - count) / elapsed, 1),
            "peak_rss_mb": round(peak_rss_mb(os.getpid()), 1),
        }


def start_daemon(
    folder: Path, address: str, endpoint: str, log: Path, *extra: str
) -> subprocess.Popen[bytes]:
    """`ecs-infer run FOLDER` with default settings (metrics on `address`, JSON logs at
    WARNING into `log`) against the sandbox at `endpoint`."""
    with log.open("wb") as output:
        return subprocess.Popen(
            [
                sys.executable,
                "-m",
                "controller",
                "--log-format",
                "json",
                "--log-level",
                "WARNING",
                "run",
                str(folder),
                "--metrics-addr",
                address,
                *extra,
            ],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=env_for(endpoint),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--deployments", type=int, default=100)
    parser.add_argument("--replicas", type=int, default=2)
    parser.add_argument("--sequence-length", type=int, default=8)
    parser.add_argument("--window", type=float, default=40.0, help="CPU window, seconds")
    parser.add_argument("--edits", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--stand-ins", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--probe-ports", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stand_ins:
        serve_stand_ins(args.stand_ins)
        return 0
    if args.probe_ports:  # a fresh process, so that its peak RSS is the prober's own
        ports = [int(port) for port in args.probe_ports.split(",")]
        alone = asyncio.run(prober_cpu(ports, window_s=args.window, sequence_length=128))
        print(json.dumps(alone))
        return 0

    work = Path(tempfile.mkdtemp(prefix="ecs-infer-bench-"))
    folder = work / "specs"
    folder.mkdir()
    aws_port = free_port()
    endpoint = f"http://127.0.0.1:{aws_port}"
    address = f"127.0.0.1:{free_port()}"
    sandbox_log = (work / "sandbox.log").open("wb")
    sandbox = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller",
            "sandbox",
            "--no-controller",
            "--aws-port",
            str(aws_port),
        ],
        stdout=sandbox_log,
        stderr=subprocess.STDOUT,
        env=env_for(endpoint),
    )
    daemon: subprocess.Popen[bytes] | None = None
    figures: dict[str, Any] = {"deployments": args.deployments, "replicas": args.replicas}
    try:
        wait_for(
            lambda: "AWS endpoint:" in (work / "sandbox.log").read_text(),
            timeout=120,
            what="the sandbox",
        )
        ec2 = boto3.client(
            "ec2",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        groups = ec2.describe_security_groups(GroupNames=["default"])["SecurityGroups"]
        write_specs(
            folder,
            deployments=args.deployments,
            replicas=args.replicas,
            sequence_length=args.sequence_length,
            group_id=groups[0]["GroupId"],
        )
        started = time.monotonic()
        daemon = start_daemon(folder, address, endpoint, work / "daemon.log")
        ecs = boto3.client(
            "ecs",
            endpoint_url=endpoint,
            region_name=REGION,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        names = [f"m{index:03d}" for index in range(args.deployments)]
        endpoints = args.deployments * args.replicas

        def converged() -> bool:
            try:
                found = services(ecs, names)
            except ecs.exceptions.ClusterNotFoundException:
                return False
            return len(found) == len(names) and all(
                s["runningCount"] == args.replicas for s in found.values()
            )

        wait_for(converged, timeout=600, what="every service running", interval=2)
        figures["first_convergence_s"] = round(time.monotonic() - started, 1)

        def probing() -> int:
            ok = sum(
                1
                for (name, _), value in scrape(address).items()
                if name == "ecsinfer_probe_success" and value == 1
            )
            return ok if ok >= endpoints else 0

        wait_for(probing, timeout=300, what=f"{endpoints} endpoints probed ok", interval=2)
        figures["all_probed_s"] = round(time.monotonic() - started, 1)

        # Steady state: CPU over a window (one resync and the discoveries included).
        before_cpu, before = cpu_seconds(daemon.pid), scrape(address)
        window_start = time.monotonic()
        time.sleep(args.window)
        after_cpu, after = cpu_seconds(daemon.pid), scrape(address)
        elapsed = time.monotonic() - window_start

        def total(samples: dict[Any, float], name: str) -> float:
            return sum(v for (n, _), v in samples.items() if n == name)

        probes = total(after, "ecsinfer_probe_latency_seconds_count") - total(
            before, "ecsinfer_probe_latency_seconds_count"
        )
        figures["steady_cpu_percent_of_one_core"] = round(
            100 * (after_cpu - before_cpu) / elapsed, 1
        )
        figures["successful_probes_per_s"] = round(probes / elapsed, 1)
        figures["aws_requests_per_min_steady"] = round(
            60
            * (
                total(after, "ecsinfer_aws_requests_total")
                - total(before, "ecsinfer_aws_requests_total")
            )
            / elapsed,
            1,
        )
        ok_now = sum(1 for (n, _), v in after.items() if n == "ecsinfer_probe_success" and v == 1)
        figures["endpoints_ok"] = ok_now

        # Edit -> service updated, with the default settings.
        latencies: list[float] = []
        for edit in range(args.edits):
            index = (edit * 37 + 11) % args.deployments
            name = f"m{index:03d}"
            wanted = args.replicas - 1
            write_deployment(folder, index, replicas=wanted, sequence_length=args.sequence_length)
            edited = time.monotonic()

            def updated(name: str = name, wanted: int = wanted) -> bool:
                found = ecs.describe_services(cluster=CLUSTER, services=[name])["services"]
                return bool(found) and found[0]["desiredCount"] == wanted

            wait_for(updated, timeout=60, what=f"{name} updated", interval=0.05)
            latencies.append(time.monotonic() - edited)
            time.sleep(1.0)
        figures["edit_to_update_s"] = {
            "each": [round(value, 2) for value in latencies],
            "median": round(statistics.median(latencies), 2),
            "max": round(max(latencies), 2),
        }
        figures["peak_rss_mb"] = round(peak_rss_mb(daemon.pid), 1)

        read, full, steady = asyncio.run(resync_calls(endpoint, folder))
        read_s = read.pop("_read_s_median")
        figures["aws_calls_per_resync"] = {"total": sum(read.values()), "by_operation": read}
        figures["resync_read_s_median"] = read_s
        figures["aws_calls_per_discovery"] = {
            "total": sum(steady.values()),
            "by_operation": steady,
            "full_total": sum(full.values()),
            "full_by_operation": full,
        }

        daemon.send_signal(signal.SIGTERM)
        stop_started = time.monotonic()
        code = daemon.wait(timeout=15)
        figures["sigterm"] = {
            "exit_code": code,
            "seconds": round(time.monotonic() - stop_started, 2),
        }

        # The same folder and account, reconciling only: the difference is probing's.
        daemon = start_daemon(folder, address, endpoint, work / "daemon-no-probe.log", "--no-probe")

        def ready() -> bool:
            with urllib.request.urlopen(f"http://{address}/readyz", timeout=5) as response:
                return response.status == 200

        wait_for(ready, timeout=120, what="the --no-probe daemon ready")
        time.sleep(5)
        before_cpu, window_start = cpu_seconds(daemon.pid), time.monotonic()
        time.sleep(args.window)
        reconcile_only = (
            100 * (cpu_seconds(daemon.pid) - before_cpu) / (time.monotonic() - window_start)
        )
        figures["reconcile_only_cpu_percent_of_one_core"] = round(reconcile_only, 1)
        figures["probing_cpu_percent_of_one_core"] = round(
            figures["steady_cpu_percent_of_one_core"] - reconcile_only, 1
        )
        figures["peak_rss_mb_no_probe"] = round(peak_rss_mb(daemon.pid), 1)
        daemon.send_signal(signal.SIGTERM)
        daemon.wait(timeout=15)
    finally:
        if daemon is not None and daemon.poll() is None:
            daemon.kill()
        sandbox.send_signal(signal.SIGTERM)
        try:
            sandbox.wait(timeout=30)
        except subprocess.TimeoutExpired:
            sandbox.kill()

    # The prober alone (this process) against stand-ins that always answer at once: the
    # client-side cost of probing, without the sandbox's encoder competing for the CPU.
    endpoints = args.deployments * args.replicas
    stand_ins = subprocess.Popen(
        [sys.executable, __file__, "--stand-ins", str(endpoints)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert stand_ins.stdout is not None
        ports = stand_ins.stdout.readline().split()
        alone = subprocess.run(
            [
                sys.executable,
                __file__,
                "--probe-ports",
                ",".join(ports),
                "--window",
                str(args.window / 2),
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        figures["prober_alone"] = json.loads(alone.stdout.strip().splitlines()[-1])
    finally:
        stand_ins.kill()
        stand_ins.wait()

    if args.json:
        print(json.dumps(figures, indent=2))
    else:
        print(
            f"ecs-infer run with {args.deployments} deployments x {args.replicas} replicas "
            f"({args.deployments * args.replicas} endpoints probed at 1 Hz), default settings"
        )
        print(
            f"  first convergence:        {figures['first_convergence_s']} s "
            f"(all probed ok after {figures['all_probed_s']} s)"
        )
        edit = figures["edit_to_update_s"]
        print(
            f"  spec edit -> service:     median {edit['median']} s, max {edit['max']} s "
            f"(goal <= 5 s) {edit['each']}"
        )
        print(f"  peak RSS:                 {figures['peak_rss_mb']} MB (goal <= 150 MB)")
        print(
            f"  steady CPU:               {figures['steady_cpu_percent_of_one_core']} % of "
            f"one core, {figures['successful_probes_per_s']} successful probes/s, "
            f"{figures['endpoints_ok']} endpoints ok at the end of the window"
        )
        print(
            f"  reconciling only:         {figures['reconcile_only_cpu_percent_of_one_core']} "
            f"% (--no-probe; its peak RSS {figures['peak_rss_mb_no_probe']} MB)"
        )
        print(
            f"  probing's share:          {figures['probing_cpu_percent_of_one_core']} % of one "
            "core (goal <= 10 %)"
        )
        alone = figures["prober_alone"]
        print(
            f"  prober alone:             {alone['cpu_percent_of_one_core']} % of one core "
            f"probing {alone['endpoints']} stand-in endpoints at 1 Hz (sequenceLength 128), "
            f"{alone['successful_probes_per_s']} successful probes/s, peak RSS of that "
            f"process {alone['peak_rss_mb']} MB"
        )
        print(
            f"  AWS calls per resync:     {figures['aws_calls_per_resync']['total']} "
            f"{figures['aws_calls_per_resync']['by_operation']}"
        )
        discovery = figures["aws_calls_per_discovery"]
        print(
            f"  AWS calls per discovery:  {discovery['total']} {discovery['by_operation']} "
            f"(a full one, the first and every 5 min: {discovery['full_total']} "
            f"{discovery['full_by_operation']})"
        )
        print(f"  AWS requests per minute, steady: {figures['aws_requests_per_min_steady']}")
        print(
            f"  SIGTERM:                  exit {figures['sigterm']['exit_code']} after "
            f"{figures['sigterm']['seconds']} s"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
