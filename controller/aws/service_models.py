"""Trimmed botocore service models: only the operations the controller calls.

Owns: `OPERATIONS`, the one table of the AWS operations the controller calls, per
service; `trim_model`, which cuts a botocore `service-2` model down to a set of
operations; the generated models under `controller/aws/models/` (committed, shipped as
package data); and `use_trimmed_models`, which points a botocore session at them.
Must not: decide what to call (that is `observing` / `applying` / `discovering`).

Why: botocore loads a service's full model into every client, documentation included.
EC2 alone has ~800 operations and the controller uses 11; creating the ECS, EC2, SSM and
STS clients cost ~34 MB of the daemon's RSS with the full models and ~10 MB with these.

A client made from these models has exactly the operations of `OPERATIONS`: calling any
other one is an `AttributeError`. So a new call in the controller needs its operation
added to `OPERATIONS` (tests/aws/test_service_models.py fails until it is), and a new
botocore needs the models regenerated (the same test fails until they are). Regenerate
with:

    .venv/bin/python -m controller.aws.service_models

Paginators and waiters are not trimmed: botocore finds them in its own data directory
for the same API version, and a client only offers the paginators of its operations.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from botocore.loaders import Loader
from botocore.session import Session

MODELS_DIR = Path(__file__).resolve().parent / "models"
"""Where the trimmed models live: `<service>/<api-version>/service-2.json`, the layout of
a botocore data path."""

OPERATIONS: dict[str, tuple[str, ...]] = {
    "ecs": (
        "CreateCluster",
        "CreateService",
        "DeleteCluster",
        "DeleteService",
        "DeregisterTaskDefinition",
        "DescribeClusters",
        "DescribeContainerInstances",
        "DescribeServices",
        "DescribeTaskDefinition",
        "DescribeTasks",
        "ListClusters",
        "ListContainerInstances",
        "ListServices",
        "ListTaskDefinitionFamilies",
        "ListTaskDefinitions",
        "ListTasks",
        "RegisterTaskDefinition",
        "TagResource",
        "UpdateService",
    ),
    "ec2": (
        "AuthorizeSecurityGroupIngress",
        "CreateSecurityGroup",
        "CreateTags",
        "DeleteSecurityGroup",
        "DescribeInstances",
        "DescribeSecurityGroups",
        "DescribeSubnets",
        "DescribeVpcs",
        "RevokeSecurityGroupIngress",
        "RunInstances",
        "TerminateInstances",
    ),
    "ssm": ("GetParameters",),
    "sts": ("GetCallerIdentity",),
    # `run --events`: the queue the EventBridge rules feed, and the rules (`aws.events`).
    "sqs": (
        "CreateQueue",
        "DeleteMessageBatch",
        "GetQueueAttributes",
        "GetQueueUrl",
        "ListQueueTags",
        "ReceiveMessage",
        "SetQueueAttributes",
    ),
    "events": (
        "DescribeRule",
        "ListTagsForResource",
        "ListTargetsByRule",
        "PutRule",
        "PutTargets",
    ),
}
"""Every AWS operation the controller calls, by botocore service name. Client method
calls and paginator names alike (`get_paginator("list_tasks")` is `ListTasks`)."""

_DOC_KEYS = frozenset({"documentation", "documentationUrl"})
# Keys whose value maps names (of operations, shapes, structure members) to definitions:
# their keys are names, never documentation, so only their values are stripped.
_NAME_MAPS = frozenset({"operations", "shapes", "members"})
# Keys of a shape that refer to other shapes (`{"shape": name, ...}`).
_SHAPE_REFS = ("member", "key", "value")


def trim_model(model: Mapping[str, Any], operations: Iterable[str]) -> dict[str, Any]:
    """A copy of a botocore `service-2` model with only `operations` and the shapes they
    reach (input, output and errors, through structure members, list members and map
    keys and values), without documentation. Everything else (`version`, `metadata`,
    each kept operation and shape) is kept as it is."""
    wanted = sorted(set(operations))
    unknown = [name for name in wanted if name not in model["operations"]]
    if unknown:
        service = model.get("metadata", {}).get("serviceId", "?")
        raise KeyError(f"{service} has no operation(s) {', '.join(unknown)}")
    kept_operations = {name: model["operations"][name] for name in wanted}

    shapes: Mapping[str, Any] = model["shapes"]
    reached: set[str] = set()
    todo: list[str] = []
    for operation in kept_operations.values():
        todo.extend(operation[key]["shape"] for key in ("input", "output") if key in operation)
        todo.extend(error["shape"] for error in operation.get("errors", ()))
    while todo:
        name = todo.pop()
        if name in reached:
            continue
        reached.add(name)
        shape = shapes[name]
        todo.extend(member["shape"] for member in shape.get("members", {}).values())
        todo.extend(shape[key]["shape"] for key in _SHAPE_REFS if key in shape)

    trimmed = {key: value for key, value in model.items() if key not in ("operations", "shapes")}
    trimmed["operations"] = kept_operations
    trimmed["shapes"] = {name: shapes[name] for name in sorted(reached)}
    stripped: dict[str, Any] = _without_docs(trimmed)
    return stripped


def _without_docs(node: Any, *, names: bool = False) -> Any:
    """`node` without `documentation` / `documentationUrl` keys, at any depth. When
    `names`, `node` maps names to definitions: its keys are kept whatever they are."""
    if isinstance(node, Mapping):
        return {
            key: _without_docs(value, names=not names and key in _NAME_MAPS)
            for key, value in node.items()
            if names or key not in _DOC_KEYS
        }
    if isinstance(node, list):
        return [_without_docs(item) for item in node]
    return node


def botocore_loader() -> Loader:
    """A loader of botocore's own (installed) data only: no `AWS_DATA_PATH`, no
    `~/.aws/models`, so that the generated models depend on the botocore version alone."""
    return Loader(extra_search_paths=[Loader.BUILTIN_DATA_PATH], include_default_search_paths=False)


def render_models(loader: Loader | None = None) -> dict[str, str]:
    """The trimmed models' files, `{"<service>/<api-version>/service-2.json": text}`:
    sorted keys, indented, newline-terminated JSON, the same bytes for the same botocore."""
    loader = loader or botocore_loader()
    files: dict[str, str] = {}
    for service, operations in sorted(OPERATIONS.items()):
        version = loader.determine_latest_version(service, "service-2")
        model = loader.load_service_model(service, "service-2", version)
        trimmed = trim_model(model, operations)
        files[f"{service}/{version}/service-2.json"] = (
            json.dumps(trimmed, indent=1, sort_keys=True) + "\n"
        )
    return files


def write_models(directory: Path = MODELS_DIR, loader: Loader | None = None) -> list[Path]:
    """Regenerates `directory` from the installed botocore: writes every trimmed model and
    removes whatever else was there (a model of an API version botocore dropped)."""
    files = render_models(loader)
    for service in OPERATIONS:
        shutil.rmtree(directory / service, ignore_errors=True)
    written = []
    for relative, text in files.items():
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8", newline="\n")
        written.append(path)
    return written


def use_trimmed_models(session: Session) -> None:
    """Puts the trimmed models first on `session`'s `data_path`, ahead of any path the
    user set (`AWS_DATA_PATH` or `data_path` in the config file), which stay after them.

    Takes effect only if the session has not created its data loader yet, i.e. has not
    made a client or loaded any data: botocore builds the loader once, lazily, from
    `data_path`. On a session that already has one, nothing changes and clients get
    botocore's full models (they work, they only cost the memory). Once it took effect,
    every client of the services of `OPERATIONS` the session makes has only the trimmed operations.
    Idempotent."""
    ours = str(MODELS_DIR)
    current = session.get_config_variable("data_path") or ""
    theirs = [path for path in str(current).split(os.pathsep) if path and path != ours]
    session.set_config_variable("data_path", os.pathsep.join([ours, *theirs]))


def main() -> None:
    for path in write_models():
        print(path.relative_to(Path.cwd()) if path.is_relative_to(Path.cwd()) else path)


if __name__ == "__main__":
    main()
