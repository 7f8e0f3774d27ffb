"""AWS's events in the sandbox, seen as the controller's `--events` sees them: EventBridge
rules on the default bus (moto's) with an SQS queue as their target, read with boto3."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from sandbox_helpers import CLUSTER, SERVICE, create_demo, eventually, launch

from controller.aws.clients import AwsClients
from controller.pipeline import reconcile_pass
from controller.sandbox import events
from controller.sandbox.ecs.dataplane import DataPlane
from controller.sandbox.emulator import ACCOUNT_ID, REGION, Emulator
from controller.sandbox.modelserver import EncoderModel
from controller.settings import DataPlaneSettings
from controller.specs.loading import load_folder

# The patterns the controller's `--events auto` creates.
PATTERNS = {
    "ecs": {
        "source": ["aws.ecs"],
        "detail-type": [
            "ECS Task State Change",
            "ECS Service Action",
            "ECS Deployment State Change",
            "ECS Container Instance State Change",
        ],
    },
    "ec2": {
        "source": ["aws.ec2"],
        "detail-type": [
            "EC2 Instance State-change Notification",
            "EC2 Spot Instance Interruption Warning",
        ],
    },
    "api": {"source": ["aws.ecs", "aws.ec2"], "detail-type": ["AWS API Call via CloudTrail"]},
}
DEMO = Path(__file__).resolve().parents[2] / "specs" / "ecs-inf1-demo.yaml"
ENVELOPE = {"version", "id", "detail-type", "source", "account", "time", "region", "resources"}


class Inbox:
    """The events an SQS queue received, kept as they are read."""

    def __init__(self, sqs: Any, url: str) -> None:
        self._sqs, self._url = sqs, url
        self.events: list[dict[str, Any]] = []

    def read(self) -> list[dict[str, Any]]:
        while True:
            messages = self._sqs.receive_message(
                QueueUrl=self._url, MaxNumberOfMessages=10, WaitTimeSeconds=0
            ).get("Messages", [])
            if not messages:
                return self.events
            for message in messages:
                self.events.append(json.loads(message["Body"]))
                self._sqs.delete_message(QueueUrl=self._url, ReceiptHandle=message["ReceiptHandle"])

    def of(self, detail_type: str, **detail: Any) -> list[dict[str, Any]]:
        """The events read so far of one detail-type whose detail has these values."""
        return [
            event
            for event in self.read()
            if event["detail-type"] == detail_type
            and all(event["detail"].get(key) == value for key, value in detail.items())
        ]

    async def wait_for(
        self, detail_type: str, *, within_s: float = 15.0, **detail: Any
    ) -> dict[str, Any]:
        found = await eventually(lambda: self.of(detail_type, **detail), within_s=within_s)
        return found[0]


def _queue(aws: Emulator) -> tuple[Any, str, str]:
    sqs = aws.boto3_client("sqs")
    url = sqs.create_queue(QueueName="ecs-infer-events")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return sqs, url, arn


@pytest.fixture
def inbox(aws: Emulator) -> Inbox:
    """A queue fed by the controller's three rules."""
    sqs, url, arn = _queue(aws)
    eventbridge = aws.boto3_client("events")
    for name, pattern in PATTERNS.items():
        eventbridge.put_rule(Name=f"ecs-infer-{name}", EventPattern=json.dumps(pattern))
        eventbridge.put_targets(Rule=f"ecs-infer-{name}", Targets=[{"Id": "queue", "Arn": arn}])
    return Inbox(sqs, url)


@pytest.fixture
async def quick_spot(aws: Emulator, encoder: EncoderModel) -> AsyncIterator[DataPlane]:
    """A data plane whose spot interruptions come 0.3 s after their warning."""
    plane = DataPlane(
        model=encoder,
        aws_port=aws.port,
        settings=DataPlaneSettings(tick_s=0.1, spot_interruption_notice_s=0.3),
    )
    await plane.start()
    yield plane
    await plane.stop()


def _api_calls(inbox: Inbox, name: str) -> list[dict[str, Any]]:
    return inbox.of("AWS API Call via CloudTrail", eventName=name)


def test_update_service_by_boto3_is_an_api_call_with_its_request(
    inbox: Inbox, ecs: Any, ec2: Any
) -> None:
    create_demo(ecs, ec2, desired=1)
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=3)

    (event,) = _api_calls(inbox, "UpdateService")
    assert set(event) >= ENVELOPE and event["version"] == "0"
    assert (event["source"], event["account"], event["region"]) == ("aws.ecs", ACCOUNT_ID, REGION)
    assert event["time"].endswith("Z")
    detail = event["detail"]
    assert detail["requestParameters"] == {
        "cluster": CLUSTER,
        "service": SERVICE,
        "desiredCount": 3,
    }
    assert detail["responseElements"]["service"]["desiredCount"] == 3
    assert detail["eventSource"] == "ecs.amazonaws.com"
    assert detail["awsRegion"] == REGION
    assert detail["userIdentity"]["accountId"] == ACCOUNT_ID
    assert detail["userIdentity"]["type"] == "IAMUser"
    assert (detail["eventType"], detail["readOnly"], detail["managementEvent"]) == (
        "AwsApiCall",
        False,
        True,
    )
    assert detail["eventCategory"] == "Management"
    # Every write of the walkthrough is there, and no read.
    names = {e["detail"]["eventName"] for e in inbox.of("AWS API Call via CloudTrail")}
    assert {"CreateCluster", "RunInstances", "RegisterTaskDefinition", "CreateService"} <= names
    assert not {n for n in names if n.startswith(("Describe", "List", "Get"))}


async def test_the_controllers_own_writes_are_api_calls_too(inbox: Inbox) -> None:
    loaded = load_folder(DEMO)
    async with AwsClients() as clients:
        result = await reconcile_pass(loaded.specs, clients=clients, apply=True)
    assert result.report is not None and result.report.ok

    calls = inbox.of("AWS API Call via CloudTrail")
    names = {event["detail"]["eventName"] for event in calls}
    assert {"CreateCluster", "RunInstances", "CreateService"} <= names
    assert all("aiobotocore" in event["detail"]["userAgent"] for event in calls)


def test_ec2_calls_in_cloudtrails_shapes(inbox: Inbox, ec2: Any) -> None:
    (instance_id,) = launch(ec2, 1)
    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "team", "Value": "ml"}])
    ec2.delete_tags(Resources=[instance_id], Tags=[{"Key": "team"}])
    group = ec2.create_security_group(GroupName="bert", Description="bert")["GroupId"]
    ec2.authorize_security_group_ingress(
        GroupId=group,
        IpPermissions=[
            {
                "IpProtocol": "tcp",
                "FromPort": 8500,
                "ToPort": 8501,
                "IpRanges": [{"CidrIp": "10.0.0.0/8"}],
            }
        ],
    )

    (run,) = _api_calls(inbox, "RunInstances")
    assert run["source"] == "aws.ec2"
    assert run["detail"]["eventSource"] == "ec2.amazonaws.com"
    assert run["detail"]["requestParameters"]["instanceType"] == "inf1.xlarge"
    assert run["detail"]["requestParameters"]["imageId"] == "ami-12c6146b"
    assert run["detail"]["requestParameters"]["userData"] == "<sensitiveDataRemoved>"
    items = run["detail"]["responseElements"]["instancesSet"]["items"]
    assert [item["instanceId"] for item in items] == [instance_id]
    (tagged,) = _api_calls(inbox, "CreateTags")
    assert tagged["detail"]["requestParameters"] == {
        "resourcesSet": {"items": [{"resourceId": instance_id}]},
        "tagSet": {"items": [{"key": "team", "value": "ml"}]},
    }
    (untagged,) = _api_calls(inbox, "DeleteTags")
    assert untagged["detail"]["requestParameters"]["tagSet"] == {"items": [{"key": "team"}]}
    (ingress,) = _api_calls(inbox, "AuthorizeSecurityGroupIngress")
    assert ingress["detail"]["requestParameters"] == {
        "groupId": group,
        "ipPermissions": {
            "items": [
                {
                    "ipProtocol": "tcp",
                    "fromPort": 8500,
                    "toPort": 8501,
                    "ipRanges": {"items": [{"cidrIp": "10.0.0.0/8"}]},
                }
            ]
        },
    }


def test_a_failed_request_is_no_event(inbox: Inbox, ecs: Any) -> None:
    ecs.create_cluster(clusterName=CLUSTER)
    with pytest.raises(ecs.exceptions.ServiceNotFoundException):
        ecs.update_service(cluster=CLUSTER, service="absent", desiredCount=1)
    assert not _api_calls(inbox, "UpdateService")
    assert _api_calls(inbox, "CreateCluster")


async def test_terminate_instances_is_an_api_call_and_state_changes(
    dataplane: DataPlane, inbox: Inbox, ec2: Any
) -> None:
    (instance_id,) = launch(ec2, 1)
    state_change = "EC2 Instance State-change Notification"
    running = await inbox.wait_for(state_change, state="running")
    assert running["resources"] == [f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{instance_id}"]
    assert running["detail"] == {"instance-id": instance_id, "state": "running"}

    ec2.terminate_instances(InstanceIds=[instance_id])
    (call,) = _api_calls(inbox, "TerminateInstances")
    assert call["detail"]["requestParameters"] == {
        "instancesSet": {"items": [{"instanceId": instance_id}]}
    }
    await inbox.wait_for(state_change, state="terminated")
    states = [e["detail"]["state"] for e in inbox.of(state_change, **{"instance-id": instance_id})]
    assert states == ["pending", "running", "shutting-down", "terminated"]


async def test_a_service_task_starting_is_task_state_changes(
    dataplane: DataPlane, inbox: Inbox, ecs: Any, ec2: Any
) -> None:
    definition = create_demo(ecs, ec2, desired=1, instances=1)
    cluster_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/{CLUSTER}"
    task_change = "ECS Task State Change"
    running = await inbox.wait_for(task_change, lastStatus="RUNNING")
    detail = running["detail"]
    assert running["source"] == "aws.ecs"
    assert running["resources"] == [detail["taskArn"]]
    assert detail["clusterArn"] == cluster_arn
    assert detail["group"] == f"service:{SERVICE}"
    assert detail["taskDefinitionArn"] == definition
    assert detail["desiredStatus"] == "RUNNING"
    assert detail["startedBy"].startswith("ecs-svc/")
    assert detail["containerInstanceArn"]
    bert = next(c for c in detail["containers"] if c["name"] == "bert")
    assert bert["lastStatus"] == "RUNNING"
    assert {b["containerPort"] for b in bert["networkBindings"]} == {8500, 8501}
    (pending,) = inbox.of(task_change, lastStatus="PENDING")
    assert pending["detail"]["taskArn"] == detail["taskArn"]
    assert pending["detail"]["version"] < detail["version"]

    joined = inbox.of("ECS Container Instance State Change", status="ACTIVE")
    assert joined and joined[0]["detail"]["clusterArn"] == cluster_arn
    assert joined[0]["detail"]["agentConnected"] is True
    assert joined[0]["resources"] == [joined[0]["detail"]["containerInstanceArn"]]
    steady = await inbox.wait_for("ECS Service Action", eventName="SERVICE_STEADY_STATE")
    assert steady["detail"]["clusterArn"] == cluster_arn
    assert steady["detail"]["eventType"] == "INFO"
    assert steady["resources"][0].endswith(f"service/{CLUSTER}/{SERVICE}")
    deployments = inbox.of("ECS Deployment State Change")
    assert [e["detail"]["eventName"] for e in deployments] == [
        "SERVICE_DEPLOYMENT_IN_PROGRESS",
        "SERVICE_DEPLOYMENT_COMPLETED",
    ]
    assert deployments[0]["detail"]["deploymentId"] == detail["startedBy"]

    # Stopped through the API: the task's last change is STOPPED, with ECS's reason.
    ecs.stop_task(cluster=CLUSTER, task=detail["taskArn"], reason="by hand")
    stopped = await inbox.wait_for(task_change, lastStatus="STOPPED", taskArn=detail["taskArn"])
    assert stopped["detail"]["stoppedReason"] == "by hand"
    assert stopped["detail"]["stopCode"] == "UserInitiated"


async def test_a_task_that_cannot_be_placed_is_a_placement_failure(
    dataplane: DataPlane, inbox: Inbox, ecs: Any, ec2: Any
) -> None:
    create_demo(ecs, ec2, desired=2, instances=1)  # 4 cores per task, 4 on the one instance
    failure = await inbox.wait_for("ECS Service Action", eventName="SERVICE_TASK_PLACEMENT_FAILURE")
    assert failure["detail"]["eventType"] == "WARN"


async def test_the_interrupt_tag_warns_then_takes_the_instance(
    quick_spot: DataPlane, inbox: Inbox, ecs: Any, ec2: Any
) -> None:
    create_demo(ecs, ec2, desired=1, instances=1)
    task = await inbox.wait_for("ECS Task State Change", lastStatus="RUNNING")
    (instance_id,) = [
        i["InstanceId"] for r in ec2.describe_instances()["Reservations"] for i in r["Instances"]
    ]

    ec2.create_tags(Resources=[instance_id], Tags=[{"Key": "sandbox:interrupt", "Value": "true"}])
    warning = await inbox.wait_for("EC2 Spot Instance Interruption Warning")
    warned_at = time.monotonic()
    assert warning["source"] == "aws.ec2"
    assert warning["detail"] == {"instance-id": instance_id, "instance-action": "terminate"}
    assert warning["resources"] == [f"arn:aws:ec2:{REGION}:{ACCOUNT_ID}:instance/{instance_id}"]
    await inbox.wait_for("EC2 Instance State-change Notification", state="terminated")
    assert time.monotonic() - warned_at >= 0.2  # the notice was given before
    (instance,) = ec2.describe_instances(InstanceIds=[instance_id])["Reservations"][0]["Instances"]
    assert instance["StateReason"]["Code"] == "Server.SpotInstanceTermination"

    stopped = await inbox.wait_for(
        "ECS Task State Change", lastStatus="STOPPED", taskArn=task["detail"]["taskArn"]
    )
    assert stopped["detail"]["stoppedReason"] == f"Host EC2 (instance {instance_id}) terminated."
    gone = await inbox.wait_for("ECS Container Instance State Change", status="INACTIVE")
    assert gone["detail"]["ec2InstanceId"] == instance_id
    assert gone["detail"]["agentConnected"] is False


async def test_without_a_rule_nothing_is_delivered_and_nothing_fails(
    dataplane: DataPlane, aws: Emulator, ecs: Any, ec2: Any
) -> None:
    sqs, url, _ = _queue(aws)
    failed = events.COUNTS.failed
    create_demo(ecs, ec2, desired=1, instances=1)
    await eventually(lambda: ecs.list_tasks(cluster=CLUSTER)["taskArns"])
    ecs.update_service(cluster=CLUSTER, service=SERVICE, desiredCount=0)
    ec2.terminate_instances(InstanceIds=[launch(ec2, 1)[0]])
    await asyncio.sleep(0.3)
    assert Inbox(sqs, url).read() == []
    assert events.COUNTS.failed == failed


def test_a_rule_gets_only_what_its_pattern_matches(aws: Emulator, ecs: Any) -> None:
    sqs, url, arn = _queue(aws)
    eventbridge = aws.boto3_client("events")
    pattern = {
        "source": ["aws.ecs"],
        "detail": {"eventName": ["CreateCluster"], "requestParameters": {"clusterName": ["b"]}},
    }
    eventbridge.put_rule(Name="only-b", EventPattern=json.dumps(pattern))
    eventbridge.put_targets(Rule="only-b", Targets=[{"Id": "queue", "Arn": arn}])
    ecs.create_cluster(clusterName="a")
    ecs.create_cluster(clusterName="b")
    (event,) = Inbox(sqs, url).read()
    assert event["detail"]["requestParameters"] == {"clusterName": "b"}


def test_unflatten_names_and_numbered_members() -> None:
    assert events.unflatten(
        {
            "Action": "ModifyInstanceAttribute",
            "InstanceId": "i-1",
            "GroupId.1": "sg-1",
            "GroupId.2": "sg-2",
            "BlockDeviceMapping.1.Ebs.VolumeSize": "8",
        }
    ) == {
        "instanceId": "i-1",
        "groupId": {"items": ["sg-1", "sg-2"]},
        "blockDeviceMapping": {"items": [{"ebs": {"volumeSize": "8"}}]},
    }
    assert events.ec2_request_parameters("StopInstances", {"InstanceId.1": "i-1"}) == {
        "instancesSet": {"items": [{"instanceId": "i-1"}]},
        "force": False,
    }
