"""Rendering the ECS task definition of an InferenceDeployment.

Owns: the `RegisterTaskDefinition` request content (botocore camelCase keys, without
`tags`: the tags are bookkeeping, see `desired`) for both runtimes, and the content hash
that identifies a revision. Must not: talk to AWS, or decide whether a revision must be
registered (that is `planning`).

`runtime: neuron-rtd` reproduces the AWS walkthrough for Inf1 on ECS field by field: a
TF Serving container and a `neuron-rtd` sidecar that share a Unix socket through a host
volume. `runtime: neuron` is the current Neuron runtime layout: one container that is
handed the instance's `/dev/neuronN` devices.

Neither layout sets `requiresCompatibilities` or `networkMode`: the walkthrough sets
neither (the task runs in `bridge` mode on EC2), and moto 5.2.5 rejects
`requiresCompatibilities: [EC2]` with a memoryReservation-only container.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from controller.catalog import shape_of
from controller.core.normalising import normalise_task_definition
from controller.specs.models import InferenceDeployment

# The walkthrough's sidecar values. The socket lives on a host path so that both
# containers of the task see the same file.
NEURON_RTD_CONTAINER = "neuron-rtd"
SOCKET_VOLUME = "sock"
SOCKET_HOST_PATH = "/tmp/sock"
SOCKET_CONTAINER_PATH = "/sock"
NEURON_RTD_ADDRESS = "unix:/sock/neuron-rtd.sock"
# The walkthrough reserves 1000 MiB for the sidecar; it is not a spec field because the
# sidecar's footprint does not depend on the model.
SIDECAR_MEMORY_RESERVATION_MIB = 1000
# neuron-rtd manages the devices itself (SYS_ADMIN) and pins memory for DMA (IPC_LOCK).
SIDECAR_CAPABILITIES = ("SYS_ADMIN", "IPC_LOCK")
# The Neuron runtime in the model container pins memory for DMA as well.
RUNTIME_CAPABILITIES = ("IPC_LOCK",)

CONTENT_HASH_LENGTH = 16


def canonical_json(value: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def short_hash(value: Any) -> str:
    """sha256 of the canonical JSON of `value`, first 16 hex characters."""
    digest = hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()
    return digest[:CONTENT_HASH_LENGTH]


def content_hash(content: Mapping[str, Any]) -> str:
    """The hash of task-definition content, taken over its normalised form.

    Hashing the normalised form means a revision read back from AWS hashes to the same
    value as the request that registered it.
    """
    return short_hash(normalise_task_definition(content))


def instance_type_constraint(instance_type: str) -> dict[str, str]:
    """Tasks run only on the cluster's instance type.

    On the task definition rather than the service: ECS honours both, and moto drops
    placement constraints given to `create_service`.
    """
    return {
        "type": "memberOf",
        "expression": f"attribute:ecs.instance-type == {instance_type}",
    }


def serving_command(deployment: InferenceDeployment) -> str:
    model = deployment.spec.model
    return (
        f"tensorflow_model_server_neuron --port={model.grpcPort} "
        f"--rest_api_port={model.restPort} --model_name={model.name} "
        f"--model_base_path={model.basePath}"
    )


def host_ports(deployment: InferenceDeployment) -> frozenset[int]:
    """The host ports one replica holds on its instance.

    hostPort = containerPort, as in the walkthrough: the probe and clients find the model
    on the instance's well-known ports. It also means two replicas holding the same port
    never share an instance, which the fleet's bin-packing takes into account.
    """
    model = deployment.spec.model
    return frozenset((model.grpcPort, model.restPort))


def _port_mappings(deployment: InferenceDeployment) -> list[dict[str, Any]]:
    return [
        {"containerPort": port, "hostPort": port, "protocol": "tcp"}
        for port in sorted(host_ports(deployment))
    ]


def _model_container(deployment: InferenceDeployment) -> dict[str, Any]:
    spec = deployment.spec
    return {
        "name": spec.model.name,
        "image": spec.model.image,
        "cpu": 0,
        "memoryReservation": spec.memoryReservation,
        "essential": True,
        "entryPoint": ["sh", "-c"],
        "command": [serving_command(deployment)],
        "portMappings": _port_mappings(deployment),
    }


def _neuron_rtd_containers(deployment: InferenceDeployment) -> list[dict[str, Any]]:
    socket_mount = {"containerPath": SOCKET_CONTAINER_PATH, "sourceVolume": SOCKET_VOLUME}
    model = _model_container(deployment)
    model["environment"] = [{"name": "NEURON_RTD_ADDRESS", "value": NEURON_RTD_ADDRESS}]
    model["mountPoints"] = [dict(socket_mount)]
    sidecar = {
        "name": NEURON_RTD_CONTAINER,
        "image": deployment.spec.sidecarImage,
        "cpu": 0,
        "memoryReservation": SIDECAR_MEMORY_RESERVATION_MIB,
        "essential": True,
        "entryPoint": ["sh", "-c"],
        "command": [f"neuron-rtd -g {NEURON_RTD_ADDRESS}"],
        "portMappings": [],
        "environment": [{"name": "AWS_NEURON_VISIBLE_DEVICES", "value": "ALL"}],
        "mountPoints": [dict(socket_mount)],
        "linuxParameters": {"capabilities": {"add": list(SIDECAR_CAPABILITIES)}},
    }
    return [model, sidecar]


def _neuron_containers(deployment: InferenceDeployment, instance_type: str) -> list[dict[str, Any]]:
    shape = shape_of(instance_type)
    model = _model_container(deployment)
    # Every device of the instance is mapped, and the runtime is told how many cores to
    # take rather than which: several replicas may share an instance, and the Neuron
    # runtime claims cores that no other process holds.
    model["environment"] = [
        {"name": "NEURON_RT_NUM_CORES", "value": str(deployment.spec.neuronCores)}
    ]
    model["linuxParameters"] = {
        "capabilities": {"add": list(RUNTIME_CAPABILITIES)},
        "devices": [
            {
                "hostPath": f"/dev/neuron{index}",
                "containerPath": f"/dev/neuron{index}",
                "permissions": ["read", "write"],
            }
            for index in range(shape.neuron_devices)
        ],
    }
    return [model]


def task_definition_content(
    deployment: InferenceDeployment, *, instance_type: str
) -> dict[str, Any]:
    """The RegisterTaskDefinition request for a deployment on `instance_type` (no tags)."""
    spec = deployment.spec
    content: dict[str, Any] = {"family": deployment.task_family}
    if spec.executionRoleArn is not None:
        content["executionRoleArn"] = spec.executionRoleArn
    if spec.runtime == "neuron-rtd":
        content["containerDefinitions"] = _neuron_rtd_containers(deployment)
        content["volumes"] = [{"name": SOCKET_VOLUME, "host": {"sourcePath": SOCKET_HOST_PATH}}]
    else:
        content["containerDefinitions"] = _neuron_containers(deployment, instance_type)
    content["placementConstraints"] = [instance_type_constraint(instance_type)]
    return content
