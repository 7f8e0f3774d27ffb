"""AWS calls per reconcile pass, by operation: a cold converge and a no-op pass.

Starts the sandbox's AWS emulator (moto on 127.0.0.1), then for each deployment count
(one cluster, deployments of 1 NeuronCore each, so one inf1.xlarge per 4 deployments)
runs, on a fresh account:

- a cold converge: one `reconcile_pass(apply=True)` from nothing;
- a no-op pass: the same pass again, which must find nothing to do.

and prints the requests each pass sent, per operation (retries included: every HTTP
request counts, as it does against AWS's rate limits), from the shell's request hook.

Goal (issue 2): the no-op pass over 100 deployments takes <= 25 calls and no writes.
Exit code 1 when the goal is missed. Usage:

    .venv/bin/python bench/api_calls.py [--counts 10 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import structlog  # noqa: E402

from controller.aws.clients import AwsClients, RequestCounter  # noqa: E402
from controller.pipeline import reconcile_pass  # noqa: E402
from controller.sandbox.emulator import REGION, start_emulator  # noqa: E402
from controller.settings import AwsSettings  # noqa: E402
from controller.specs.loading import SpecSet  # noqa: E402
from controller.specs.models import InferenceCluster, InferenceDeployment  # noqa: E402

NOOP_GOAL_CALLS = 25
CLUSTER = "bench"


def specs_for(count: int) -> SpecSet:
    cluster = InferenceCluster.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceCluster",
            "metadata": {"name": CLUSTER},
            "spec": {
                "capacity": {
                    "instanceType": "inf1.xlarge",
                    "market": "spot",
                    "minInstances": 1,
                    "maxInstances": 1000,
                },
                "keyName": "admin",
            },
        }
    )
    deployments = {}
    for index in range(count):
        name = f"model-{index:03d}"
        deployments[name] = InferenceDeployment.model_validate(
            {
                "apiVersion": "ecs-infer/v1",
                "kind": "InferenceDeployment",
                "metadata": {"name": name},
                "spec": {
                    "cluster": CLUSTER,
                    "model": {"image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/m:1"},
                    "neuronCores": 1,
                    "replicas": 1,
                    "executionRoleArn": "arn:aws:iam::123456789012:role/ecsTaskExecutionRole",
                },
            }
        )
    return SpecSet(clusters={CLUSTER: cluster}, deployments=deployments)


def summary(counter: RequestCounter, *, seconds: float, actions: int) -> dict[str, Any]:
    return {
        "calls": counter.total,
        "writes": sum(counter.writes().values()),
        "actions": actions,
        "seconds": round(seconds, 2),
        "by_operation": counter.by_operation(),
    }


async def measure(count: int, endpoint: str) -> dict[str, Any]:
    counter = RequestCounter()
    settings = AwsSettings(endpoint_url=endpoint, region=REGION, max_attempts=1)
    specs = specs_for(count)
    result: dict[str, Any] = {"deployments": count}
    async with AwsClients(settings=settings, on_request=counter) as clients:
        for phase in ("cold", "noop"):
            counter.reset()
            started = time.monotonic()
            outcome = await reconcile_pass(specs, clients=clients, apply=True)
            if outcome.report is not None:
                outcome.report.raise_for_error()
            result[phase] = summary(
                counter, seconds=time.monotonic() - started, actions=len(outcome.plan.actions)
            )
    return result


def print_table(results: list[dict[str, Any]]) -> None:
    for result in results:
        for phase, title in (("cold", "cold converge"), ("noop", "no-op pass")):
            data = result[phase]
            print(
                f"\n{result['deployments']} deployments, {title}: {data['calls']} calls "
                f"({data['writes']} writes), {data['actions']} actions, {data['seconds']} s"
            )
            for operation, calls in data["by_operation"].items():
                print(f"  {operation:<40} {calls:>5}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--counts", type=int, nargs="+", default=[10, 100])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args()

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": REGION,
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_PROFILE", None)

    emulator = start_emulator()
    try:
        results = []
        for count in args.counts:
            emulator.reset()
            results.append(asyncio.run(measure(count, emulator.endpoint)))
    finally:
        emulator.stop()

    if args.json:
        print(json.dumps({"goal_noop_calls": NOOP_GOAL_CALLS, "results": results}, indent=2))
    else:
        print_table(results)
    missed = [
        r
        for r in results
        if r["deployments"] <= 100
        and (r["noop"]["calls"] > NOOP_GOAL_CALLS or r["noop"]["writes"] or r["noop"]["actions"])
    ]
    if missed:
        print(f"\nGOAL MISSED: a no-op pass must take <= {NOOP_GOAL_CALLS} calls and no writes")
        return 1
    print(f"\ngoal met: no-op passes took <= {NOOP_GOAL_CALLS} calls and no writes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
