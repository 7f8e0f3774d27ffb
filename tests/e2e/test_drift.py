"""Drift end to end: the real daemon (events off, a 3 s resync) against the sandbox,
every managed field changed behind its back with boto3 as an operator would, then seen
in `/metrics`, `/status` and `ecs-infer plan`, corrected under `enforce`, left alone
under `detect` and under `spec.ignore`. The tests run in file order on one daemon.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Daemon, Sandbox, ecs_infer, eventually, start_daemon

pytestmark = pytest.mark.timeout(600)

ENFORCED, WATCHED = "drift-enforced", "drift-watched"
ENFORCE, DETECT, SCALED = "fixed", "watched", "scaled"
ROLE = "arn:aws:iam::123456789012:role/ecsTaskExecutionRole"


def cluster_spec(name: str, *, policy: str, instances: int) -> str:
    return f"""\
apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: {name}
spec:
  capacity:
    instanceType: inf1.xlarge
    market: on-demand
    minInstances: {instances}
    maxInstances: 4
  driftPolicy: {policy}
"""


def deployment_spec(name: str, *, extra: str = "", memory: int = 1000) -> str:
    return f"""\
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: {name}
spec:
  cluster: {ENFORCED}
  model:
    image: 123456789012.dkr.ecr.us-east-1.amazonaws.com/{name}:latest
  neuronCores: 4
  replicas: 1
  memoryReservation: {memory}
  executionRoleArn: {ROLE}
{extra}"""


@pytest.fixture(scope="module")
def daemon(sandbox: Sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("drift")
    folder = root / "specs"
    folder.mkdir()
    (folder / "enforced.yaml").write_text(cluster_spec(ENFORCED, policy="enforce", instances=1))
    (folder / "watched.yaml").write_text(cluster_spec(WATCHED, policy="detect", instances=1))
    (folder / "fixed.yaml").write_text(deployment_spec(ENFORCE))
    (folder / "watched-deployment.yaml").write_text(
        deployment_spec(DETECT, extra="  driftPolicy: detect\n")
    )
    (folder / "scaled.yaml").write_text(deployment_spec(SCALED, extra="  ignore: [replicas]\n"))
    running = start_daemon(folder, aws_endpoint=sandbox.endpoint, log=root / "daemon.log")
    yield running
    running.stop()


def service(sandbox: Sandbox, name: str) -> dict[str, Any]:
    """The ACTIVE service of that name; a KeyError (retried by `eventually`) if none."""
    found = sandbox.client("ecs").describe_services(
        cluster=ENFORCED, services=[name], include=["TAGS"]
    )
    for live in found["services"]:
        if live["status"] == "ACTIVE":
            return dict(live)
    raise KeyError(f"no ACTIVE service {name}")


def corrections(daemon: Daemon, deployment: str, resource: str) -> float:
    value = daemon.sample(
        "ecsinfer_drift_corrections_total", deployment=deployment, resource=resource
    )
    return value or 0.0


def converged(daemon: Daemon) -> bool:
    document = daemon.status()
    return bool(document["ready"]) and all(
        d["replicas"]["running"] == d["replicas"]["desired"] and not d["pending_actions"]
        for d in document["deployments"].values()
    )


def test_the_folder_converges(daemon: Daemon) -> None:
    eventually(lambda: converged(daemon), timeout=120, what="three deployments running")


def correct(daemon: Daemon, sandbox: Sandbox, resource: str, change: Any, check: Any) -> None:
    """Change something behind the daemon's back; it is corrected within a resync or two
    and the correction is counted."""
    before = corrections(daemon, ENFORCE, resource)
    change()
    eventually(check, timeout=20, what=f"{resource} corrected")
    eventually(
        lambda: corrections(daemon, ENFORCE, resource) > before,
        timeout=10,
        what="the correction counted",
    )


def test_an_out_of_band_desired_count_is_corrected_and_counted(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ecs = sandbox.client("ecs")
    correct(
        daemon,
        sandbox,
        "service",
        lambda: ecs.update_service(cluster=ENFORCED, service=ENFORCE, desiredCount=3),
        lambda: service(sandbox, ENFORCE)["desiredCount"] == 1,
    )


@pytest.mark.parametrize(
    ("what", "change", "settled"),
    [
        (
            "placement strategy",
            {"placementStrategy": [{"type": "binpack", "field": "memory"}]},
            lambda s: not s.get("placementStrategy"),
        ),
        (
            "placement constraints",
            {"placementConstraints": [{"type": "distinctInstance"}]},
            lambda s: not s.get("placementConstraints"),
        ),
        (
            "circuit breaker",
            {
                "deploymentConfiguration": {
                    "deploymentCircuitBreaker": {"enable": False, "rollback": False}
                }
            },
            lambda s: s["deploymentConfiguration"]["deploymentCircuitBreaker"]["enable"],
        ),
        (
            "minimum healthy percent",
            {
                "deploymentConfiguration": {
                    "deploymentCircuitBreaker": {"enable": True, "rollback": True},
                    "minimumHealthyPercent": 0,
                    "maximumPercent": 100,
                }
            },
            lambda s: s["deploymentConfiguration"].get("minimumHealthyPercent", 100) == 100,
        ),
    ],
)
def test_a_changed_service_field_is_corrected(
    daemon: Daemon, sandbox: Sandbox, what: str, change: dict[str, Any], settled: Any
) -> None:
    ecs = sandbox.client("ecs")
    correct(
        daemon,
        sandbox,
        "service",
        lambda: ecs.update_service(cluster=ENFORCED, service=ENFORCE, **change),
        lambda: settled(service(sandbox, ENFORCE)),
    )


def test_a_removed_ownership_tag_is_restored(daemon: Daemon, sandbox: Sandbox) -> None:
    ecs = sandbox.client("ecs")
    arn = service(sandbox, ENFORCE)["serviceArn"]

    def tagged() -> bool:
        tags = {t["key"]: t["value"] for t in service(sandbox, ENFORCE).get("tags", [])}
        return tags.get("ecs-infer:deployment") == ENFORCE

    correct(
        daemon,
        sandbox,
        "service",
        lambda: ecs.untag_resource(resourceArn=arn, tagKeys=["ecs-infer:deployment"]),
        tagged,
    )


def test_a_revision_registered_out_of_band_is_superseded_by_the_specs(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ecs = sandbox.client("ecs")
    family = service(sandbox, ENFORCE)["taskDefinition"].rsplit("/", 1)[-1].rsplit(":", 1)[0]
    ours = ecs.describe_task_definition(taskDefinition=family)["taskDefinition"]
    rogue = ecs.register_task_definition(
        family=family,
        containerDefinitions=[
            {**c, "image": "evil.example.com/bert:1"} for c in ours["containerDefinitions"]
        ],
        volumes=ours.get("volumes", []),
        executionRoleArn=ours["executionRoleArn"],
    )["taskDefinition"]["revision"]

    def newest_is_ours() -> bool:
        newest = ecs.describe_task_definition(taskDefinition=family, include=["TAGS"])
        tags = {t["key"]: t["value"] for t in newest.get("tags", [])}
        return (
            newest["taskDefinition"]["revision"] > rogue
            and tags.get("ecs-infer:managed-by") == "ecs-infer"
        )

    before = corrections(daemon, ENFORCE, "task-definition")
    eventually(newest_is_ours, timeout=20, what="the spec's content registered again")
    assert corrections(daemon, ENFORCE, "task-definition") > before
    # the rogue revision is not ours to deregister
    assert (
        ecs.describe_task_definition(taskDefinition=f"{family}:{rogue}")["taskDefinition"]["status"]
        == "ACTIVE"
    )


def test_a_deleted_service_is_recreated(daemon: Daemon, sandbox: Sandbox) -> None:
    ecs = sandbox.client("ecs")
    correct(
        daemon,
        sandbox,
        "service",
        lambda: ecs.delete_service(cluster=ENFORCED, service=ENFORCE, force=True),
        lambda: service(sandbox, ENFORCE)["status"] == "ACTIVE",
    )


def test_detect_shows_the_drift_everywhere_and_changes_nothing(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ecs = sandbox.client("ecs")
    ecs.update_service(cluster=ENFORCED, service=DETECT, desiredCount=2)
    eventually(
        lambda: daemon.sample("ecsinfer_drift", deployment=DETECT, resource="service") == 1,
        timeout=20,
        what="the drift gauge",
    )
    status = daemon.status()["deployments"][DETECT]
    assert "service.desiredCount" in status["drift"]
    [detail] = [d for d in status["drift_detail"] if d["path"] == "desiredCount"]
    assert (detail["from"], detail["to"], detail["corrected"]) == (2, 1, False)

    result = ecs_infer(sandbox, "plan", str(daemon.folder), "--output", "json")
    plan = json.loads(result.stdout)
    [drift] = [d for d in plan["detected_drift"] if d.get("deployment") == DETECT]
    assert {"path": "desiredCount", "from": 2, "to": 1} in drift["fields"]
    text = ecs_infer(sandbox, "plan", str(daemon.folder)).stdout
    assert "has drifted (driftPolicy: detect)" in text

    # several resyncs later: still drifted, never corrected
    eventually(lambda: daemon.status()["observed_at"] > 0, timeout=5)
    first = daemon.status()["observed_at"]
    eventually(lambda: daemon.status()["observed_at"] > first + 6, timeout=20, what="two resyncs")
    assert service(sandbox, DETECT)["desiredCount"] == 2
    assert daemon.sample("ecsinfer_drift", deployment=DETECT, resource="service") == 1
    assert corrections(daemon, DETECT, "service") == 0

    ecs.update_service(cluster=ENFORCED, service=DETECT, desiredCount=1)  # the drift ends
    eventually(
        lambda: daemon.sample("ecsinfer_drift", deployment=DETECT, resource="service") == 0,
        timeout=20,
        what="the drift gauge back at 0",
    )


def family_of(sandbox: Sandbox, name: str) -> str:
    return str(service(sandbox, name)["taskDefinition"].rsplit("/", 1)[-1].rsplit(":", 1)[0])


def rogue_revision(sandbox: Sandbox, name: str) -> str:
    """Someone registers a revision of the deployment's family with another image."""
    ecs = sandbox.client("ecs")
    ours = ecs.describe_task_definition(taskDefinition=family_of(sandbox, name))["taskDefinition"]
    return str(
        ecs.register_task_definition(
            family=ours["family"],
            containerDefinitions=[
                {**c, "image": "evil.example.com/bert:1"} for c in ours["containerDefinitions"]
            ],
            volumes=ours.get("volumes", []),
            executionRoleArn=ours["executionRoleArn"],
        )["taskDefinition"]["taskDefinitionArn"]
    )


def tag_back(sandbox: Sandbox, name: str, key: str, value: str) -> None:
    ecs = sandbox.client("ecs")
    ecs.tag_resource(
        resourceArn=service(sandbox, name)["serviceArn"], tags=[{"key": key, "value": value}]
    )


def update_watched(sandbox: Sandbox, **fields: Any) -> None:
    sandbox.client("ecs").update_service(cluster=ENFORCED, service=DETECT, **fields)


def deployment_configuration(*, breaker: bool = True, maximum: int = 200) -> dict[str, Any]:
    return {
        "deploymentCircuitBreaker": {"enable": breaker, "rollback": True},
        "maximumPercent": maximum,
        "minimumHealthyPercent": 100,
    }


DETECTED: list[tuple[str, str, Any, Any]] = [
    # (what, the field path status and plan show, the change, how the test puts it back)
    (
        "desired count",
        "desiredCount",
        lambda sb: update_watched(sb, desiredCount=2),
        lambda sb, _: update_watched(sb, desiredCount=1),
    ),
    (
        "placement strategy",
        "placementStrategy",
        lambda sb: update_watched(sb, placementStrategy=[{"type": "binpack", "field": "memory"}]),
        lambda sb, _: update_watched(sb, placementStrategy=[]),
    ),
    (
        "placement constraints",
        "placementConstraints",
        lambda sb: update_watched(sb, placementConstraints=[{"type": "distinctInstance"}]),
        lambda sb, _: update_watched(sb, placementConstraints=[]),
    ),
    (
        "circuit breaker",
        "deploymentConfiguration.deploymentCircuitBreaker.enable",
        lambda sb: update_watched(
            sb, deploymentConfiguration=deployment_configuration(breaker=False)
        ),
        lambda sb, _: update_watched(sb, deploymentConfiguration=deployment_configuration()),
    ),
    (
        "maximum percent",
        "deploymentConfiguration.maximumPercent",
        lambda sb: update_watched(
            sb, deploymentConfiguration=deployment_configuration(maximum=150)
        ),
        lambda sb, _: update_watched(sb, deploymentConfiguration=deployment_configuration()),
    ),
    (
        "ownership tag removed",
        "tags.ecs-infer:deployment",
        lambda sb: sb.client("ecs").untag_resource(
            resourceArn=service(sb, DETECT)["serviceArn"], tagKeys=["ecs-infer:deployment"]
        ),
        lambda sb, _: tag_back(sb, DETECT, "ecs-infer:deployment", DETECT),
    ),
    (
        "revision registered out of band",
        "containerDefinitions[bert].image",
        lambda sb: rogue_revision(sb, DETECT),
        lambda sb, arn: sb.client("ecs").deregister_task_definition(taskDefinition=arn),
    ),
]


@pytest.mark.parametrize(
    ("path", "change", "revert"), [c[1:] for c in DETECTED], ids=[c[0] for c in DETECTED]
)
def test_every_field_under_detect_shows_in_metrics_status_and_plan(
    daemon: Daemon, sandbox: Sandbox, path: str, change: Any, revert: Any
) -> None:
    made = change(sandbox)
    resource = "task-definition" if path.startswith("containerDefinitions") else "service"
    eventually(
        lambda: daemon.sample("ecsinfer_drift", deployment=DETECT, resource=resource) == 1,
        timeout=20,
        what=f"ecsinfer_drift for {path}",
    )
    assert f"{resource}.{path}" in daemon.status()["deployments"][DETECT]["drift"]
    plan = json.loads(ecs_infer(sandbox, "plan", str(daemon.folder), "--output", "json").stdout)
    found = [
        field["path"]
        for drift in plan["detected_drift"]
        if drift.get("deployment") == DETECT
        for field in drift["fields"]
    ]
    assert path in found
    assert corrections(daemon, DETECT, resource) == 0
    revert(sandbox, made)
    eventually(
        lambda: daemon.sample("ecsinfer_drift", deployment=DETECT, resource=resource) == 0,
        timeout=20,
        what=f"the drift of {path} ended",
    )


def test_ignored_replicas_survive_resyncs_and_a_spec_change(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ecs = sandbox.client("ecs")
    ecs.update_service(cluster=ENFORCED, service=SCALED, desiredCount=2)  # the autoscaler
    revision = service(sandbox, SCALED)["taskDefinition"]
    first = daemon.status()["observed_at"]
    eventually(lambda: daemon.status()["observed_at"] > first + 6, timeout=20, what="two resyncs")
    assert service(sandbox, SCALED)["desiredCount"] == 2
    assert daemon.sample("ecsinfer_drift", deployment=SCALED, resource="service") == 0
    # the autoscaler's count is what the deployment should run now
    assert daemon.status()["deployments"][SCALED]["replicas"]["desired"] == 2
    assert daemon.sample("ecsinfer_deployment_replicas", deployment=SCALED, state="desired") == 2

    (daemon.folder / "scaled.yaml").write_text(
        deployment_spec(SCALED, extra="  ignore: [replicas]\n", memory=1200)
    )
    eventually(
        lambda: service(sandbox, SCALED)["taskDefinition"] != revision,
        timeout=30,
        what="the spec change rolled out",
    )
    assert service(sandbox, SCALED)["desiredCount"] == 2
    assert corrections(daemon, SCALED, "service") == 0
    # The fleet is sized from the spec's replicas (the NeuronCore issue sizes it from
    # demand): the autoscaler scales back in before the next test.
    ecs.update_service(cluster=ENFORCED, service=SCALED, desiredCount=1)


def group_of(sandbox: Sandbox, cluster: str) -> dict[str, Any]:
    [group] = sandbox.client("ec2").describe_security_groups(
        Filters=[{"Name": "tag:ecs-infer:cluster", "Values": [cluster]}]
    )["SecurityGroups"]
    return group


def open_to_world(group: dict[str, Any]) -> bool:
    return any(
        r.get("CidrIp") == "0.0.0.0/0" for p in group["IpPermissions"] for r in p["IpRanges"]
    )


def test_a_port_opened_to_the_world_is_closed_under_enforce_and_reported_under_detect(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ec2 = sandbox.client("ec2")
    for cluster in (ENFORCED, WATCHED):
        ec2.authorize_security_group_ingress(
            GroupId=group_of(sandbox, cluster)["GroupId"],
            IpPermissions=[
                {
                    "IpProtocol": "tcp",
                    "FromPort": 22,
                    "ToPort": 22,
                    "IpRanges": [{"CidrIp": "0.0.0.0/0"}],
                }
            ],
        )
    eventually(
        lambda: not open_to_world(group_of(sandbox, ENFORCED)), timeout=20, what="port 22 closed"
    )
    eventually(
        lambda: (
            daemon.sample("ecsinfer_cluster_drift", cluster=WATCHED, resource="security-group") == 1
        ),
        timeout=20,
        what="the detect cluster's drift gauge",
    )
    assert open_to_world(group_of(sandbox, WATCHED))
    assert "security-group.ingress" in daemon.status()["clusters"][WATCHED]["drift"]


def alive(sandbox: Sandbox, cluster: str) -> list[str]:
    reservations = sandbox.client("ec2").describe_instances(
        Filters=[
            {"Name": "tag:ecs-infer:cluster", "Values": [cluster]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )["Reservations"]
    return [i["InstanceId"] for r in reservations for i in r["Instances"]]


def test_a_terminated_instance_is_replaced_under_enforce_and_reported_under_detect(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ec2 = sandbox.client("ec2")
    [watched] = alive(sandbox, WATCHED)
    victims = alive(sandbox, ENFORCED)[:1]
    before = corrections(daemon, f"cluster/{ENFORCED}", "instance")
    ec2.terminate_instances(InstanceIds=[*victims, watched])

    eventually(
        lambda: (
            len(alive(sandbox, ENFORCED)) == 3 and not set(victims) & set(alive(sandbox, ENFORCED))
        ),
        timeout=30,
        what="the terminated instance replaced",
    )
    assert corrections(daemon, f"cluster/{ENFORCED}", "instance") > before
    eventually(
        lambda: daemon.sample("ecsinfer_cluster_drift", cluster=WATCHED, resource="instance") == 1,
        timeout=20,
        what="the lost instance reported",
    )
    [detail] = [
        d
        for d in daemon.status()["clusters"][WATCHED]["drift_detail"]
        if d["resource"] == "instance"
    ]
    assert (detail["id"], detail["path"], detail["from"]) == (watched, "state", "terminated")
    assert alive(sandbox, WATCHED) == []
    eventually(lambda: converged(daemon), timeout=90, what="the deployments running again")


def instance_state(sandbox: Sandbox, instance_id: str) -> str:
    [reservation] = sandbox.client("ec2").describe_instances(InstanceIds=[instance_id])[
        "Reservations"
    ]
    return str(reservation["Instances"][0]["State"]["Name"])


def test_a_stopped_instance_is_replaced_and_a_removed_instance_tag_restored(
    daemon: Daemon, sandbox: Sandbox
) -> None:
    ec2 = sandbox.client("ec2")
    stopped, untagged = alive(sandbox, ENFORCED)[:2]
    before = corrections(daemon, f"cluster/{ENFORCED}", "instance")
    ec2.delete_tags(Resources=[untagged], Tags=[{"Key": "Name"}])
    ec2.stop_instances(InstanceIds=[stopped])

    def name_tag() -> bool:
        [reservation] = ec2.describe_instances(InstanceIds=[untagged])["Reservations"]
        tags = {t["Key"]: t["Value"] for t in reservation["Instances"][0].get("Tags", [])}
        return tags.get("Name") == ENFORCED

    eventually(name_tag, timeout=20, what="the Name tag restored")
    eventually(
        lambda: (
            instance_state(sandbox, stopped) == "terminated" and len(alive(sandbox, ENFORCED)) == 3
        ),
        timeout=30,
        what="the stopped instance replaced",
    )
    assert corrections(daemon, f"cluster/{ENFORCED}", "instance") >= before + 2
    eventually(lambda: converged(daemon), timeout=90, what="the deployments running again")


def test_a_deleted_cluster_is_recreated(daemon: Daemon, sandbox: Sandbox) -> None:
    ecs = sandbox.client("ecs")
    before = corrections(daemon, f"cluster/{ENFORCED}", "cluster")
    ecs.delete_cluster(cluster=ENFORCED)

    def active() -> bool:
        [cluster] = ecs.describe_clusters(clusters=[ENFORCED], include=["TAGS"])["clusters"]
        tags = {t["key"]: t["value"] for t in cluster.get("tags", [])}
        return cluster["status"] == "ACTIVE" and tags.get("ecs-infer:managed-by") == "ecs-infer"

    eventually(active, timeout=20, what="the cluster recreated")
    eventually(
        lambda: corrections(daemon, f"cluster/{ENFORCED}", "cluster") > before,
        timeout=10,
        what="the correction counted",
    )


def test_the_log_has_one_line_per_drift(daemon: Daemon) -> None:
    lines = [
        json.loads(line)
        for line in Path(daemon.log).read_text().splitlines()
        if line.startswith("{")
    ]
    detected = [line for line in lines if line.get("event") == "drift.detected"]
    assert any(
        line["key"] == f"deployment/{DETECT}" and line["path"] == "desiredCount"
        for line in detected
    )
    assert any(
        line["key"] == f"cluster/{WATCHED}" and line["resource"] == "instance" for line in detected
    )
