"""Helpers for the AWS shell's tests: the walkthrough's specs, and a fault-injecting
front for the emulator.

The fault front is the WSGI middleware of the moto notes: a second werkzeug server in
this process, over the same moto backends, that answers chosen operations with a
throttling (or any other) error a given number of times before passing requests on.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

from moto.core import DEFAULT_ACCOUNT_ID
from moto.ecs.models import ecs_backends
from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

from controller.sandbox.emulator import BACKEND_LOCK, REGION
from controller.settings import AwsSettings
from controller.specs.loading import SpecSet
from controller.specs.models import InferenceCluster, InferenceDeployment

# One attempt per call: a failure shows at once (the retry tests build their own).
NO_RETRIES = AwsSettings(max_attempts=1, connect_timeout_s=5, read_timeout_s=30)
ACCOUNT = "123456789012"
CLUSTER = "ecs-inf1-demo"
SERVICE = "bert-inf1"
FAMILY = "ecs-neuron"
IMAGE = "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-inf1-demo:latest"
EXECUTION_ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"
INF1_AMI_PARAMETER = "/aws/service/ecs/optimized-ami/amazon-linux-2/inf/recommended/image_id"


def cluster_spec(name: str = CLUSTER, **spec: Any) -> InferenceCluster:
    body: dict[str, Any] = {
        "capacity": {
            "instanceType": "inf1.xlarge",
            "market": "spot",
            "onDemandFallback": True,
            "minInstances": 2,
            "maxInstances": 10,
        },
        "ami": "auto",
        "instanceProfile": "ecsInstanceRole",
        "keyName": "admin",
    }
    body.update(spec)
    return InferenceCluster.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceCluster",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def deployment_spec(
    name: str = "bert",
    *,
    cluster: str = CLUSTER,
    service: str | None = SERVICE,
    family: str | None = FAMILY,
    replicas: int = 1,
    **spec: Any,
) -> InferenceDeployment:
    body: dict[str, Any] = {
        "cluster": cluster,
        "model": {
            "name": "bert",
            "image": IMAGE,
            "basePath": "/bert/",
            "grpcPort": 8500,
            "restPort": 8501,
        },
        "neuronCores": 4,
        "replicas": replicas,
        "runtime": "neuron-rtd",
        "executionRoleArn": EXECUTION_ROLE,
        "memoryReservation": 1000,
    }
    if service is not None:
        body["serviceName"] = service
    if family is not None:
        body["taskFamily"] = family
    body.update(spec)
    return InferenceDeployment.model_validate(
        {
            "apiVersion": "ecs-infer/v1",
            "kind": "InferenceDeployment",
            "metadata": {"name": name},
            "spec": body,
        }
    )


def demo_specs(*, replicas: int = 1) -> SpecSet:
    """specs/ecs-inf1-demo.yaml, written out: the walkthrough as specs."""
    cluster = cluster_spec()
    deployment = deployment_spec(replicas=replicas)
    return SpecSet(
        clusters={cluster.metadata.name: cluster},
        deployments={deployment.metadata.name: deployment},
    )


def many_specs(count: int, *, cluster: str = CLUSTER, max_instances: int = 1000) -> SpecSet:
    """`count` small deployments (1 NeuronCore each, default names) in one cluster."""
    spec = cluster_spec(
        cluster,
        capacity={
            "instanceType": "inf1.xlarge",
            "market": "spot",
            "onDemandFallback": True,
            "minInstances": 1,
            "maxInstances": max_instances,
        },
    )
    deployments = {
        f"model-{index:03d}": deployment_spec(
            f"model-{index:03d}", cluster=cluster, service=None, family=None, neuronCores=1
        )
        for index in range(count)
    }
    return SpecSet(clusters={cluster: spec}, deployments=deployments)


# --- fault injection --------------------------------------------------------------------

JSON_THROTTLE = (
    "400 Bad Request",
    {"__type": "ThrottlingException", "message": "Rate exceeded"},
)


def _query_error(code: str, message: str) -> bytes:
    return (
        f"<Response><Errors><Error><Code>{code}</Code><Message>{message}</Message>"
        "</Error></Errors><RequestID>fault</RequestID></Response>"
    ).encode()


@dataclass
class Fault:
    status: str
    code: str
    message: str = "injected"
    times: int = 1
    # Only requests whose decoded body contains this string (None = any).
    when: str | None = None


@dataclass
class Faults:
    """WSGI middleware: answer planned operations with an error, `times` times each."""

    app: Callable[..., Iterable[bytes]]
    plan: dict[str, list[Fault]] = field(default_factory=dict)
    seen: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, operation: str, fault: Fault) -> None:
        with self.lock:
            self.plan.setdefault(operation, []).append(fault)

    def __call__(self, env: dict[str, Any], start: Callable[..., Any]) -> Iterable[bytes]:
        body = env["wsgi.input"].read(int(env.get("CONTENT_LENGTH") or 0))
        env["wsgi.input"] = io.BytesIO(body)
        target = env.get("HTTP_X_AMZ_TARGET", "")
        query = target == ""
        operation = target.rpartition(".")[2]
        if query:
            operation = parse_qs(body.decode(errors="replace")).get("Action", [""])[0]
        fault = self._take(operation, body.decode(errors="replace"))
        self.seen.append(operation)
        if fault is None:
            return self.app(env, start)
        if query:
            payload = _query_error(fault.code, fault.message)
            content_type = "text/xml"
        else:
            payload = json.dumps({"__type": fault.code, "message": fault.message}).encode()
            content_type = "application/x-amz-json-1.1"
        start(fault.status, [("Content-Type", content_type), ("Content-Length", str(len(payload)))])
        return [payload]

    def _take(self, operation: str, body: str) -> Fault | None:
        with self.lock:
            for fault in self.plan.get(operation, []):
                if fault.times > 0 and (fault.when is None or fault.when in body):
                    fault.times -= 1
                    return fault
        return None


@contextmanager
def fault_front() -> Iterator[tuple[str, Faults]]:
    """A loopback endpoint over the emulator's backends that injects `Faults`."""
    faults = Faults(DomainDispatcherApplication(create_backend_app))
    server = make_server("127.0.0.1", 0, faults, threaded=True, request_handler=MotoRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}", faults
    finally:
        server.shutdown()
        thread.join(timeout=5)


def tags_of(items: Iterable[Mapping[str, Any]] | None, *, key: str = "key") -> dict[str, str]:
    value = "value" if key == "key" else "Value"
    return {item[key]: item.get(value, "") for item in items or ()}


def settle_service(
    cluster: str = CLUSTER,
    name: str = SERVICE,
    *,
    rollout: str = "COMPLETED",
    task_definition: str | None = None,
) -> None:
    """Play ECS's scheduler on moto's service object: all tasks running, rollout done."""
    with BACKEND_LOCK:
        service = ecs_backends[DEFAULT_ACCOUNT_ID][REGION].services[f"{cluster}:{name}"]
        service.running_count = service.desired_count
        service.pending_count = 0
        deployment = service.deployments[0]
        deployment["runningCount"] = service.desired_count
        deployment["pendingCount"] = 0
        deployment["rolloutState"] = rollout
        if task_definition is not None:
            deployment["taskDefinition"] = task_definition
