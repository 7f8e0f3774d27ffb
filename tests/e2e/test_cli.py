"""The one-shot commands as a user runs them: the real `ecs-infer` process against the
sandbox (emulated AWS and data plane) over loopback.

The tests build on each other, like a user's session: plan from an empty cluster, apply
with --wait, a plan that is in sync, a spec change, drift made out of band, a broken file,
an empty folder, and finally pruning a removed spec.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from e2e_helpers import Sandbox, aws_env, ecs_infer, free_port, table_row

REPO = Path(__file__).resolve().parents[2]
CLUSTER = "ecs-inf1-demo"  # the walkthrough's own names, from specs/ecs-inf1-demo.yaml
SERVICE = "bert-inf1"


def plan_json(sandbox: Sandbox, folder: Path) -> tuple[int, dict[str, Any]]:
    result = ecs_infer(sandbox, "plan", str(folder), "--output", "json")
    assert result.returncode in (0, 2), result.stderr
    return result.returncode, json.loads(result.stdout)


def service(sandbox: Sandbox) -> dict[str, Any]:
    found = sandbox.client("ecs").describe_services(cluster=CLUSTER, services=[SERVICE])
    services: list[dict[str, Any]] = found["services"]
    return services[0]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("specs")
    shutil.copy(REPO / "specs" / "ecs-inf1-demo.yaml", folder / "ecs-inf1-demo.yaml")
    return folder


def test_validate_accepts_the_demo_and_names_file_and_line(
    sandbox: Sandbox, tmp_path: Path
) -> None:
    assert ecs_infer(sandbox, "validate", str(REPO / "specs")).returncode == 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        (REPO / "specs" / "ecs-inf1-demo.yaml").read_text().replace("replicas: 1", "replicas: many")
    )
    result = ecs_infer(sandbox, "validate", str(tmp_path))
    assert result.returncode == 1
    assert f"{broken}:39: spec.replicas:" in result.stderr


def test_plan_from_empty_lists_the_walkthrough(sandbox: Sandbox, folder: Path) -> None:
    code, plan = plan_json(sandbox, folder)
    assert code == 2
    assert sorted((c["action"], c["resource"], c["reason"]) for c in plan["changes"]) == [
        ("create", "cluster", "missing"),
        ("create", "instance", "missing"),
        ("create", "instance", "missing"),
        ("create", "security-group", "missing"),
        ("create", "service", "missing"),
        ("create", "task-definition", "missing"),
        ("update", "fleet", "missing"),  # the fleet size recorded, last
    ]
    assert plan["summary"]["create"] == 6
    assert {c["deployment"] for c in plan["changes"] if c["resource"] == "service"} == {"bert"}
    text = ecs_infer(sandbox, "plan", str(folder))
    assert text.returncode == 2
    assert "Plan: 6 to create, 1 to update, 0 to replace, 0 to delete." in text.stdout


def test_apply_wait_converges_and_the_next_plan_is_empty(sandbox: Sandbox, folder: Path) -> None:
    applied = ecs_infer(sandbox, "apply", str(folder), "--wait", "--timeout", "120")
    assert applied.returncode == 0, applied.stdout + applied.stderr
    live = service(sandbox)
    assert live["runningCount"] == 1
    assert live["deployments"][0]["rolloutState"] == "COMPLETED"
    assert live["taskDefinition"].endswith(":task-definition/ecs-neuron:1")
    code, plan = plan_json(sandbox, folder)
    assert (code, plan["changes"]) == (0, [])


def test_status_without_a_daemon_reads_aws(sandbox: Sandbox, folder: Path) -> None:
    no_daemon = ("--daemon", "http://127.0.0.1:9")  # nothing listens on the discard port
    result = ecs_infer(sandbox, "status", str(folder), *no_daemon, "--output", "json")
    assert result.returncode == 0, result.stderr
    document = json.loads(result.stdout)
    assert document["source"] == "aws"
    row = document["deployments"]["bert"]
    assert (row["replicas"]["desired"], row["replicas"]["running"], row["drift"]) == (1, 1, [])
    assert row["probe"] is None  # probes are the daemon's

    text = ecs_infer(sandbox, "status", str(folder), *no_daemon)
    assert text.returncode == 0, text.stderr
    assert "from AWS" in text.stdout
    assert table_row(text.stdout, "bert")[1:8] == ["1", "1", "0", "no", "n/a", "n/a", "n/a"]


def test_status_with_neither_daemon_nor_aws_shows_the_specs_and_exits_0(folder: Path) -> None:
    environment = aws_env(f"http://127.0.0.1:{free_port()}")  # nobody listens
    result = subprocess.run(
        [sys.executable, "-m", "controller", "status", str(folder), "--daemon", ""],
        capture_output=True,
        text=True,
        timeout=120,
        env=environment,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "from the specs alone" in result.stdout
    assert "AWS was not read (cannot reach AWS" in " ".join(result.stdout.split())
    assert table_row(result.stdout, "bert")[1:5] == ["1", "?", "?", "?"]


def test_a_spec_change_is_one_update_with_its_field(sandbox: Sandbox, folder: Path) -> None:
    spec = folder / "ecs-inf1-demo.yaml"
    spec.write_text(spec.read_text().replace("replicas: 1", "replicas: 2"))
    code, plan = plan_json(sandbox, folder)
    services = [c for c in plan["changes"] if c["resource"] == "service"]
    assert code == 2
    assert [(c["action"], c["reason"]) for c in services] == [("update", "spec change")]
    assert {"path": "desiredCount", "from": 1, "to": 2} in services[0]["fields"]
    assert ecs_infer(sandbox, "apply", str(folder), "--wait", "--timeout", "120").returncode == 0
    assert service(sandbox)["runningCount"] == 2


def test_an_out_of_band_change_is_drift(sandbox: Sandbox, folder: Path) -> None:
    sandbox.client("ecs").update_service(cluster=CLUSTER, service=SERVICE, desiredCount=5)
    code, plan = plan_json(sandbox, folder)
    assert code == 2
    [change] = plan["changes"]
    assert (change["action"], change["resource"], change["reason"]) == (
        "update",
        "service",
        "drift",
    )
    assert {"path": "desiredCount", "from": 5, "to": 2} in change["fields"]
    assert ecs_infer(sandbox, "apply", str(folder)).returncode == 0
    assert service(sandbox)["desiredCount"] == 2


def test_a_broken_folder_changes_nothing(sandbox: Sandbox, folder: Path) -> None:
    spec = folder / "ecs-inf1-demo.yaml"
    good = spec.read_text()
    spec.write_text(
        good.replace("replicas: 2", "replicas: 0").replace("neuronCores: 4", "neuronCores: [4")
    )
    try:
        result = ecs_infer(sandbox, "apply", str(folder))
        assert result.returncode == 1
        assert f"{spec}:" in result.stderr
        assert service(sandbox)["desiredCount"] == 2
        # status still reports (exit 0), from the specs alone, naming the broken line
        status = ecs_infer(sandbox, "status", str(folder), "--daemon", "", "--output", "json")
        assert status.returncode == 0, status.stderr
        document = json.loads(status.stdout)
        assert document["source"] == "specs"
        assert any(error.startswith(f"{spec}:") for error in document["spec_errors"])
    finally:
        spec.write_text(good)


def test_an_empty_folder_deletes_nothing(sandbox: Sandbox, tmp_path: Path) -> None:
    code, plan = plan_json(sandbox, tmp_path)
    assert code == 0
    assert plan["changes"] == []
    assert any("empty" in warning for warning in plan["warnings"])
    assert ecs_infer(sandbox, "apply", str(tmp_path)).returncode == 0
    assert service(sandbox)["status"] == "ACTIVE"


def test_a_removed_deployment_is_pruned(sandbox: Sandbox, folder: Path) -> None:
    spec = folder / "ecs-inf1-demo.yaml"
    cluster_only = spec.read_text().split("\n---\n")[0] + "\n"
    spec.write_text(cluster_only)
    code, plan = plan_json(sandbox, folder)
    assert code == 2
    changes = {(c["action"], c["resource"], c["reason"]) for c in plan["changes"]}
    # The service and its revision go; the cluster's group no longer opens its ports.
    assert changes == {
        ("delete", "service", "orphan"),
        ("delete", "task-definition", "orphan"),
        ("update", "security-group", "spec change"),
    }, plan["changes"]
    assert ecs_infer(sandbox, "apply", str(folder)).returncode == 0
    assert service(sandbox)["status"] in ("DRAINING", "INACTIVE")
    code, plan = plan_json(sandbox, folder)
    assert (code, plan["changes"]) == (0, [])
