"""Spec loading: every problem as FILE:LINE: message, and nothing half-loaded."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from controller.specs.loading import load_folder
from controller.specs.schema import render

REPO = Path(__file__).resolve().parents[2]

CLUSTER = """\
apiVersion: ecs-infer/v1
kind: InferenceCluster
metadata:
  name: demo
spec:
  capacity:
    instanceType: inf1.xlarge
"""

DEPLOYMENT = """\
apiVersion: ecs-infer/v1
kind: InferenceDeployment
metadata:
  name: bert
spec:
  cluster: demo
  model:
    image: example/bert:1
  neuronCores: 4
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))
    return path


def test_demo_folder_is_valid() -> None:
    result = load_folder(REPO / "specs")
    assert result.ok, result.errors
    assert set(result.specs.clusters) == {"ecs-inf1-demo", "ecs-inf2-demo"}
    bert = result.specs.deployments["bert"]
    assert bert.service_name == "bert-inf1"
    assert bert.task_family == "ecs-neuron"
    assert bert.spec.probe.interval == 10.0
    assert bert.spec.probe.latencyObjective == pytest.approx(0.1)
    assert result.specs.deployments["bert-inf2"].spec.runtime == "neuron"


def test_defaults_fill_optional_fields(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", CLUSTER + "---\n" + DEPLOYMENT)
    result = load_folder(tmp_path)
    assert result.ok, result.errors
    deployment = result.specs.deployments["bert"]
    assert deployment.spec.replicas == 1
    assert deployment.spec.model.grpcPort == 8500
    assert deployment.spec.driftPolicy == "enforce"
    assert result.specs.clusters["demo"].spec.ami == "auto"


BAD = [
    # (description, text, expected line, expected message fragment)
    ("yaml syntax", "apiVersion: ecs-infer/v1\nkind: [InferenceCluster\nmetadata: {}\n", 3, "YAML"),
    ("duplicate key", CLUSTER + "metadata:\n  name: x\n", 8, "duplicate"),
    ("not a mapping", "- a\n- b\n", 1, "mapping"),
    ("api version", CLUSTER.replace("ecs-infer/v1", "ecs-infer/v9"), 1, "apiVersion"),
    ("kind", CLUSTER.replace("InferenceCluster", "InferenceThing"), 2, "kind"),
    ("unknown field", CLUSTER + "  colour: blue\n", 8, "spec.colour: unknown field"),
    ("wrong type", CLUSTER + "    minInstances: lots\n", 8, "spec.capacity.minInstances"),
    ("instance type", CLUSTER.replace("inf1.xlarge", "m5.large"), 7, "m5.large"),
    (
        "min above max",
        CLUSTER + "    minInstances: 5\n    maxInstances: 2\n",
        6,
        "maxInstances (2) is below minInstances (5)",
    ),
    ("missing field", DEPLOYMENT.replace("  model:\n    image: example/bert:1\n", ""), 5, "model"),
    ("duration", DEPLOYMENT + "  probe:\n    interval: soon\n", 11, "not a duration"),
    ("market", CLUSTER + "    market: cheap\n", 8, "market"),
    (
        "repeated output",
        DEPLOYMENT + "  probe:\n    outputFilter: [pooled_output, pooled_output]\n",
        11,
        "spec.probe.outputFilter: names pooled_output more than once",
    ),
    ("empty output", DEPLOYMENT + "  probe:\n    outputFilter: ['']\n", 11, "outputFilter.0"),
]


@pytest.mark.parametrize(
    ("text", "line", "fragment"), [case[1:] for case in BAD], ids=[c[0] for c in BAD]
)
def test_each_problem_names_file_and_line(
    tmp_path: Path, text: str, line: int, fragment: str
) -> None:
    path = write(tmp_path, "bad.yaml", text)
    result = load_folder(tmp_path)
    assert not result.ok
    messages = [str(error) for error in result.errors]
    assert any(m.startswith(f"{path}:{line}: ") and fragment in m for m in messages), messages
    assert result.specs.is_empty, "a folder with an error must not yield part of its specs"


def test_cross_document_checks(tmp_path: Path) -> None:
    write(tmp_path, "cluster.yaml", CLUSTER)
    deployments = write(
        tmp_path,
        "deployments.yaml",
        DEPLOYMENT
        + "---\n"
        + DEPLOYMENT.replace("cluster: demo", "cluster: elsewhere").replace("bert", "other"),
    )
    again = write(
        tmp_path,
        "nested/again.yml",
        DEPLOYMENT
        + "---\n"
        + DEPLOYMENT.replace("name: bert", "name: bert2")
        + "  serviceName: bert\n",
    )
    messages = [str(error) for error in load_folder(tmp_path).errors]
    assert sorted(messages) == sorted(
        [
            f"{deployments}:16: spec.cluster: no InferenceCluster named 'elsewhere' in the "
            "folder (declared: demo)",
            f"{again}:4: duplicate InferenceDeployment name 'bert' (first defined at "
            f"{deployments}:1)",
            f"{again}:20: service 'bert' in cluster 'demo' is already used by "
            "InferenceDeployment 'bert'",
        ]
    )


def test_replica_larger_than_instance(tmp_path: Path) -> None:
    write(
        tmp_path,
        "a.yaml",
        CLUSTER + "---\n" + DEPLOYMENT.replace("neuronCores: 4", "neuronCores: 16"),
    )
    messages = [str(e) for e in load_folder(tmp_path).errors]
    assert messages == [
        f"{tmp_path / 'a.yaml'}:17: spec.neuronCores: 16 NeuronCores per replica do not fit "
        "on inf1.xlarge, which has 4"
    ]


def test_hidden_folders_and_other_files_are_skipped(tmp_path: Path) -> None:
    write(tmp_path, ".git/config.yaml", "not: [valid")
    write(tmp_path, ".hidden.yaml", "not: [valid")
    write(tmp_path, "README.md", "# notes")
    write(tmp_path, "a.yaml", CLUSTER)
    result = load_folder(tmp_path)
    assert result.ok, result.errors
    assert [path.name for path in result.files] == ["a.yaml"]


def test_empty_documents_are_ignored(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", "---\n" + CLUSTER + "---\n")
    assert load_folder(tmp_path).ok


def test_missing_folder_is_an_error(tmp_path: Path) -> None:
    result = load_folder(tmp_path / "nope")
    assert not result.ok
    assert "no such file or folder" in str(result.errors[0])


def test_committed_schema_is_current() -> None:
    committed = (REPO / "specs" / "schema.json").read_text()
    assert committed == render(), "run: python -m controller.specs.schema > specs/schema.json"


def test_a_reload_sees_each_file_as_it_is_now(tmp_path: Path) -> None:
    # Parsed documents are remembered by text: an edit is a new text, and an identical
    # file elsewhere is still its own file in every error.
    cluster = write(tmp_path, "cluster.yaml", CLUSTER + "    maxInstances: 10\n")
    first = load_folder(tmp_path)
    assert first.ok and first.specs.clusters["demo"].spec.capacity.maxInstances == 10
    cluster.write_text(CLUSTER + "    maxInstances: 3\n")
    second = load_folder(tmp_path)
    assert second.specs.clusters["demo"].spec.capacity.maxInstances == 3
    write(tmp_path, "copy.yaml", cluster.read_text())
    third = load_folder(tmp_path)
    assert [(e.path.name, e.line) for e in third.errors] == [("copy.yaml", 4)]
