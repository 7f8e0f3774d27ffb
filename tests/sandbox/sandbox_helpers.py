"""Helpers for the sandbox tests: the walkthrough's request, polling, and resolving a
task's address the way the controller does on AWS (task → container instance → EC2)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

import grpc
import numpy as np

from controller.tfserving import serving_pb2, serving_pb2_grpc, tensor_pb2

CLUSTER = "ecs-inf1-demo"
SERVICE = "bert-inf1"
FAMILY = "ecs-neuron"
USER_DATA = f"#!/bin/bash\necho ECS_CLUSTER={CLUSTER} >> /etc/ecs/ecs.config\n"

T = TypeVar("T")


def predict_request(
    *, model: str = "bert", length: int = 128, use_int_val: bool = False
) -> serving_pb2.PredictRequest:
    request = serving_pb2.PredictRequest()
    request.model_spec.name = model
    for name in ("input_ids", "input_mask", "segment_ids"):
        tensor = request.inputs[name]
        tensor.dtype = tensor_pb2.DT_INT32
        tensor.tensor_shape.dim.add(size=1)
        tensor.tensor_shape.dim.add(size=length)
        if use_int_val:
            tensor.int_val.extend([0] * length)
        else:
            tensor.tensor_content = np.zeros((1, length), dtype="<i4").tobytes()
    return request


def tensor_array(tensor: Any) -> np.ndarray[Any, Any]:
    shape = [dim.size for dim in tensor.tensor_shape.dim]
    return np.frombuffer(tensor.tensor_content, dtype="<f4").reshape(shape)


async def predict(
    address: str, request: serving_pb2.PredictRequest | None = None, *, deadline_s: float = 10.0
) -> tuple[serving_pb2.PredictResponse, dict[str, str]]:
    """One Predict; the response and its trailing metadata."""
    async with grpc.aio.insecure_channel(address) as channel:
        stub = serving_pb2_grpc.PredictionServiceStub(channel)
        call = stub.Predict(request or predict_request(), timeout=deadline_s)
        response = await call
        trailing = {key: value for key, value in (await call.trailing_metadata() or ())}
        return response, trailing


async def model_status(address: str, model: str = "bert") -> serving_pb2.GetModelStatusResponse:
    async with grpc.aio.insecure_channel(address) as channel:
        request = serving_pb2.GetModelStatusRequest()
        request.model_spec.name = model
        response: serving_pb2.GetModelStatusResponse = await serving_pb2_grpc.ModelServiceStub(
            channel
        ).GetModelStatus(request, timeout=5)
        return response


async def eventually(probe: Callable[[], T], *, within_s: float = 15.0, interval: float = 0.1) -> T:
    """Poll `probe` (a blocking boto3 look, run off the loop) until it returns truthy."""
    deadline = time.monotonic() + within_s
    last: T = await asyncio.to_thread(probe)
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within_s} s; last seen: {last!r}")
        await asyncio.sleep(interval)
        last = await asyncio.to_thread(probe)
    return last


def service(ecs: Any, name: str = SERVICE, cluster: str = CLUSTER) -> dict[str, Any]:
    found: dict[str, Any] = ecs.describe_services(cluster=cluster, services=[name])["services"][0]
    return found


def service_tasks(ecs: Any, name: str = SERVICE, cluster: str = CLUSTER) -> list[dict[str, Any]]:
    arns = ecs.list_tasks(cluster=cluster, serviceName=name)["taskArns"]
    if not arns:
        return []
    tasks: list[dict[str, Any]] = ecs.describe_tasks(cluster=cluster, tasks=arns)["tasks"]
    return tasks


def task_address(
    ecs: Any, ec2: Any, task: dict[str, Any], *, container_port: int = 8500, cluster: str = CLUSTER
) -> str:
    """instance private IP + host port, from describe_tasks, describe_container_instances
    and describe_instances: what the controller does on AWS."""
    (container_instance,) = ecs.describe_container_instances(
        cluster=cluster, containerInstances=[task["containerInstanceArn"]]
    )["containerInstances"]
    reservations = ec2.describe_instances(InstanceIds=[container_instance["ec2InstanceId"]])
    private_ip = reservations["Reservations"][0]["Instances"][0]["PrivateIpAddress"]
    host_port = next(
        binding["hostPort"]
        for container in task["containers"]
        for binding in container.get("networkBindings", [])
        if binding["containerPort"] == container_port
    )
    return f"{private_ip}:{host_port}"


def launch(
    ec2: Any, count: int = 2, *, instance_type: str = "inf1.xlarge", user_data: str = USER_DATA
) -> list[str]:
    reservation = ec2.run_instances(
        ImageId="ami-12c6146b",
        MinCount=count,
        MaxCount=count,
        InstanceType=instance_type,
        UserData=user_data,
    )
    return [instance["InstanceId"] for instance in reservation["Instances"]]


def register(
    ecs: Any,
    *,
    cores: int = 4,
    host_port: int | None = 8500,
    instance_type: str = "inf1.xlarge",
    family: str = FAMILY,
) -> str:
    """The walkthrough's task definition (bert + neuron-rtd), as the controller renders it."""
    mappings: list[dict[str, Any]] = [{"containerPort": 8500}, {"containerPort": 8501}]
    if host_port is not None:
        mappings = [
            {"containerPort": 8500, "hostPort": host_port},
            {"containerPort": 8501, "hostPort": host_port + 1},
        ]
    definition = ecs.register_task_definition(
        family=family,
        containerDefinitions=[
            {
                "name": "bert",
                "image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/ecs-inf1-demo:latest",
                "command": [
                    "tensorflow_model_server_neuron --port=8500 --rest_api_port=8501 "
                    "--model_name=bert --model_base_path=/bert/"
                ],
                "memoryReservation": 1000,
                "portMappings": mappings,
            },
            {
                "name": "neuron-rtd",
                "image": "790709498068.dkr.ecr.us-east-1.amazonaws.com/neuron-rtd:latest",
                "command": ["neuron-rtd -g unix:/sock/neuron-rtd.sock"],
                "memoryReservation": 100,
            },
        ],
        placementConstraints=[
            {"type": "memberOf", "expression": f"attribute:ecs.instance-type == {instance_type}"}
        ],
        tags=[{"key": "ecs-infer:neuron-cores", "value": str(cores)}],
    )
    arn: str = definition["taskDefinition"]["taskDefinitionArn"]
    return arn


def create_demo(
    ecs: Any,
    ec2: Any,
    *,
    desired: int = 1,
    cores: int = 4,
    host_port: int | None = 8500,
    instances: int = 2,
) -> str:
    """The walkthrough's resources made with boto3 directly (no controller)."""
    ecs.create_cluster(clusterName=CLUSTER)
    launch(ec2, instances)
    definition = register(ecs, cores=cores, host_port=host_port)
    ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=definition, desiredCount=desired
    )
    return definition
