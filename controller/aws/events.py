"""AWS events for `run --events`: the SQS queue EventBridge feeds, and its plumbing.

Owns: `SqsEventSource`, the runner's event source on SQS (long-polls `ReceiveMessage`,
`WaitTimeSeconds` 20 and up to 10 messages; deletes what was handled, whatever it was,
so that a body nobody can parse is dropped once instead of coming back forever), and
for `--events auto`, `ensure_plumbing`: idempotently, the tagged queue and the three
EventBridge rules on the default bus that target it (`rule_patterns`), with a queue
policy that lets only those rules send (`queue_policy`).
Must not: read an event's content (`core.events` does, for the runner), decide what to
reconcile, or change a queue or rule that is not ours: a same-named queue without the
managed-by tag is refused (`TerminalError`), a same-named rule without it is used as it
is and never written to.

What `auto` makes (names from `EventsSettings`):

    SQS queue     ecs-infer-events      tag ecs-infer:managed-by=ecs-infer; retention
                                        900 s; SSE-SQS; policy: events.amazonaws.com may
                                        sqs:SendMessage, only from the three rules' ARNs
    rules         ecs-infer-ecs-events  aws.ecs task / service / deployment / container
                  ecs-infer-ec2-events  instance state changes; aws.ec2 instance state
                  ecs-infer-api-calls   changes and spot interruption warnings; ECS and
                                        EC2 API calls via CloudTrail (these need a
                                        CloudTrail trail in the account); each tagged,
                                        with one target: the queue (id ecs-infer-events)
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import structlog
from botocore.exceptions import ClientError

from controller.aws.clients import AwsClients
from controller.aws.errors import TerminalError, error_code, translating_errors
from controller.core.events import (
    API_CALL,
    API_EVENT_SOURCES,
    EC2_DETAIL_TYPES,
    ECS_DETAIL_TYPES,
)
from controller.core.states import MANAGED_BY, MANAGED_BY_VALUE, is_managed
from controller.settings import EventsSettings

if TYPE_CHECKING:
    from types_aiobotocore_sqs.literals import QueueAttributeNameType

    QueueAttributes = dict[QueueAttributeNameType, str]

log = structlog.get_logger(__name__)

TARGET_ID = "ecs-infer-events"
"""The id of the queue among each rule's targets."""
RULE_DESCRIPTION = "ecs-infer: events that name resources it may have to reconcile now"
_QUEUE_MISSING = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})


def rule_patterns(settings: EventsSettings) -> dict[str, dict[str, Any]]:
    """The event pattern of each rule, by rule name."""
    return {
        settings.ecs_rule: {"source": ["aws.ecs"], "detail-type": list(ECS_DETAIL_TYPES)},
        settings.ec2_rule: {"source": ["aws.ec2"], "detail-type": list(EC2_DETAIL_TYPES)},
        settings.api_rule: {
            "source": ["aws.ecs", "aws.ec2"],
            "detail-type": [API_CALL],
            "detail": {"eventSource": list(API_EVENT_SOURCES)},
        },
    }


def queue_policy(*, queue_arn: str, rule_arns: Sequence[str]) -> dict[str, Any]:
    """Least privilege: EventBridge may send to the queue, on behalf of these rules only."""
    return {
        "Version": "2012-10-17",
        "Id": f"{queue_arn}/ecs-infer",
        "Statement": [
            {
                "Sid": "EcsInferRulesSendMessage",
                "Effect": "Allow",
                "Principal": {"Service": "events.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": queue_arn,
                "Condition": {"ArnEquals": {"aws:SourceArn": sorted(rule_arns)}},
            }
        ],
    }


def queue_attributes(settings: EventsSettings) -> QueueAttributes:
    """The attributes `auto` sets on its queue, the policy aside."""
    return {
        "MessageRetentionPeriod": str(settings.retention_s),
        "VisibilityTimeout": str(settings.visibility_timeout_s),
        "SqsManagedSseEnabled": "true",
    }


@dataclass(frozen=True, kw_only=True)
class Plumbing:
    """What `ensure_plumbing` found or made."""

    queue_url: str
    queue_arn: str
    rule_arns: tuple[str, ...]
    written: tuple[str, ...] = field(default=())
    """What it had to create or fix (`queue`, `rule ecs-infer-ecs-events`, ...)."""


async def ensure_plumbing(clients: AwsClients, *, settings: EventsSettings) -> Plumbing:
    """The queue and rules of `--events auto`, created if absent, fixed if ours and
    different, nothing written when all is as it should be. Raises `TerminalError` for a
    same-named queue that is not ours, and the shell's errors for the rest."""
    written: list[str] = []
    with translating_errors():
        queue_url, attributes = await _ensure_queue(clients, settings=settings, written=written)
        queue_arn = attributes["QueueArn"]
        rule_arns = [
            await _ensure_rule(
                clients, name=name, pattern=pattern, queue_arn=queue_arn, written=written
            )
            for name, pattern in rule_patterns(settings).items()
        ]
        wanted = queue_attributes(settings)
        wanted["Policy"] = json.dumps(queue_policy(queue_arn=queue_arn, rule_arns=rule_arns))
        changed = {
            name: value
            for name, value in wanted.items()
            if not _same_attribute(name, attributes.get(name), value)
        }
        if changed:
            await clients.sqs.set_queue_attributes(QueueUrl=queue_url, Attributes=changed)
            written.append(f"queue attributes {','.join(sorted(changed))}")
    if written:
        log.info("events.plumbing_ensured", queue=settings.queue_name, written=written)
    return Plumbing(
        queue_url=queue_url, queue_arn=queue_arn, rule_arns=tuple(rule_arns), written=tuple(written)
    )


def _same_attribute(name: QueueAttributeNameType, found: str | None, wanted: str) -> bool:
    if name == "Policy":
        return found is not None and json.loads(found) == json.loads(wanted)
    return found == wanted


async def _ensure_queue(
    clients: AwsClients, *, settings: EventsSettings, written: list[str]
) -> tuple[str, QueueAttributes]:
    sqs = clients.sqs
    name = settings.queue_name
    queue_url: str | None
    try:
        queue_url = (await sqs.get_queue_url(QueueName=name))["QueueUrl"]
    except ClientError as exc:
        if error_code(exc) not in _QUEUE_MISSING and _query_code(exc) not in _QUEUE_MISSING:
            raise
        queue_url = None
    if queue_url is None:
        created = await sqs.create_queue(
            QueueName=name,
            Attributes=queue_attributes(settings),
            tags={MANAGED_BY: MANAGED_BY_VALUE},
        )
        queue_url = created["QueueUrl"]
        written.append("queue")
    else:
        tags = (await sqs.list_queue_tags(QueueUrl=queue_url)).get("Tags", {})
        if not is_managed(tags):
            raise TerminalError(
                f"SQS queue {name} exists and is not tagged {MANAGED_BY}={MANAGED_BY_VALUE}: "
                f"not ours, so --events auto does not use it; pass its URL "
                f"(--events QUEUE_URL) to read it as it is, or remove it"
            )
    attributes = await sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=["QueueArn", "Policy", *queue_attributes(settings)],
    )
    return queue_url, attributes.get("Attributes", {})


def _query_code(exc: ClientError) -> str | None:
    code = exc.response.get("Error", {}).get("QueryErrorCode")
    return str(code) if code else None


async def _ensure_rule(
    clients: AwsClients,
    *,
    name: str,
    pattern: Mapping[str, Any],
    queue_arn: str,
    written: list[str],
) -> str:
    """The rule's ARN, after making it match `pattern` and target the queue (if ours)."""
    events = clients.events
    try:
        rule: Mapping[str, Any] | None = await events.describe_rule(Name=name)
    except ClientError as exc:
        if error_code(exc) != "ResourceNotFoundException":
            raise
        rule = None
    text = json.dumps(pattern)
    if rule is None:
        created = await events.put_rule(
            Name=name,
            EventPattern=text,
            State="ENABLED",
            Description=RULE_DESCRIPTION,
            Tags=[{"Key": MANAGED_BY, "Value": MANAGED_BY_VALUE}],
        )
        arn = created["RuleArn"]
        written.append(f"rule {name}")
    else:
        arn = str(rule["Arn"])
        listed = await events.list_tags_for_resource(ResourceARN=arn)
        tags = {tag["Key"]: tag["Value"] for tag in listed.get("Tags", [])}
        if not is_managed(tags):
            log.warning("events.rule_not_ours", rule=name, note="used as it is, never written")
            return arn
        found = json.loads(rule.get("EventPattern") or "null")
        if found != pattern or rule.get("State") != "ENABLED":
            await events.put_rule(
                Name=name, EventPattern=text, State="ENABLED", Description=RULE_DESCRIPTION
            )
            written.append(f"rule {name} pattern")
    targets = (await events.list_targets_by_rule(Rule=name)).get("Targets", [])
    ours = [target for target in targets if target.get("Id") == TARGET_ID]
    if not ours or ours[0].get("Arn") != queue_arn:
        await events.put_targets(Rule=name, Targets=[{"Id": TARGET_ID, "Arn": queue_arn}])
        written.append(f"rule {name} target")
    return arn


@dataclass(frozen=True, kw_only=True)
class SqsMessage:
    """One received message: its body for the runner, its receipt for the delete."""

    body: str
    receipt_handle: str
    message_id: str


class SqsEventSource:
    """The runner's event source on SQS: `start`, then `receive` / `delete` in a loop.

    With `queue_url` None (`--events auto`), `start` ensures the plumbing and reads the
    queue it made; with a URL, the queue is read as it is and nothing is created."""

    def __init__(
        self,
        clients: AwsClients,
        *,
        settings: EventsSettings,
        queue_url: str | None = None,
    ) -> None:
        self.clients = clients
        self.settings = settings
        self.queue_url = queue_url
        self.auto = queue_url is None
        self.own_actor: str | None = None
        """Whom the controller calls AWS as: API calls it made are not events for it."""

    @property
    def name(self) -> str:
        """For logs: the queue's name (not its URL)."""
        if self.queue_url is None:
            return self.settings.queue_name
        return self.queue_url.rstrip("/").rsplit("/", 1)[-1]

    async def start(self) -> None:
        """Ready to receive: who we are known, and the plumbing ensured (`auto`)."""
        self.own_actor = await self.clients.caller_arn()
        if self.auto:
            plumbing = await ensure_plumbing(self.clients, settings=self.settings)
            self.queue_url = plumbing.queue_url

    async def receive(self) -> list[SqsMessage]:
        """One long poll: up to `batch_size` messages, or none after `wait_s`."""
        if self.queue_url is None:
            raise RuntimeError("SqsEventSource.start() first")
        with translating_errors():
            response = await self.clients.sqs.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=max(1, min(10, self.settings.batch_size)),
                WaitTimeSeconds=max(0, min(20, self.settings.wait_s)),
            )
        return [
            SqsMessage(
                body=message.get("Body", ""),
                receipt_handle=message["ReceiptHandle"],
                message_id=message.get("MessageId", ""),
            )
            for message in response.get("Messages", [])
            if "ReceiptHandle" in message
        ]

    async def delete(self, messages: Sequence[SqsMessage]) -> None:
        """Delete handled messages (one request for up to 10). A message whose delete
        failed comes back after the visibility timeout: it is harmless (an event only
        makes a key due) and the queue's retention bounds how long it can."""
        if not messages or self.queue_url is None:
            return
        for start in range(0, len(messages), 10):
            chunk = messages[start : start + 10]
            with translating_errors():
                response = await self.clients.sqs.delete_message_batch(
                    QueueUrl=self.queue_url,
                    Entries=[
                        {"Id": str(index), "ReceiptHandle": message.receipt_handle}
                        for index, message in enumerate(chunk)
                    ],
                )
            failed = response.get("Failed", [])
            if failed:
                log.warning(
                    "events.delete_failed",
                    queue=self.name,
                    count=len(failed),
                    codes=sorted({str(entry.get("Code")) for entry in failed}),
                )
