"""What each live task serves: the model server the data plane must run for it.

Owns: finding a task definition's gRPC container, port and model name; and, per live
task, the endpoint (its instance's address, the host port bound to that container port,
the model, its faults). A task with nothing to serve is RUNNING at once (its containers
just run). Must not: start or stop servers (the data plane's), or dial anything.

**Model servers.** A running task whose task definition maps a gRPC port serves the TF
Serving API (`modelserver`) on (its instance's address, the host port bound to that
container port). The gRPC container port is the `--port=N` of the container's command
or entryPoint (TF Serving's flag), else a port mapping with `appProtocol: grpc` or a
name containing `grpc`, else container port 8500, else the first TCP mapping. The model
name is `--model_name=X` from the command or entryPoint, else the container's
environment `MODEL_NAME`, else `bert`. The REST port is reserved on the host but not
served.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from controller.sandbox.ecs.backends import (
    ContainerDefinition,
    EcsBackend,
    Task,
    bindings_of,
    definition_of,
    short,
    tags_of,
)
from controller.sandbox.ecs.faults import faults_of
from controller.sandbox.ecs.placement import port_mappings
from controller.sandbox.ecs.tasks import all_live_tasks, mark_running

DEFAULT_MODEL_NAME = "bert"
DEFAULT_GRPC_PORT = 8500

_FLAG = re.compile(r"--(model_name|port)=(\S+)")


@dataclass(frozen=True)
class EndpointSpec:
    """What one running task serves: where, which model, with which faults."""

    task_arn: str
    service: str
    host: str
    port: int
    model_name: str
    delay_s: float
    fail: bool

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


@dataclass(frozen=True)
class GrpcContainer:
    """The container of a task definition that serves gRPC, on which port, which model."""

    name: str
    container_port: int
    model_name: str


def grpc_container(container_definitions: Sequence[ContainerDefinition]) -> GrpcContainer | None:
    """The first container with port mappings that has a gRPC port, if any."""
    for container in container_definitions:
        mappings = port_mappings(container)
        if not mappings:
            continue
        words = [str(word) for word in (container.get("entryPoint") or [])]
        words += [str(word) for word in (container.get("command") or [])]
        flags = dict(_FLAG.findall(" ".join(words)))
        ports = [int(m.get("containerPort", 0)) for m in mappings if m.get("containerPort")]
        grpc_port: int | None = None
        if flags.get("port", "").isdigit() and int(flags["port"]) in ports:
            grpc_port = int(flags["port"])
        for mapping in mappings:
            if grpc_port is None and (
                str(mapping.get("appProtocol", "")).lower() == "grpc"
                or "grpc" in str(mapping.get("name", "")).lower()
            ):
                grpc_port = int(mapping["containerPort"])
        if grpc_port is None and DEFAULT_GRPC_PORT in ports:
            grpc_port = DEFAULT_GRPC_PORT
        if grpc_port is None:
            tcp = [int(m["containerPort"]) for m in mappings if m.get("protocol", "tcp") == "tcp"]
            grpc_port = tcp[0] if tcp else None
        if grpc_port is None:
            continue
        environment = {
            item.get("name"): item.get("value") for item in container.get("environment") or []
        }
        model = flags.get("model_name") or environment.get("MODEL_NAME") or DEFAULT_MODEL_NAME
        return GrpcContainer(str(container.get("name")), grpc_port, str(model))
    return None


def _host_port(task: Task, grpc: GrpcContainer) -> int | None:
    return next(
        (
            binding["hostPort"]
            for container in task.containers
            if container.name == grpc.name
            for binding in bindings_of(container)
            if binding["containerPort"] == grpc.container_port
        ),
        None,
    )


def endpoints_of(
    ecs: EcsBackend, *, address_of: Callable[[str], str | None]
) -> dict[str, EndpointSpec]:
    """The endpoint of every live task that serves a model, by task ARN."""
    endpoints: dict[str, EndpointSpec] = {}
    for task in all_live_tasks(ecs):
        definition = definition_of(ecs, task.task_definition_arn)
        container_instance = ecs.container_instances.get(task.cluster_name, {}).get(
            short(task.container_instance_arn or "")
        )
        if definition is None or container_instance is None:
            continue
        host = address_of(container_instance.ec2_instance_id)
        grpc = grpc_container(definition.container_definitions)
        if host is None:
            continue
        if grpc is None:  # nothing to serve: the containers just run
            mark_running(task)
            continue
        port = _host_port(task, grpc)
        if port is None:
            continue
        faults = faults_of(tags_of(task))
        endpoints[task.task_arn] = EndpointSpec(
            task_arn=task.task_arn,
            service=task.group.removeprefix("service:"),
            host=host,
            port=int(port),
            model_name=grpc.model_name,
            delay_s=faults.delay_s,
            fail=faults.fail,
        )
    return endpoints
