"""The emulated ECS data plane, seen only through AWS APIs and gRPC, as the controller
sees ECS: instances join, services get tasks, tasks answer Predict on loopback."""

from __future__ import annotations

import ipaddress
import time
from pathlib import Path
from typing import Any

import grpc
import numpy as np
import pytest
from sandbox_helpers import (
    CLUSTER,
    SERVICE,
    create_demo,
    eventually,
    launch,
    model_status,
    predict,
    predict_request,
    register,
    service,
    service_tasks,
    task_address,
    tensor_array,
)

from controller.aws.clients import AwsClients
from controller.pipeline import reconcile_pass
from controller.sandbox.ecs.dataplane import DataPlane
from controller.specs.loading import load_folder
from controller.tfserving import serving_pb2

DEMO = Path(__file__).resolve().parents[2] / "specs" / "ecs-inf1-demo.yaml"


def _running(ecs: Any, count: int) -> list[dict[str, Any]] | None:
    tasks = [t for t in service_tasks(ecs) if t["lastStatus"] == "RUNNING"]
    current = service(ecs)
    if len(tasks) == count and current["runningCount"] == count:
        return tasks
    return None


def _container_instances(ecs: Any, cluster: str = CLUSTER) -> list[dict[str, Any]]:
    arns = ecs.list_container_instances(cluster=cluster)["containerInstanceArns"]
    if not arns:
        return []
    found: list[dict[str, Any]] = ecs.describe_container_instances(
        cluster=cluster, containerInstances=arns
    )["containerInstances"]
    return found


async def test_the_demo_spec_runs_and_answers_predict(dataplane: DataPlane, ecs: Any, ec2: Any):
    loaded = load_folder(DEMO)
    assert loaded.ok, loaded.errors
    async with AwsClients() as clients:
        result = await reconcile_pass(loaded.specs, clients=clients, apply=True)
    assert result.report is not None and result.report.ok

    joined = await eventually(lambda: len(found := _container_instances(ecs)) == 2 and found)
    for instance in joined:
        attributes = {a["name"]: a.get("value") for a in instance["attributes"]}
        assert attributes["ecs.instance-type"] == "inf1.xlarge"
        assert attributes["ecs-infer.neuron-cores"] == "4"
        assert instance["status"] == "ACTIVE"
    (task,) = await eventually(lambda: _running(ecs, 1))
    assert task["group"] == f"service:{SERVICE}"
    assert {c["name"] for c in task["containers"]} == {"bert", "neuron-rtd"}
    assert all(c["lastStatus"] == "RUNNING" for c in task["containers"])
    live = await eventually(
        lambda: (s := service(ecs))["deployments"][0]["rolloutState"] == "COMPLETED" and s
    )
    assert [d["status"] for d in live["deployments"]] == ["PRIMARY"]
    assert live["pendingCount"] == 0

    address = task_address(ecs, ec2, task)
    host = address.rsplit(":", 1)[0]
    assert ipaddress.ip_address(host).is_loopback and host != "127.0.0.1"
    response, trailing = await predict(address)
    sequence = tensor_array(response.outputs["sequence_output"])
    pooled = tensor_array(response.outputs["pooled_output"])
    assert sequence.shape == (1, 128, 384) and pooled.shape == (1, 384)
    assert np.isfinite(sequence).all() and float(np.abs(pooled).sum()) > 0
    assert np.allclose(pooled, sequence[:, 0, :])
    assert response.model_spec.name == "bert" and response.model_spec.version.value == 1
    assert int(trailing["x-compute-us"]) > 0
    status = await model_status(address)
    assert status.model_version_status[0].state == serving_pb2.ModelVersionStatus.AVAILABLE

    with pytest.raises(grpc.aio.AioRpcError) as unknown:
        await predict(address, predict_request(model="gpt"))
    assert unknown.value.code() == grpc.StatusCode.NOT_FOUND
    wrong = predict_request()
    del wrong.inputs["segment_ids"]
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await predict(address, wrong)
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_instances_get_distinct_loopback_addresses(dataplane: DataPlane, ec2: Any):
    launch(ec2, 3, user_data="")

    def addresses() -> list[str] | None:
        found = [
            i["PrivateIpAddress"]
            for r in ec2.describe_instances()["Reservations"]
            for i in r["Instances"]
        ]
        return found if all(a.startswith(dataplane.address_prefix) for a in found) else None

    found = await eventually(addresses)
    assert len(set(found)) == 3
    assert all(ipaddress.ip_address(a).is_loopback for a in found)


async def test_an_instance_naming_an_unknown_cluster_never_joins(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    ecs.create_cluster(clusterName=CLUSTER)
    launch(ec2, 1, user_data="#!/bin/bash\necho ECS_CLUSTER=no-such-cluster >> /etc/ecs/ecs.config")
    launch(ec2, 1, user_data="")
    for _ in range(5):
        await dataplane.step()
    assert _container_instances(ecs) == []
    launch(ec2, 1)
    await eventually(lambda: len(_container_instances(ecs)) == 1)


async def test_scaling_the_service_changes_the_running_tasks(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    create_demo(ecs, ec2, desired=1, cores=1, host_port=None)  # dynamic host ports
    await eventually(lambda: _running(ecs, 1))

    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=4)
    assert service(ecs)["runningCount"] < 4  # the scheduler, not the API, starts tasks
    tasks = await eventually(lambda: _running(ecs, 4))
    addresses = {task_address(ecs, ec2, task) for task in tasks}
    assert len(addresses) == 4
    assert len({a.rsplit(":", 1)[0] for a in addresses}) == 2  # spread over both instances
    for address in addresses:
        response, _ = await predict(address, predict_request(length=16))
        assert tensor_array(response.outputs["pooled_output"]).shape == (1, 384)

    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=1)
    await eventually(lambda: _running(ecs, 1))
    stopped = ecs.list_tasks(cluster=CLUSTER, serviceName=SERVICE, desiredStatus="STOPPED")
    assert len(stopped["taskArns"]) == 3
    assert len(dataplane.servers) == 1
    messages = [event["message"] for event in service(ecs)["events"]]
    assert any("has stopped 3 running tasks" in message for message in messages)


async def test_terminating_an_instance_stops_its_tasks(dataplane: DataPlane, ecs: Any, ec2: Any):
    create_demo(ecs, ec2, desired=2)
    tasks = await eventually(lambda: _running(ecs, 2))
    victim = tasks[0]
    address = task_address(ecs, ec2, victim)
    (container_instance,) = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=[victim["containerInstanceArn"]]
    )["containerInstances"]
    instance_id = container_instance["ec2InstanceId"]

    ec2.terminate_instances(InstanceIds=[instance_id])
    await eventually(lambda: _running(ecs, 1))
    (stopped,) = ecs.describe_tasks(cluster=CLUSTER, tasks=[victim["taskArn"]])["tasks"]
    assert stopped["lastStatus"] == "STOPPED" and stopped["desiredStatus"] == "STOPPED"
    assert stopped["stoppedReason"] == f"Host EC2 (instance {instance_id}) terminated."
    (gone,) = ecs.describe_container_instances(
        cluster=CLUSTER, containerInstances=[victim["containerInstanceArn"]]
    )["containerInstances"]
    assert gone["status"] == "INACTIVE"
    assert len(_container_instances(ecs)) == 1  # INACTIVE ones are not listed
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await predict(address, deadline_s=2)
    assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
    # Nowhere to put the replacement: 4 NeuronCores per replica, one instance left.
    await eventually(
        lambda: any("unable to place a task" in e["message"] for e in service(ecs)["events"])
    )


async def test_a_task_beyond_neuron_core_capacity_stays_pending(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    create_demo(ecs, ec2, desired=3, cores=4, host_port=None)
    await eventually(lambda: _running(ecs, 2))
    for _ in range(3):
        await dataplane.step()
    current = service(ecs)
    assert (current["desiredCount"], current["runningCount"]) == (3, 2)
    assert current["deployments"][0]["rolloutState"] == "IN_PROGRESS"
    unplaced = [e["message"] for e in current["events"] if "unable to place" in e["message"]]
    assert unplaced and "insufficient NeuronCores" in unplaced[0]
    for instance in _container_instances(ecs):
        assert instance["runningTasksCount"] == 1  # never more cores than an instance has

    launch(ec2, 1)  # capacity arrives: the pending replica is placed
    await eventually(lambda: _running(ecs, 3))
    await eventually(lambda: service(ecs)["deployments"][0]["rolloutState"] == "COMPLETED")


async def test_host_port_conflicts_and_placement_constraints_are_honoured(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    ecs.create_cluster(clusterName=CLUSTER)
    launch(ec2, 1)
    fixed_port = register(ecs, cores=1, host_port=8500)
    ecs.create_service(
        cluster=CLUSTER, serviceName=SERVICE, taskDefinition=fixed_port, desiredCount=2
    )
    await eventually(lambda: _running(ecs, 1))
    await eventually(
        lambda: any("already using a port" in e["message"] for e in service(ecs)["events"])
    )
    assert service(ecs)["runningCount"] == 1

    inf2_only = register(ecs, family="inf2-only", instance_type="inf2.xlarge", host_port=None)
    ecs.create_service(
        cluster=CLUSTER, serviceName="inf2", taskDefinition=inf2_only, desiredCount=1
    )
    await eventually(
        lambda: any("placement constraints" in e["message"] for e in service(ecs, "inf2")["events"])
    )
    assert service_tasks(ecs, "inf2") == []


async def test_a_new_task_definition_rolls_out(dataplane: DataPlane, ecs: Any, ec2: Any):
    first = create_demo(ecs, ec2, desired=1)
    (old,) = await eventually(lambda: _running(ecs, 1))
    second = register(ecs)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, taskDefinition="ecs-neuron:2")

    def rolled_out() -> dict[str, Any] | None:
        current = service(ecs)
        deployments = current["deployments"]
        done = (
            len(deployments) == 1
            and deployments[0]["taskDefinition"] == second
            and deployments[0]["rolloutState"] == "COMPLETED"
        )
        return current if done else None

    current = await eventually(rolled_out)
    assert current["taskDefinition"] == second != first
    (new,) = await eventually(lambda: _running(ecs, 1))
    assert new["taskDefinitionArn"] == second and new["taskArn"] != old["taskArn"]
    (stopped,) = ecs.describe_tasks(cluster=CLUSTER, tasks=[old["taskArn"]])["tasks"]
    assert stopped["lastStatus"] == "STOPPED"
    response, _ = await predict(task_address(ecs, ec2, new))
    assert "pooled_output" in response.outputs


async def test_fault_tags_make_a_task_slow_failing_or_crash(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    create_demo(ecs, ec2, desired=1)
    (task,) = await eventually(lambda: _running(ecs, 1))
    address = task_address(ecs, ec2, task)
    arn = task["taskArn"]

    ecs.tag_resource(resourceArn=arn, tags=[{"key": "sandbox:delay", "value": "300ms"}])
    await dataplane.step()
    started = time.perf_counter()
    _, trailing = await predict(address)
    assert time.perf_counter() - started >= 0.3
    assert int(trailing["x-compute-us"]) >= 300_000

    ecs.untag_resource(resourceArn=arn, tagKeys=["sandbox:delay"])
    ecs.tag_resource(resourceArn=arn, tags=[{"key": "sandbox:fail", "value": "true"}])
    await dataplane.step()
    with pytest.raises(grpc.aio.AioRpcError) as failing:
        await predict(address)
    assert failing.value.code() == grpc.StatusCode.UNAVAILABLE

    ecs.untag_resource(resourceArn=arn, tagKeys=["sandbox:fail"])
    await dataplane.step()
    _, trailing = await predict(address)
    assert int(trailing["x-compute-us"]) < 300_000  # the delay is gone (wall time: busy host)

    ecs.tag_resource(resourceArn=arn, tags=[{"key": "sandbox:crash", "value": "true"}])
    (replacement,) = await eventually(
        lambda: (tasks := _running(ecs, 1)) and tasks[0]["taskArn"] != arn and tasks
    )
    (crashed,) = ecs.describe_tasks(cluster=CLUSTER, tasks=[arn])["tasks"]
    assert crashed["stopCode"] == "EssentialContainerExited"
    assert service(ecs)["deployments"][0]["failedTasks"] == 1
    await predict(task_address(ecs, ec2, replacement))


async def test_a_task_stopped_through_the_api_is_replaced(dataplane: DataPlane, ecs: Any, ec2: Any):
    create_demo(ecs, ec2, desired=1)
    (task,) = await eventually(lambda: _running(ecs, 1))
    ecs.stop_task(cluster=CLUSTER, task=task["taskArn"], reason="by hand")
    (replacement,) = await eventually(
        lambda: (tasks := _running(ecs, 1)) and tasks[0]["taskArn"] != task["taskArn"] and tasks
    )
    await predict(task_address(ecs, ec2, replacement))


async def test_force_new_deployment_replaces_the_tasks(dataplane: DataPlane, ecs: Any, ec2: Any):
    create_demo(ecs, ec2, desired=1)
    (old,) = await eventually(lambda: _running(ecs, 1))
    first_deployment = service(ecs)["deployments"][0]["id"]
    ecs.update_service(cluster=CLUSTER, service=SERVICE, forceNewDeployment=True)

    def replaced() -> list[dict[str, Any]] | None:
        tasks = _running(ecs, 1)
        deployments = service(ecs)["deployments"]
        done = (
            tasks
            and tasks[0]["taskArn"] != old["taskArn"]
            and len(deployments) == 1
            and deployments[0]["id"] != first_deployment
            and deployments[0]["rolloutState"] == "COMPLETED"
        )
        return tasks if done else None

    (new,) = await eventually(replaced)
    assert new["startedBy"] == service(ecs)["deployments"][0]["id"]


async def test_a_deregistered_instance_loses_its_tasks_to_another(
    dataplane: DataPlane, ecs: Any, ec2: Any
):
    create_demo(ecs, ec2, desired=1)
    (task,) = await eventually(lambda: _running(ecs, 1))
    ecs.deregister_container_instance(
        cluster=CLUSTER, containerInstance=task["containerInstanceArn"], force=True
    )
    (moved,) = await eventually(
        lambda: (tasks := _running(ecs, 1)) and tasks[0]["taskArn"] != task["taskArn"] and tasks
    )
    assert moved["containerInstanceArn"] != task["containerInstanceArn"]
    await predict(task_address(ecs, ec2, moved))
