"""Loading a spec folder: every `*.yaml` / `*.yml` below it, hidden folders skipped.

Owns: YAML parsing with line numbers, turning every problem into `FILE:LINE: message`,
and the checks that span documents (duplicate names, a deployment's cluster exists, a
replica fits an instance). Must not: touch AWS.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from controller.specs.models import InferenceCluster, InferenceDeployment


@dataclass(frozen=True)
class Source:
    path: Path
    line: int  # 1-based line of the document's first key

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class SpecError:
    path: Path
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.message}"


@dataclass(frozen=True, kw_only=True)
class SpecSet:
    """The valid specs of a folder, by metadata.name."""

    clusters: Mapping[str, InferenceCluster] = field(default_factory=dict)
    deployments: Mapping[str, InferenceDeployment] = field(default_factory=dict)
    sources: Mapping[tuple[str, str], Source] = field(default_factory=dict)  # (kind, name)

    @property
    def is_empty(self) -> bool:
        return not self.clusters and not self.deployments


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    specs: SpecSet
    errors: tuple[SpecError, ...]
    files: tuple[Path, ...]

    @property
    def ok(self) -> bool:
        return not self.errors
