"""Fakes of the runner tests: specs built in code, levels with hand-made plans, and a
shell that plays AWS from a script."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from controller.core.errors import TerminalError
from controller.core.plans import Action, Plan
from controller.core.states import AccountFacts, DesiredState, LiveCluster, ObservedState
from controller.runner.reconciling import Applied, Level
from controller.specs.loading import SpecSet
from controller.specs.models import InferenceCluster, InferenceDeployment

# Spec files as a user writes them (DEPLOYMENT takes name and replicas).
CLUSTER = """\
apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: demo
spec:
  capacity:
    instanceType: inf1.xlarge
"""

DEPLOYMENT = """\
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: demo
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/bert:latest
  neuronCores: 1
  replicas: {replicas}
"""


FACTS = AccountFacts(region="us-east-1", account_id="123456789012", default_vpc_id=None)


def deployment(name: str, replicas: int = 1) -> InferenceDeployment:
    return InferenceDeployment.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceDeployment",
            "metadata": {"name": name},
            "spec": {"cluster": "demo", "model": {"image": "x"}, "replicas": replicas},
        }
    )


def specs(*names: str) -> SpecSet:
    cluster = InferenceCluster.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceCluster",
            "metadata": {"name": "demo"},
            "spec": {"capacity": {"instanceType": "inf1.xlarge"}},
        }
    )
    return SpecSet(clusters={"demo": cluster}, deployments={n: deployment(n) for n in names})


def action(key: str, *, reason: str = "missing", resource: str = "service") -> Action:
    return Action(
        verb="create" if reason == "missing" else "update",
        resource=resource,  # type: ignore[arg-type]
        id=key.rpartition("/")[2],
        reason=reason,  # type: ignore[arg-type]
        cluster="demo",
        key=key,
    )


def level(spec_set: SpecSet, *actions: Action, detected: tuple[Action, ...] = ()) -> Level:
    return Level(
        specs=spec_set,
        desired=DesiredState(clusters={}, deployments={}),
        observed=ObservedState(
            facts=FACTS,
            clusters={"demo": LiveCluster(name="demo", arn="arn", status="ACTIVE", tags={})},
            security_groups={},
            instances={},
            services={},
            task_definitions={},
        ),
        plan=Plan(actions=tuple(actions), detected_drift=detected),
        read_at=time.time(),
    )


@dataclass
class ScriptedShell:
    """Each read returns `next_level()`; applying a key's plan fails for `failing` keys
    (a transient failure) and for `refused` keys (a terminal one: access denied)."""

    next_level: Callable[[SpecSet], Level]
    failing: set[str] = field(default_factory=set)
    refused: set[str] = field(default_factory=set)
    read_delay_s: float = 0.0
    apply_delay_s: float = 0.0
    reads: int = 0
    replans: int = 0
    applied: list[str] = field(default_factory=list)

    async def read_level(self, spec_set: SpecSet) -> Level:
        self.reads += 1
        await asyncio.sleep(self.read_delay_s)
        return self.next_level(spec_set)

    async def replan(self, spec_set: SpecSet, *, level: Level) -> Level | None:
        """New specs planned against the script's world, read or not: counted apart."""
        self.replans += 1
        return self.next_level(spec_set)

    async def apply(self, plan: Plan, *, level: Level) -> Applied:
        await asyncio.sleep(self.apply_delay_s)
        key = plan.actions[0].key
        self.applied.append(key)
        if key in self.failing:
            return Applied(attempted=True, error=RuntimeError(f"{key} refused by AWS"))
        if key in self.refused:
            error = TerminalError(f"{key}: AccessDeniedException", code="AccessDeniedException")
            return Applied(attempted=True, error=error)
        return Applied(changed=plan.actions, attempted=True)
