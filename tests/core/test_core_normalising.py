"""Normalising task definitions: what ECS and moto fill in is never drift."""

from __future__ import annotations

import copy
import datetime
from typing import Any

import pytest
from core_builders import EXECUTION_ROLE, IMAGE, deployment, walkthrough_deployment

from controller.core.normalising import normalise_task_definition, same_content
from controller.core.taskdefs import content_hash, task_definition_content
from controller.sandbox.emulator import Emulator

SERVING = (
    "tensorflow_model_server_neuron --port=8500 --rest_api_port=8501 "
    "--model_name=bert --model_base_path=/bert/"
)
SIDECAR_IMAGE = "790709498068.dkr.ecr.us-east-1.amazonaws.com/neuron-rtd:latest"

# What real ECS answers to DescribeTaskDefinition for the walkthrough's registration
# (shape of a real response: AWS's own fields, `volumesFrom: []`, `systemControls: []`,
# no `networkMode` for a bridge-mode EC2 revision, the sidecar listed first here).
REAL_ECS_WALKTHROUGH: dict[str, Any] = {
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/ecs-neuron:3",
    "containerDefinitions": [
        {
            "name": "neuron-rtd",
            "image": SIDECAR_IMAGE,
            "cpu": 0,
            "memoryReservation": 1000,
            "links": [],
            "portMappings": [],
            "essential": True,
            "entryPoint": ["sh", "-c"],
            "command": ["neuron-rtd -g unix:/sock/neuron-rtd.sock"],
            "environment": [{"name": "AWS_NEURON_VISIBLE_DEVICES", "value": "ALL"}],
            "environmentFiles": [],
            "mountPoints": [{"sourceVolume": "sock", "containerPath": "/sock"}],
            "volumesFrom": [],
            "linuxParameters": {
                "capabilities": {"add": ["IPC_LOCK", "SYS_ADMIN"], "drop": []},
                "devices": [],
                "tmpfs": [],
            },
            "secrets": [],
            "dnsServers": [],
            "dnsSearchDomains": [],
            "extraHosts": [],
            "dockerSecurityOptions": [],
            "dockerLabels": {},
            "ulimits": [],
            "systemControls": [],
            "credentialSpecs": [],
        },
        {
            "name": "bert",
            "image": IMAGE,
            "cpu": 0,
            "memoryReservation": 1000,
            "portMappings": [
                {"containerPort": 8501, "hostPort": 8501, "protocol": "tcp"},
                {"containerPort": 8500, "hostPort": 8500, "protocol": "tcp"},
            ],
            "essential": True,
            "entryPoint": ["sh", "-c"],
            "command": [SERVING],
            "environment": [{"name": "NEURON_RTD_ADDRESS", "value": "unix:/sock/neuron-rtd.sock"}],
            "mountPoints": [{"sourceVolume": "sock", "containerPath": "/sock", "readOnly": False}],
            "volumesFrom": [],
            "systemControls": [],
        },
    ],
    "family": "ecs-neuron",
    "executionRoleArn": EXECUTION_ROLE,
    "revision": 3,
    "volumes": [{"name": "sock", "host": {"sourcePath": "/tmp/sock"}}],
    "status": "ACTIVE",
    "requiresAttributes": [
        {"name": "com.amazonaws.ecs.capability.ecr-auth"},
        {"name": "ecs.capability.execution-role-ecr-pull"},
        {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.18"},
        {"name": "com.amazonaws.ecs.capability.docker-remote-api.1.25"},
    ],
    "placementConstraints": [
        {"type": "memberOf", "expression": "attribute:ecs.instance-type == inf1.xlarge"}
    ],
    "compatibilities": ["EXTERNAL", "EC2"],
    "registeredAt": datetime.datetime(2026, 11, 25, 4, 0, tzinfo=datetime.UTC),
    "registeredBy": "arn:aws:iam::123456789012:user/admin",
}

# What moto 5.2.5 answers for the same registration (captured from the emulator):
# `networkMode: bridge`, `compatibilities: [EC2]`, `volumesFrom: []` on every
# container, `mountPoints: []` and `volumes: []` when there are none.
MOTO_NEURON_RUNTIME: dict[str, Any] = {
    "taskDefinitionArn": "arn:aws:ecs:us-east-1:123456789012:task-definition/bert:1",
    "containerDefinitions": [
        {
            "name": "bert",
            "image": IMAGE,
            "cpu": 0,
            "memoryReservation": 1000,
            "portMappings": [
                {"containerPort": 8500, "hostPort": 8500, "protocol": "tcp"},
                {"containerPort": 8501, "hostPort": 8501, "protocol": "tcp"},
            ],
            "essential": True,
            "entryPoint": ["sh", "-c"],
            "command": [SERVING],
            "environment": [{"name": "NEURON_RT_NUM_CORES", "value": "1"}],
            "mountPoints": [],
            "volumesFrom": [],
            "linuxParameters": {
                "capabilities": {"add": ["IPC_LOCK"]},
                "devices": [
                    {
                        "hostPath": "/dev/neuron0",
                        "containerPath": "/dev/neuron0",
                        "permissions": ["read", "write"],
                    }
                ],
            },
        }
    ],
    "family": "bert",
    "networkMode": "bridge",
    "revision": 1,
    "volumes": [],
    "status": "ACTIVE",
    "placementConstraints": [
        {"type": "memberOf", "expression": "attribute:ecs.instance-type == inf1.xlarge"}
    ],
    "compatibilities": ["EC2"],
}


def test_a_real_ecs_response_normalises_to_the_walkthrough_request() -> None:
    request = task_definition_content(walkthrough_deployment(), instance_type="inf1.xlarge")

    assert normalise_task_definition(REAL_ECS_WALKTHROUGH) == normalise_task_definition(request)
    assert content_hash(REAL_ECS_WALKTHROUGH) == content_hash(request)


def test_a_moto_response_normalises_to_the_neuron_runtime_request() -> None:
    request = task_definition_content(deployment("bert"), instance_type="inf1.xlarge")

    assert same_content(MOTO_NEURON_RUNTIME, request)


def test_the_canonical_form_is_minimal() -> None:
    canonical = normalise_task_definition(REAL_ECS_WALKTHROUGH)

    assert set(canonical) == {
        "family",
        "executionRoleArn",
        "containerDefinitions",
        "volumes",
        "placementConstraints",
    }
    bert, sidecar = canonical["containerDefinitions"]  # sorted by name
    assert (bert["name"], sidecar["name"]) == ("bert", "neuron-rtd")
    assert "cpu" not in bert and "essential" not in bert and "volumesFrom" not in bert
    assert bert["mountPoints"] == [{"containerPath": "/sock", "sourceVolume": "sock"}]
    assert [p["containerPort"] for p in bert["portMappings"]] == [8500, 8501]
    assert all("protocol" not in p for p in bert["portMappings"])
    assert sidecar["linuxParameters"] == {"capabilities": {"add": ["IPC_LOCK", "SYS_ADMIN"]}}


def test_normalising_is_idempotent() -> None:
    once = normalise_task_definition(REAL_ECS_WALKTHROUGH)
    assert normalise_task_definition(once) == once


def _changed(path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(REAL_ECS_WALKTHROUGH)
    target: Any = changed
    for step in path[:-1]:
        target = target[step]
    target[path[-1]] = value
    return changed


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("networkMode",), "bridge"),
        (("requiresCompatibilities",), []),
        (("containerDefinitions", 1, "cpu"), 0),
        (("containerDefinitions", 1, "essential"), True),
        (("containerDefinitions", 1, "links"), []),
        (("containerDefinitions", 1, "dockerLabels"), {}),
        (("containerDefinitions", 1, "portMappings", 0, "protocol"), "tcp"),
        (("containerDefinitions", 1, "mountPoints", 0, "readOnly"), False),
        (
            ("containerDefinitions", 0, "environment"),
            [{"value": "ALL", "name": "AWS_NEURON_VISIBLE_DEVICES"}],
        ),
        (
            ("containerDefinitions", 0, "linuxParameters", "capabilities", "add"),
            ["SYS_ADMIN", "IPC_LOCK"],
        ),
        (("deregisteredAt",), datetime.datetime(2026, 11, 26, tzinfo=datetime.UTC)),
        (("status",), "INACTIVE"),
        (("revision",), 9),
    ],
)
def test_aws_defaults_and_bookkeeping_are_not_drift(path: tuple[Any, ...], value: Any) -> None:
    assert same_content(_changed(path, value), REAL_ECS_WALKTHROUGH)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("networkMode",), "host"),
        (("containerDefinitions", 1, "cpu"), 512),
        (("containerDefinitions", 1, "essential"), False),
        (("containerDefinitions", 1, "image"), "example.com/other:1"),
        (("containerDefinitions", 1, "command"), ["tensorflow_model_server_neuron"]),
        (("containerDefinitions", 1, "portMappings", 0, "protocol"), "udp"),
        (("containerDefinitions", 1, "mountPoints", 0, "readOnly"), True),
        (("containerDefinitions", 0, "environment"), []),
        (("containerDefinitions", 0, "linuxParameters", "capabilities", "add"), ["SYS_ADMIN"]),
        (("containerDefinitions", 0, "privileged"), True),
        (("volumes",), []),
        (("placementConstraints",), []),
        (("taskRoleArn",), "arn:aws:iam::123456789012:role/other"),
    ],
)
def test_real_changes_are_drift(path: tuple[Any, ...], value: Any) -> None:
    assert not same_content(_changed(path, value), REAL_ECS_WALKTHROUGH)


def test_entry_point_and_command_order_matters() -> None:
    reordered = _changed(("containerDefinitions", 1, "entryPoint"), ["-c", "sh"])
    assert not same_content(reordered, REAL_ECS_WALKTHROUGH)


@pytest.mark.parametrize("runtime", ["neuron-rtd", "neuron"])
def test_what_moto_stores_normalises_to_what_we_register(aws: Emulator, runtime: str) -> None:
    """Ring 2 check of the fixture above: register through moto and read it back."""
    request = task_definition_content(
        deployment("bert", runtime=runtime, executionRoleArn=EXECUTION_ROLE),
        instance_type="inf1.6xlarge",
    )
    ecs = aws.boto3_client("ecs")
    ecs.register_task_definition(**request, tags=[{"key": "ecs-infer:managed-by", "value": "x"}])
    described = ecs.describe_task_definition(taskDefinition="bert")["taskDefinition"]

    assert normalise_task_definition(described) == normalise_task_definition(request)
    assert content_hash(described) == content_hash(request)
