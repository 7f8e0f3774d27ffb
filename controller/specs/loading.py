"""Loading a spec folder: every `*.yaml` / `*.yml` below it, hidden folders skipped.

Owns: YAML parsing with line numbers, turning every problem into `FILE:LINE: message`,
and the checks that span documents (duplicate names, a deployment's cluster exists, a
replica fits an instance). Must not: touch AWS.

A folder with any error yields an empty `SpecSet` beside its errors: callers must not act
on part of a folder (a half-valid folder would look like deleted specs and prune).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from controller.catalog import NEURON_CORES_PER_INSTANCE
from controller.specs.models import API_VERSION, KINDS, InferenceCluster, InferenceDeployment

SPEC_SUFFIXES = (".yaml", ".yml")


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

    @property
    def invalid_files(self) -> frozenset[Path]:
        return frozenset(error.path for error in self.errors)


def spec_files(root: Path) -> list[Path]:
    """Spec files below `root` in a stable order; hidden files and folders skipped."""
    if root.is_file():
        return [root]
    found = []
    for path in root.rglob("*"):
        relative = path.relative_to(root).parts
        if any(part.startswith(".") for part in relative):
            continue
        if path.suffix in SPEC_SUFFIXES and path.is_file():
            found.append(path)
    return sorted(found)


def load_folder(root: Path) -> LoadResult:
    """Load and check every spec below `root` (a folder, or a single file)."""
    if not root.exists():
        return LoadResult(
            specs=SpecSet(), errors=(SpecError(root, 0, "no such file or folder"),), files=()
        )
    files = spec_files(root)
    loader = _Loader()
    for path in files:
        loader.load_file(path)
    loader.check_references()
    errors = tuple(loader.errors)
    if errors:
        return LoadResult(specs=SpecSet(), errors=errors, files=tuple(files))
    return LoadResult(
        specs=SpecSet(
            clusters=loader.clusters, deployments=loader.deployments, sources=loader.sources
        ),
        errors=(),
        files=tuple(files),
    )


def _plain(node: Any) -> Any:
    """ruamel's round-trip containers and scalars as plain Python values."""
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    if isinstance(node, bool) or node is None:
        return node
    for plain_type in (int, float, str):
        if isinstance(node, plain_type):
            return plain_type(node)
    return node


def _line_of(document: Any, location: Sequence[int | str]) -> int:
    """The 1-based line of the deepest key of `location` present in the document."""
    line: int = document.lc.line + 1
    node = document
    for part in location:
        if isinstance(node, CommentedMap) and part in node:
            line = int(node.lc.key(part)[0]) + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and 0 <= part < len(node):
            line = int(node.lc.item(part)[0]) + 1
            node = node[part]
        else:
            break
    return line


def _message(error: Mapping[str, Any]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    text = str(error["msg"]).removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        text = "unknown field"
    elif error["type"] == "missing":
        text = "required field is missing"
    return f"{location}: {text}" if location else text


@functools.lru_cache(maxsize=4096)
def _parse(text: str) -> tuple[Any, ...]:
    """The YAML documents of a file's text, with their line numbers. Remembered by the
    text itself: a daemon reloading a folder of many files after one changed parses only
    that one again (ruamel's round-trip parser is most of a reload's cost). The documents
    are only read, never changed, so sharing them between loads is safe."""
    return tuple(YAML(typ="rt").load_all(text))


class _Loader:
    def __init__(self) -> None:
        self.errors: list[SpecError] = []
        self.clusters: dict[str, InferenceCluster] = {}
        self.deployments: dict[str, InferenceDeployment] = {}
        self.sources: dict[tuple[str, str], Source] = {}
        self._documents: dict[tuple[str, str], Any] = {}

    def error(self, path: Path, line: int, message: str) -> None:
        self.errors.append(SpecError(path, line, message))

    def load_file(self, path: Path) -> None:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            self.error(path, 1, f"cannot read file: {exc}")
            return
        try:
            documents = _parse(text)
        except MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line = mark.line + 1 if mark is not None else 1
            problem = exc.problem or exc.context or "invalid YAML"
            self.error(path, line, f"YAML syntax error: {problem}")
            return
        except YAMLError as exc:
            self.error(path, 1, f"YAML syntax error: {exc}")
            return
        for document in documents:
            if document is None:
                continue  # an empty document, e.g. a trailing `---`
            self.load_document(path, document)

    def load_document(self, path: Path, document: Any) -> None:
        if not isinstance(document, CommentedMap):
            line = document.lc.line + 1 if isinstance(document, CommentedSeq) else 1
            self.error(path, line, "a spec document must be a mapping with apiVersion and kind")
            return
        start = int(document.lc.line) + 1
        api_version = document.get("apiVersion")
        if api_version != API_VERSION:
            self.error(
                path,
                _line_of(document, ["apiVersion"]),
                f"apiVersion: expected {API_VERSION!r}, got {api_version!r}",
            )
            return
        kind = document.get("kind")
        model = KINDS.get(str(kind))
        if model is None:
            known = " or ".join(sorted(KINDS))
            self.error(path, _line_of(document, ["kind"]), f"kind: expected {known}, got {kind!r}")
            return
        try:
            spec = model.model_validate(_plain(document))
        except ValidationError as exc:
            for error in exc.errors():
                self.error(path, _line_of(document, error["loc"]), _message(error))
            return
        self.add(path, start, document, spec)

    def add(
        self, path: Path, line: int, document: Any, spec: InferenceCluster | InferenceDeployment
    ) -> None:
        key = (spec.kind, spec.metadata.name)
        if key in self.sources:
            self.error(
                path,
                _line_of(document, ["metadata", "name"]),
                f"duplicate {spec.kind} name {spec.metadata.name!r} "
                f"(first defined at {self.sources[key]})",
            )
            return
        self.sources[key] = Source(path, line)
        self._documents[key] = document
        if isinstance(spec, InferenceCluster):
            self.clusters[spec.metadata.name] = spec
        else:
            self.deployments[spec.metadata.name] = spec

    def check_references(self) -> None:
        """Checks across documents; run once every file is loaded."""
        seen_services: dict[tuple[str, str], str] = {}
        seen_families: dict[str, str] = {}
        for name, deployment in sorted(self.deployments.items()):
            key = ("InferenceDeployment", name)
            source, document = self.sources[key], self._documents[key]
            spec = deployment.spec
            cluster = self.clusters.get(spec.cluster)
            if cluster is None:
                declared = ", ".join(sorted(self.clusters)) or "none"
                self.error(
                    source.path,
                    _line_of(document, ["spec", "cluster"]),
                    f"spec.cluster: no InferenceCluster named {spec.cluster!r} in the folder "
                    f"(declared: {declared})",
                )
            else:
                instance_type = cluster.spec.capacity.instanceType
                capacity = NEURON_CORES_PER_INSTANCE[instance_type]
                if spec.neuronCores > capacity:
                    self.error(
                        source.path,
                        _line_of(document, ["spec", "neuronCores"]),
                        f"spec.neuronCores: {spec.neuronCores} NeuronCores per replica do not "
                        f"fit on {instance_type}, which has {capacity}",
                    )
            service = (spec.cluster, deployment.service_name)
            if service in seen_services:
                self.error(
                    source.path,
                    _line_of(document, ["spec", "serviceName"]),
                    f"service {deployment.service_name!r} in cluster {spec.cluster!r} is "
                    f"already used by InferenceDeployment {seen_services[service]!r}",
                )
            seen_services.setdefault(service, name)
            family = deployment.task_family
            if family in seen_families:
                self.error(
                    source.path,
                    _line_of(document, ["spec", "taskFamily"]),
                    f"task family {family!r} is already used by InferenceDeployment "
                    f"{seen_families[family]!r}",
                )
            seen_families.setdefault(family, name)


def format_errors(errors: Iterable[SpecError]) -> str:
    return "\n".join(str(error) for error in errors)
