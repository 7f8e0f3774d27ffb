"""Task-definition content for both runtimes, against the AWS Inf1-on-ECS walkthrough."""

from __future__ import annotations

import pytest
from core_builders import EXECUTION_ROLE, IMAGE, deployment, walkthrough_deployment

from controller.core.normalising import normalise_task_definition
from controller.core.taskdefs import (
    SIDECAR_MEMORY_RESERVATION_MIB,
    canonical_json,
    content_hash,
    short_hash,
    task_definition_content,
)

SERVING = (
    "tensorflow_model_server_neuron --port=8500 --rest_api_port=8501 "
    "--model_name=bert --model_base_path=/bert/"
)
INF1_XLARGE_ONLY = {
    "type": "memberOf",
    "expression": "attribute:ecs.instance-type == inf1.xlarge",
}


def test_neuron_rtd_reproduces_the_walkthrough_task_definition() -> None:
    content = task_definition_content(walkthrough_deployment(), instance_type="inf1.xlarge")

    assert content == {
        "family": "ecs-neuron",
        "executionRoleArn": EXECUTION_ROLE,
        "containerDefinitions": [
            {
                "name": "bert",
                "image": IMAGE,
                "cpu": 0,
                "memoryReservation": 1000,
                "essential": True,
                "entryPoint": ["sh", "-c"],
                "command": [SERVING],
                "portMappings": [
                    {"containerPort": 8500, "hostPort": 8500, "protocol": "tcp"},
                    {"containerPort": 8501, "hostPort": 8501, "protocol": "tcp"},
                ],
                "environment": [
                    {"name": "NEURON_RTD_ADDRESS", "value": "unix:/sock/neuron-rtd.sock"}
                ],
                "mountPoints": [{"containerPath": "/sock", "sourceVolume": "sock"}],
            },
            {
                "name": "neuron-rtd",
                "image": "790709498068.dkr.ecr.us-east-1.amazonaws.com/neuron-rtd:latest",
                "cpu": 0,
                "memoryReservation": 1000,
                "essential": True,
                "entryPoint": ["sh", "-c"],
                "command": ["neuron-rtd -g unix:/sock/neuron-rtd.sock"],
                "portMappings": [],
                "environment": [{"name": "AWS_NEURON_VISIBLE_DEVICES", "value": "ALL"}],
                "mountPoints": [{"containerPath": "/sock", "sourceVolume": "sock"}],
                "linuxParameters": {"capabilities": {"add": ["SYS_ADMIN", "IPC_LOCK"]}},
            },
        ],
        "volumes": [{"name": "sock", "host": {"sourcePath": "/tmp/sock"}}],
        "placementConstraints": [INF1_XLARGE_ONLY],
    }
    assert SIDECAR_MEMORY_RESERVATION_MIB == 1000


def test_neither_runtime_sets_compatibilities_network_mode_or_tags() -> None:
    for runtime in ("neuron-rtd", "neuron"):
        content = task_definition_content(deployment(runtime=runtime), instance_type="inf1.xlarge")
        assert not {"requiresCompatibilities", "networkMode", "tags"} & set(content)


@pytest.mark.parametrize(
    ("instance_type", "devices"),
    [
        ("inf1.xlarge", 1),
        ("inf1.2xlarge", 1),
        ("inf1.6xlarge", 4),
        ("inf1.24xlarge", 16),
        ("inf2.xlarge", 1),
        ("inf2.24xlarge", 6),
        ("inf2.48xlarge", 12),
    ],
)
def test_neuron_runtime_maps_every_device_of_the_instance_type(
    instance_type: str, devices: int
) -> None:
    content = task_definition_content(
        deployment(runtime="neuron", neuronCores=2), instance_type=instance_type
    )

    [container] = content["containerDefinitions"]
    mapped = container["linuxParameters"]["devices"]
    assert [d["hostPath"] for d in mapped] == [f"/dev/neuron{n}" for n in range(devices)]
    assert all(d["hostPath"] == d["containerPath"] for d in mapped)
    assert all(d["permissions"] == ["read", "write"] for d in mapped)
    assert content["placementConstraints"] == [
        {"type": "memberOf", "expression": f"attribute:ecs.instance-type == {instance_type}"}
    ]


def test_neuron_runtime_container() -> None:
    content = task_definition_content(
        deployment(
            "resnet",
            model={
                "name": "resnet",
                "basePath": "/models/resnet/",
                "grpcPort": 9000,
                "restPort": 9001,
            },
            runtime="neuron",
            neuronCores=3,
            memoryReservation=2048,
        ),
        instance_type="inf1.6xlarge",
    )

    assert content["family"] == "resnet"
    assert "executionRoleArn" not in content
    assert "volumes" not in content
    [container] = content["containerDefinitions"]
    assert container["name"] == "resnet"
    assert container["command"] == [
        "tensorflow_model_server_neuron --port=9000 --rest_api_port=9001 "
        "--model_name=resnet --model_base_path=/models/resnet/"
    ]
    assert container["entryPoint"] == ["sh", "-c"]
    assert container["portMappings"] == [
        {"containerPort": 9000, "hostPort": 9000, "protocol": "tcp"},
        {"containerPort": 9001, "hostPort": 9001, "protocol": "tcp"},
    ]
    assert container["environment"] == [{"name": "NEURON_RT_NUM_CORES", "value": "3"}]
    assert container["linuxParameters"]["capabilities"] == {"add": ["IPC_LOCK"]}
    assert (container["memoryReservation"], container["cpu"], container["essential"]) == (
        2048,
        0,
        True,
    )


def test_family_defaults_to_the_deployment_name() -> None:
    content = task_definition_content(deployment("bert"), instance_type="inf1.xlarge")
    assert content["family"] == "bert"


def test_content_hash_is_16_hex_of_sha256_of_canonical_json() -> None:
    content = task_definition_content(walkthrough_deployment(), instance_type="inf1.xlarge")
    digest = content_hash(content)

    assert len(digest) == 16
    assert int(digest, 16) >= 0
    assert digest == short_hash(normalise_task_definition(content))
    assert canonical_json({"b": 1, "a": [1, 2]}) == '{"a":[1,2],"b":1}'


def test_content_hash_follows_every_field_but_not_aws_defaults() -> None:
    base = task_definition_content(walkthrough_deployment(), instance_type="inf1.xlarge")
    other_image = task_definition_content(
        deployment(model={"image": "example.com/other:1"}, runtime="neuron-rtd"),
        instance_type="inf1.xlarge",
    )
    with_defaults = {**base, "networkMode": "bridge", "requiresCompatibilities": []}

    assert content_hash(base) != content_hash(other_image)
    assert content_hash(base) == content_hash(with_defaults)
