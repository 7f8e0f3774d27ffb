"""The committed generated modules are what generate.sh makes from the committed .proto files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "controller" / "tfserving"
GENERATED = [
    "tensor_pb2.py",
    "tensor_pb2.pyi",
    "serving_pb2.py",
    "serving_pb2.pyi",
    "serving_pb2_grpc.py",
]


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    subprocess.run(
        ["bash", str(PACKAGE / "generate.sh"), str(out)],
        check=True,
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
    )
    return out / "controller" / "tfserving"


@pytest.mark.parametrize("name", GENERATED)
def test_committed_module_is_current(regenerated: Path, name: str) -> None:
    fresh = (regenerated / name).read_text()
    committed = (PACKAGE / name).read_text()
    assert committed == fresh, f"{name} is stale: run controller/tfserving/generate.sh"


def test_nothing_else_is_generated(regenerated: Path) -> None:
    assert sorted(path.name for path in regenerated.iterdir()) == sorted(GENERATED)
