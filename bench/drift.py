"""Seconds from an out-of-band change to the drift being seen and corrected.

Starts `ecs-infer sandbox --no-controller` and `ecs-infer run` (default settings: a
30 s resync; only the metrics port chosen, and `--events`) as two processes on
loopback, on a folder of two clusters: `enf` (driftPolicy enforce) and `det` (detect),
each with two deployments (`<cluster>-count`, `<cluster>-gone`). Each trial makes, at
one moment and with boto3 as an operator would, three changes per cluster:

- the desired count of `<cluster>-count` set to 2;
- the service of `<cluster>-gone` deleted;
- one instance of the cluster terminated.

and times, from that moment: under `detect`, until the drift gauge is 1
(`ecsinfer_drift{deployment,resource="service"}`, `ecsinfer_cluster_drift{cluster,
resource="instance"}`); under `enforce`, until AWS is corrected (the desired count back
at 1, the service ACTIVE again, the cluster's instances back to their number). Then
the detect cluster is put right (its specs switched to enforce until it converged, and
back), everything settles, and the next trial starts at a random phase of the resync.

Run once with `--events off` and once with `--events auto` (the anchors: Argo CD sees
drift within 3 minutes, Flux in 60 s or more, the ACK ECS controller in 10 hours; the
goals: <= 30 s, one resync, without events, and a median <= 5 s with them).

    .venv/bin/python bench/drift.py [--events off|auto] [--trials 10] [--json]
"""

from __future__ import annotations

import argparse
import json
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from processes import REGION, env_for, free_port, scrape, wait_for

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = {"enf": "enforce", "det": "detect"}
INSTANCES = 1  # per cluster: two 1-core deployments on distinct ports share one inf1.xlarge
KINDS = ("desired count", "service deleted", "instance terminated")
RESYNC_S = 30.0  # the daemon's default resync interval


def wait(check: Callable[[], Any], *, timeout: float, what: str) -> Any:
    return wait_for(
        check, timeout=timeout, what=what, interval=0.1, retry_on=(OSError, KeyError, ValueError)
    )


def write_specs(folder: Path, *, detect_policy: str) -> None:
    for index, (cluster, policy) in enumerate(CLUSTERS.items()):
        policy = detect_policy if policy == "detect" else policy
        (folder / f"{cluster}.yaml").write_text(
            f"""apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: {cluster}
spec:
  capacity:
    instanceType: inf1.xlarge
    market: on-demand
    minInstances: {INSTANCES}
    maxInstances: 4
  driftPolicy: {policy}
"""
        )
        for offset, role in enumerate(("count", "gone")):
            name = f"{cluster}-{role}"
            port = 8600 + 10 * index + 2 * offset
            (folder / f"{name}.yaml").write_text(
                f"""apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: {cluster}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/bert:latest
    grpcPort: {port}
    restPort: {port + 1}
  neuronCores: 1
  replicas: 1
  executionRoleArn: arn:aws:iam::123456789012:role/ecsTaskExecutionRole
  driftPolicy: {policy}
  probe:
    interval: 5s
    timeout: 2s
    sequenceLength: 4
"""
            )


class Account:
    def __init__(self, endpoint: str) -> None:
        def client(service: str) -> Any:
            return boto3.client(
                service,
                endpoint_url=endpoint,
                region_name=REGION,
                aws_access_key_id="testing",
                aws_secret_access_key="testing",
            )

        self.ecs, self.ec2 = client("ecs"), client("ec2")

    def service(self, cluster: str, name: str) -> dict[str, Any] | None:
        found = self.ecs.describe_services(cluster=cluster, services=[name])["services"]
        active = [s for s in found if s["status"] == "ACTIVE"]
        return active[0] if active else None

    def alive(self, cluster: str) -> list[str]:
        reservations = self.ec2.describe_instances(
            Filters=[
                {"Name": "tag:ecs-infer:cluster", "Values": [cluster]},
                {"Name": "instance-state-name", "Values": ["pending", "running"]},
            ]
        )["Reservations"]
        return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def gauge(samples: dict[Any, float], name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def settled(account: Account, address: str) -> bool:
    samples = scrape(address)
    drifting = any(
        value
        for (name, _), value in samples.items()
        if name in ("ecsinfer_drift", "ecsinfer_cluster_drift")
    )
    if drifting:
        return False
    for cluster in CLUSTERS:
        if len(account.alive(cluster)) != INSTANCES:
            return False
        for role in ("count", "gone"):
            live = account.service(cluster, f"{cluster}-{role}")
            if live is None or live["desiredCount"] != 1 or live["runningCount"] != 1:
                return False
    return True


def trial(account: Account, address: str) -> dict[str, dict[str, float]]:
    """One trial: the six changes at once, then seconds until each is seen / corrected."""
    victims = {cluster: account.alive(cluster)[0] for cluster in CLUSTERS}
    started = time.monotonic()
    for cluster in CLUSTERS:
        account.ecs.update_service(cluster=cluster, service=f"{cluster}-count", desiredCount=2)
        account.ecs.delete_service(cluster=cluster, service=f"{cluster}-gone", force=True)
    account.ec2.terminate_instances(InstanceIds=list(victims.values()))

    def seen_detect() -> dict[str, bool]:
        samples = scrape(address)
        return {
            "desired count": gauge(
                samples, "ecsinfer_drift", deployment="det-count", resource="service"
            )
            == 1,
            "service deleted": gauge(
                samples, "ecsinfer_drift", deployment="det-gone", resource="service"
            )
            == 1,
            "instance terminated": gauge(
                samples, "ecsinfer_cluster_drift", cluster="det", resource="instance"
            )
            == 1,
        }

    def corrected_enforce() -> dict[str, bool]:
        count = account.service("enf", "enf-count")
        alive = account.alive("enf")
        return {
            "desired count": count is not None and count["desiredCount"] == 1,
            "service deleted": account.service("enf", "enf-gone") is not None,
            "instance terminated": len(alive) == INSTANCES and victims["enf"] not in alive,
        }

    times: dict[str, dict[str, float]] = {"detect": {}, "enforce": {}}
    deadline = started + 120
    while time.monotonic() < deadline and (
        len(times["detect"]) < len(KINDS) or len(times["enforce"]) < len(KINDS)
    ):
        now = time.monotonic() - started
        for kind, done in seen_detect().items():
            if done and kind not in times["detect"]:
                times["detect"][kind] = now
        for kind, done in corrected_enforce().items():
            if done and kind not in times["enforce"]:
                times["enforce"][kind] = now
        time.sleep(0.1)
    return times


def put_right(account: Account, address: str, folder: Path) -> None:
    """The detect cluster back in shape: its specs on enforce until it converged, then
    back on detect; then every gauge at 0."""
    account.ecs.update_service(cluster="det", service="det-count", desiredCount=1)
    write_specs(folder, detect_policy="enforce")
    wait(lambda: settled(account, address), timeout=180, what="the account put right")
    write_specs(folder, detect_policy="detect")
    time.sleep(2.0)  # the folder reloaded on detect
    wait(lambda: settled(account, address), timeout=60, what="everything settled")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", choices=("off", "auto"), default="off")
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="ecs-infer-drift-"))
    folder = work / "specs"
    folder.mkdir()
    write_specs(folder, detect_policy="detect")
    port, address = free_port(), f"127.0.0.1:{free_port()}"
    endpoint = f"http://127.0.0.1:{port}"
    env = env_for(endpoint)
    python = [sys.executable, "-m", "controller"]
    sandbox_log, daemon_log = (work / "sandbox.log").open("wb"), (work / "daemon.log").open("wb")
    sandbox = subprocess.Popen(
        [*python, "sandbox", "--no-controller", "--aws-port", str(port)],
        stdout=sandbox_log,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=ROOT,
    )
    daemon: subprocess.Popen[bytes] | None = None
    try:
        wait(
            lambda: "AWS endpoint:" in (work / "sandbox.log").read_text(),
            timeout=120,
            what="the sandbox",
        )
        daemon = subprocess.Popen(
            [*python, "run", str(folder), "--metrics-addr", address, "--events", args.events],
            stdout=daemon_log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=ROOT,
        )
        account = Account(endpoint)
        wait(lambda: settled(account, address), timeout=240, what="the first convergence")
        results: list[dict[str, dict[str, float]]] = []
        for number in range(args.trials):
            # A random phase of the resync: put right ends just after a read of AWS.
            time.sleep(random.uniform(0, RESYNC_S if args.events == "off" else 5))
            results.append(trial(account, address))
            if not args.json:
                print(f"trial {number + 1}: {json.dumps(results[-1])}", file=sys.stderr)
            put_right(account, address, folder)
    finally:
        for process in (daemon, sandbox):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGTERM)
                try:
                    process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    process.kill()

    summary: dict[str, Any] = {"events": args.events, "trials": args.trials, "seconds": {}}
    for policy in ("detect", "enforce"):
        for kind in KINDS:
            values = sorted(r[policy][kind] for r in results if kind in r[policy])
            summary["seconds"][f"{policy}: {kind}"] = {
                "median": round(statistics.median(values), 2) if values else None,
                "min": round(values[0], 2) if values else None,
                "max": round(values[-1], 2) if values else None,
                "missed": args.trials - len(values),
            }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"events {args.events}, {args.trials} trials: seconds from the change")
        for what, figures in summary["seconds"].items():
            print(
                f"  {what:32} median {figures['median']}  (min {figures['min']}, "
                f"max {figures['max']}, missed {figures['missed']})"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
