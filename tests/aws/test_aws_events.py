"""`run --events` on the shell's side (`aws.events`), against moto in server mode through
real aiobotocore clients: `auto`'s queue, rules and policy made once and fixed when
ours, refused or left alone when not; events published with `put_events` reach the
queue through a rule and come out of `SqsEventSource` as bodies."""

from __future__ import annotations

import dataclasses
import json

import pytest

from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.errors import TerminalError
from controller.aws.events import (
    TARGET_ID,
    SqsEventSource,
    ensure_plumbing,
    queue_policy,
    rule_patterns,
)
from controller.core.events import Touched, parse_event
from controller.sandbox.emulator import ACCOUNT_ID, REGION, Emulator
from controller.settings import EventsSettings

SETTINGS = EventsSettings(mode="auto", wait_s=1)
RULES = (SETTINGS.ecs_rule, SETTINGS.ec2_rule, SETTINGS.api_rule)
OURS = {"ecs-infer:managed-by": "ecs-infer"}
CLUSTER_ARN = f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:cluster/demo"


def rule_arn(name: str) -> str:
    return f"arn:aws:events:{REGION}:{ACCOUNT_ID}:rule/{name}"


async def test_auto_makes_the_tagged_queue_rules_and_policy_once(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    plumbing = await ensure_plumbing(clients, settings=SETTINGS)
    assert plumbing.written[0] == "queue" and len(plumbing.written) == 1 + 2 * 3 + 1

    sqs, events = aws.boto3_client("sqs"), aws.boto3_client("events")
    url = sqs.get_queue_url(QueueName="ecs-infer-events")["QueueUrl"]
    assert plumbing.queue_url == url
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == OURS
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == "900"
    assert attributes["SqsManagedSseEnabled"] == "true"
    policy = json.loads(attributes["Policy"])
    (statement,) = policy["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage"
    assert statement["Resource"] == plumbing.queue_arn
    assert statement["Condition"] == {
        "ArnEquals": {"aws:SourceArn": sorted(rule_arn(name) for name in RULES)}
    }
    patterns = rule_patterns(SETTINGS)
    for name in RULES:
        rule = events.describe_rule(Name=name)
        assert json.loads(rule["EventPattern"]) == patterns[name]
        assert rule["State"] == "ENABLED" and rule["EventBusName"] == "default"
        tags = events.list_tags_for_resource(ResourceARN=rule["Arn"])["Tags"]
        assert {tag["Key"]: tag["Value"] for tag in tags} == OURS
        targets = events.list_targets_by_rule(Rule=name)["Targets"]
        assert targets == [{"Id": TARGET_ID, "Arn": plumbing.queue_arn}]
    assert patterns[SETTINGS.api_rule]["detail"] == {
        "eventSource": ["ecs.amazonaws.com", "ec2.amazonaws.com"]
    }

    counter.reset()
    again = await ensure_plumbing(clients, settings=SETTINGS)
    assert again == dataclasses.replace(plumbing, written=())
    assert counter.writes() == {}, "a second call must create or change nothing"
    assert counter.total > 0


async def test_a_matching_event_comes_out_of_the_source(aws: Emulator, clients: AwsClients) -> None:
    source = SqsEventSource(clients, settings=SETTINGS)
    await source.start()
    assert source.own_actor == await clients.caller_arn()
    assert source.own_actor and source.own_actor.startswith("arn:aws:")
    events = aws.boto3_client("events")
    detail = {"clusterArn": CLUSTER_ARN, "group": "service:bert", "lastStatus": "STOPPED"}
    published = events.put_events(
        Entries=[
            {
                "Source": "aws.ecs",
                "DetailType": "ECS Task State Change",
                "Detail": json.dumps(detail),
                "Resources": [f"arn:aws:ecs:{REGION}:{ACCOUNT_ID}:task/demo/t1"],
            },
            # Matches no rule: never reaches the queue.
            {"Source": "aws.ecs", "DetailType": "ECS Cluster State Change", "Detail": "{}"},
            {"Source": "my.app", "DetailType": "ECS Task State Change", "Detail": "{}"},
            {
                "Source": "aws.ec2",
                "DetailType": "EC2 Spot Instance Interruption Warning",
                "Detail": json.dumps({"instance-id": "i-0abc", "instance-action": "terminate"}),
            },
        ]
    )
    assert published["FailedEntryCount"] == 0

    bodies: list[str] = []
    for _ in range(3):
        messages = await source.receive()
        bodies += [message.body for message in messages]
        await source.delete(messages)
        if len(bodies) >= 2:
            break
    parsed = [parse_event(body) for body in bodies]
    assert all(isinstance(event, Touched) for event in parsed), parsed
    kinds = sorted(event.kind for event in parsed if isinstance(event, Touched))
    assert kinds == ["EC2 Spot Instance Interruption Warning", "ECS Task State Change"]
    task = next(e for e in parsed if isinstance(e, Touched) and e.source == "ecs")
    assert task.services == {("demo", "bert")}

    # Deleted: nothing is left, visible or in flight.
    attributes = aws.boto3_client("sqs").get_queue_attributes(
        QueueUrl=source.queue_url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert attributes == {
        "ApproximateNumberOfMessages": "0",
        "ApproximateNumberOfMessagesNotVisible": "0",
    }
    assert await source.receive() == []


async def test_a_given_queue_url_is_read_as_it_is(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    sqs = aws.boto3_client("sqs")
    url = sqs.create_queue(QueueName="somebody-elses")["QueueUrl"]
    sqs.send_message(QueueUrl=url, MessageBody="{not even json")
    source = SqsEventSource(clients, settings=SETTINGS, queue_url=url)
    assert source.name == "somebody-elses"
    await source.start()
    messages = await source.receive()
    assert [message.body for message in messages] == ["{not even json"]
    await source.delete(messages)
    assert await source.receive() == []
    assert counter.writes() == {
        "sqs.DeleteMessageBatch": 1,
        "sqs.ReceiveMessage": 2,
    }, "nothing created or changed"
    assert "ecs-infer-events" not in str(sqs.list_queues())


async def test_a_same_named_queue_that_is_not_ours_is_refused(
    aws: Emulator, clients: AwsClients
) -> None:
    aws.boto3_client("sqs").create_queue(QueueName="ecs-infer-events", tags={"team": "data"})
    with pytest.raises(TerminalError, match="not tagged ecs-infer:managed-by=ecs-infer"):
        await ensure_plumbing(clients, settings=SETTINGS)
    assert aws.boto3_client("events").list_rules()["Rules"] == []


async def test_our_rules_and_queue_are_fixed_when_they_drifted(
    aws: Emulator, clients: AwsClients
) -> None:
    first = await ensure_plumbing(clients, settings=SETTINGS)
    events, sqs = aws.boto3_client("events"), aws.boto3_client("sqs")
    events.put_rule(Name=SETTINGS.ecs_rule, EventPattern=json.dumps({"source": ["aws.s3"]}))
    events.remove_targets(Rule=SETTINGS.ec2_rule, Ids=[TARGET_ID])
    sqs.set_queue_attributes(
        QueueUrl=first.queue_url,
        Attributes={"MessageRetentionPeriod": "60", "Policy": json.dumps({"Statement": []})},
    )

    fixed = await ensure_plumbing(clients, settings=SETTINGS)
    assert fixed.written == (
        f"rule {SETTINGS.ecs_rule} pattern",
        f"rule {SETTINGS.ec2_rule} target",
        "queue attributes MessageRetentionPeriod,Policy",
    )
    rule = events.describe_rule(Name=SETTINGS.ecs_rule)
    assert json.loads(rule["EventPattern"]) == rule_patterns(SETTINGS)[SETTINGS.ecs_rule]
    assert events.list_targets_by_rule(Rule=SETTINGS.ec2_rule)["Targets"] == [
        {"Id": TARGET_ID, "Arn": first.queue_arn}
    ]
    attributes = sqs.get_queue_attributes(QueueUrl=first.queue_url, AttributeNames=["All"])
    assert json.loads(attributes["Attributes"]["Policy"]) == queue_policy(
        queue_arn=first.queue_arn, rule_arns=first.rule_arns
    )


async def test_a_same_named_rule_that_is_not_ours_is_used_and_never_written(
    aws: Emulator, clients: AwsClients
) -> None:
    events = aws.boto3_client("events")
    theirs = json.dumps({"source": ["aws.ecs"]})
    events.put_rule(
        Name=SETTINGS.ecs_rule, EventPattern=theirs, Tags=[{"Key": "team", "Value": "x"}]
    )
    plumbing = await ensure_plumbing(clients, settings=SETTINGS)
    assert not any(SETTINGS.ecs_rule in written for written in plumbing.written)
    assert events.describe_rule(Name=SETTINGS.ecs_rule)["EventPattern"] == theirs
    assert events.list_targets_by_rule(Rule=SETTINGS.ecs_rule)["Targets"] == []
    assert rule_arn(SETTINGS.ecs_rule) in plumbing.rule_arns
