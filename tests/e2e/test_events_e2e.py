"""`ecs-infer run --events auto` end to end: a daemon process whose resync is ten minutes
away sees drift within seconds through the queue it made, because an event (published
here with `put_events`, in AWS's CloudTrail shape, as the sandbox will emit it) names
the drifted service; the reconcile then reads AWS and corrects it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from e2e_helpers import Daemon, Sandbox, eventually, start_daemon

pytestmark = pytest.mark.timeout(300)

CLUSTER = "events-e2e"
NAME = "evented"
CLUSTER_SPEC = f"""\
apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: {CLUSTER}
spec:
  capacity:
    instanceType: inf1.xlarge
    market: on-demand
    minInstances: 1
    maxInstances: 2
---
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {NAME}
spec:
  cluster: {CLUSTER}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{NAME}:latest
  neuronCores: 1
  replicas: 1
  executionRoleArn: arn:aws:iam::123456789012:role/ecsTaskExecutionRole
"""


@pytest.fixture(scope="module")
def daemon(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("events")
    folder = root / "specs"
    folder.mkdir()
    (folder / "specs.yaml").write_text(CLUSTER_SPEC)
    running = start_daemon(
        folder,
        aws_endpoint=sandbox.endpoint,
        log=root / "daemon.log",
        # Long polls (the default): the sandbox answers one as soon as a message arrives
        # and serves other requests meanwhile.
        extra=("--resync-interval", "600", "--no-probe", "--events", "auto"),
    )
    yield running
    code, _ = running.stop()
    assert code == 0


def desired_count(sandbox: Sandbox) -> int | None:
    found = sandbox.client("ecs").describe_services(cluster=CLUSTER, services=[NAME])
    services = [s for s in found["services"] if s["status"] == "ACTIVE"]
    return int(services[0]["desiredCount"]) if services else None


def api_call(name: str, request: dict[str, Any]) -> dict[str, Any]:
    return {
        "Source": "aws.ecs",
        "DetailType": "AWS API Call via CloudTrail",
        "Detail": json.dumps(
            {
                "eventVersion": "1.08",
                "eventSource": "ecs.amazonaws.com",
                "eventName": name,
                "awsRegion": "us-east-1",
                "requestParameters": request,
                "responseElements": None,
            }
        ),
    }


def test_drift_is_corrected_within_seconds_of_its_event(daemon: Daemon, sandbox: Sandbox) -> None:
    eventually(lambda: daemon.get("/readyz")[0] == 200, timeout=60, what="/readyz 200")
    eventually(lambda: desired_count(sandbox) == 1, timeout=30, what="the service created")

    # The first reconciles' verifications are done before the drift.
    def settled() -> bool:
        status = daemon.status()
        reconciles = [
            status["deployments"][NAME]["reconcile"],
            status["clusters"][CLUSTER]["reconcile"],
        ]
        return all(r and r["result"] == "success" and r["retry_in_s"] is None for r in reconciles)

    eventually(settled, timeout=60, what="the first pass settled")

    sqs = sandbox.client("sqs")
    url = sqs.get_queue_url(QueueName="ecs-infer-events")["QueueUrl"]
    assert sqs.list_queue_tags(QueueUrl=url)["Tags"] == {"ecs-infer:managed-by": "ecs-infer"}
    rules = {rule["Name"] for rule in sandbox.client("events").list_rules()["Rules"]}
    assert {"ecs-infer-ecs-events", "ecs-infer-ec2-events", "ecs-infer-api-calls"} <= rules

    sandbox.client("ecs").update_service(cluster=CLUSTER, service=NAME, desiredCount=3)
    started = time.monotonic()
    published = sandbox.client("events").put_events(
        Entries=[
            api_call("UpdateService", {"cluster": CLUSTER, "service": NAME, "desiredCount": 3}),
            # Someone else's: counted, mapped to nothing.
            api_call("UpdateService", {"cluster": "payments", "service": "api"}),
        ]
    )
    assert published["FailedEntryCount"] == 0
    eventually(lambda: desired_count(sandbox) == 1, timeout=20, what="the drift corrected")
    elapsed = time.monotonic() - started
    assert elapsed < 15, f"took {elapsed:.1f} s: the resync (600 s) did it, not the event"
    print(f"drift corrected {elapsed:.2f} s after its event")

    assert (daemon.sample("ecsinfer_events_received_total", source="api") or 0) >= 2
    assert (daemon.sample("ecsinfer_events_dropped_total", reason="not-ours") or 0) >= 1
    assert (
        daemon.sample("ecsinfer_drift_corrections_total", deployment=NAME, resource="service") or 0
    ) >= 1
    batches = [
        json.loads(line) for line in daemon.log.read_text().splitlines() if '"events.batch"' in line
    ]
    assert any(batch.get("keys") == [f"deployment/{NAME}"] for batch in batches), batches


def test_garbage_on_the_queue_is_dropped_and_survived(daemon: Daemon, sandbox: Sandbox) -> None:
    sqs = sandbox.client("sqs")
    url = sqs.get_queue_url(QueueName="ecs-infer-events")["QueueUrl"]
    for body in ("{not json", "[]", json.dumps({"source": "aws.ecs"})):
        sqs.send_message(QueueUrl=url, MessageBody=body)
    eventually(
        lambda: (daemon.sample("ecsinfer_events_dropped_total", reason="malformed") or 0) >= 3,
        timeout=30,
        what="three malformed messages counted",
    )

    def drained() -> bool:
        attributes = sqs.get_queue_attributes(
            QueueUrl=url,
            AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
        )["Attributes"]
        return set(attributes.values()) == {"0"}

    eventually(drained, timeout=30, what="the garbage deleted, not redelivered")
    assert daemon.process.poll() is None and daemon.get("/healthz")[0] == 200
