"""Benchmark of the pure core: desired state and planning for 1000 deployments.

Run: `.venv/bin/python bench/plan_core.py [--deployments N] [--repeat R]`. Prints the
best of R runs, in milliseconds, for: building the desired state from specs; planning
from an empty account; planning an account that is already in sync (the daemon's
steady state, which must also read no task-definition family).

Pure: no AWS, no emulator. The "in sync" account is built by applying the plan from
empty to the in-memory model of AWS the core's tests use.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "core"))

from core_builders import (  # noqa: E402
    FACTS,
    apply_to_model,
    cluster,
    deployment,
    empty_observed,
    specs,
    view,
)

from controller.core.desired import desired_state  # noqa: E402
from controller.core.planning import families_to_read, plan  # noqa: E402
from controller.specs.loading import SpecSet  # noqa: E402

T = TypeVar("T")


def build_specs(count: int) -> SpecSet:
    """`count` deployments over ten clusters, both runtimes, varied cores and replicas."""
    clusters = [
        cluster(
            f"cluster-{n}",
            capacity={"instanceType": "inf1.24xlarge", "maxInstances": 1000},
        )
        for n in range(10)
    ]
    deployments = [
        deployment(
            f"model-{n:04d}",
            cluster=f"cluster-{n % 10}",
            model={"name": f"model{n}"},
            neuronCores=1 + n % 4,
            replicas=1 + n % 3,
            runtime="neuron" if n % 2 else "neuron-rtd",
        )
        for n in range(count)
    ]
    return specs(*clusters, *deployments)


def best_of(repeat: int, work: Callable[[], T]) -> tuple[float, T]:
    best = float("inf")
    result: T | None = None
    for _ in range(repeat):
        started = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - started)
    assert result is not None
    return best * 1000, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deployments", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=5)
    arguments = parser.parse_args()

    spec_set = build_specs(arguments.deployments)
    desired_ms, desired = best_of(arguments.repeat, lambda: desired_state(spec_set, FACTS))

    empty = empty_observed()
    empty_ms, from_empty = best_of(arguments.repeat, lambda: plan(desired, empty))
    in_sync = apply_to_model(from_empty, empty)

    def plan_in_sync() -> tuple[set[str], int]:
        unread = view(in_sync, ())
        families = families_to_read(desired, unread)
        return families, len(plan(desired, view(in_sync, families)).actions)

    sync_ms, (families, actions) = best_of(arguments.repeat, plan_in_sync)

    print(f"deployments            {arguments.deployments}")
    print(f"desired_state          {desired_ms:8.1f} ms")
    print(f"plan from empty        {empty_ms:8.1f} ms  ({len(from_empty.actions)} actions)")
    print(
        f"plan in sync           {sync_ms:8.1f} ms  ({actions} actions, "
        f"{len(families)} families read)"
    )


if __name__ == "__main__":
    main()
