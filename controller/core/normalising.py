"""The canonical form of task-definition content, so that what AWS fills in is never drift.

Owns: turning either side of a comparison (our `RegisterTaskDefinition` request, or the
`taskDefinition` of a `DescribeTaskDefinition` response from ECS or moto) into one
canonical form. Must not: decide what differs or what to do about it (`planning`), or
talk to AWS.

The canonical form is the *minimal* one:
- only the fields a `RegisterTaskDefinition` request can carry survive at the top level
  (ECS adds `taskDefinitionArn`, `revision`, `status`, `compatibilities`,
  `requiresAttributes`, `registeredAt`, `registeredBy`, `deregisteredAt`, ...);
- a field whose value is `None`, `[]`, `{}` or its documented default is dropped, so that
  absent and default read alike (ECS answers `cpu: 0`, `essential: true`,
  `volumesFrom: []`, `protocol: tcp` and `networkMode: bridge` whether or not they were
  asked for);
- lists whose order carries no meaning are sorted (environment by name, containers by
  name, capabilities and device permissions as sets...).

The rules are tables (`_SHAPES`) rather than code, so that a newly seen AWS default is
one line. Nested fields the tables do not name are kept as they are: a field we do not
know is compared, never silently ignored.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

# Everything a RegisterTaskDefinition request may carry, except `tags` (bookkeeping,
# compared separately). Any other top-level key of a describe response is AWS's own.
REQUEST_FIELDS = frozenset(
    {
        "family",
        "taskRoleArn",
        "executionRoleArn",
        "networkMode",
        "containerDefinitions",
        "volumes",
        "placementConstraints",
        "requiresCompatibilities",
        "cpu",
        "memory",
        "pidMode",
        "ipcMode",
        "proxyConfiguration",
        "inferenceAccelerators",
        "ephemeralStorage",
        "runtimePlatform",
        "enableFaultInjection",
    }
)

SortKey = Callable[[Any], Any]


def _by(*names: str) -> SortKey:
    """Sort objects by some of their fields (absent fields sort first)."""

    def key(item: Any) -> Any:
        if not isinstance(item, Mapping):
            return (0, str(item), ())
        return (1, "", tuple(str(item.get(name, "")) for name in names))

    return key


def _as_set(item: Any) -> Any:
    return str(item)


@dataclass(frozen=True)
class _Shape:
    """How to normalise one kind of object of the task-definition document."""

    # Field -> the value AWS assumes when the field is absent.
    defaults: Mapping[str, Any] = field(default_factory=dict)
    # Field -> the shape of the nested object (or of each object of a nested list).
    children: Mapping[str, str] = field(default_factory=dict)
    # List field -> how to order it, for lists whose order carries no meaning.
    unordered: Mapping[str, SortKey] = field(default_factory=dict)


_SHAPES: dict[str, _Shape] = {
    "taskDefinition": _Shape(
        # EC2 tasks without a network mode run in bridge mode; ECS and moto answer
        # "bridge" for a request that did not name one.
        defaults={"networkMode": "bridge", "enableFaultInjection": False},
        children={
            "containerDefinitions": "container",
            "volumes": "volume",
            "placementConstraints": "placementConstraint",
        },
        unordered={
            "containerDefinitions": _by("name"),
            "volumes": _by("name"),
            "placementConstraints": _by("type", "expression"),
            "requiresCompatibilities": _as_set,
        },
    ),
    "container": _Shape(
        defaults={
            "cpu": 0,
            "essential": True,
            "privileged": False,
            "readonlyRootFilesystem": False,
            "disableNetworking": False,
            "interactive": False,
            "pseudoTerminal": False,
        },
        children={
            "portMappings": "portMapping",
            "mountPoints": "mountPoint",
            "volumesFrom": "volumeFrom",
            "linuxParameters": "linuxParameters",
        },
        unordered={
            "environment": _by("name"),
            "secrets": _by("name"),
            "portMappings": _by("containerPort", "protocol", "hostPort"),
            "mountPoints": _by("containerPath"),
            "volumesFrom": _by("sourceContainer"),
            "ulimits": _by("name"),
            "systemControls": _by("namespace"),
            "extraHosts": _by("hostname"),
            "dockerSecurityOptions": _as_set,
            "links": _as_set,
            "dnsServers": _as_set,
            "dnsSearchDomains": _as_set,
            "environmentFiles": _by("type", "value"),
            "resourceRequirements": _by("type"),
        },
    ),
    "portMapping": _Shape(defaults={"protocol": "tcp"}),
    "mountPoint": _Shape(defaults={"readOnly": False}),
    "volumeFrom": _Shape(defaults={"readOnly": False}),
    "linuxParameters": _Shape(
        defaults={"initProcessEnabled": False},
        children={"capabilities": "capabilities", "devices": "device"},
        unordered={"devices": _by("hostPath", "containerPath"), "tmpfs": _by("containerPath")},
    ),
    "capabilities": _Shape(unordered={"add": _as_set, "drop": _as_set}),
    "device": _Shape(unordered={"permissions": _as_set}),
    "volume": _Shape(),
    "placementConstraint": _Shape(),
    # Objects the tables do not describe: only the generic rules apply.
    "other": _Shape(),
}


def _is_default(value: Any, default: Any) -> bool:
    # Strict on type: `cpu: False` or `essential: 1` are not the defaults.
    return type(value) is type(default) and value == default


def _is_empty(value: Any) -> bool:
    return value is None or (isinstance(value, Sequence | Mapping) and not value)


def _normalise_value(value: Any, shape_name: str) -> Any:
    if isinstance(value, Mapping):
        return _normalise_object(value, _SHAPES[shape_name])
    if isinstance(value, list | tuple):
        return [_normalise_value(item, shape_name) for item in value]
    return value


def _normalise_object(value: Mapping[str, Any], shape: _Shape) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key in sorted(value):
        item = _normalise_value(value[key], shape.children.get(key, "other"))
        if isinstance(item, list) and key in shape.unordered:
            item = sorted(item, key=shape.unordered[key])
        if _is_empty(item):
            continue
        if key in shape.defaults and _is_default(item, shape.defaults[key]):
            continue
        result[key] = item
    return result


def normalise_task_definition(content: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical form of a RegisterTaskDefinition request or a described revision.

    Idempotent: normalising a canonical form returns it unchanged.
    """
    request = {key: value for key, value in content.items() if key in REQUEST_FIELDS}
    return _normalise_object(request, _SHAPES["taskDefinition"])


def same_content(left: Mapping[str, Any], right: Mapping[str, Any]) -> bool:
    """Whether two task definitions (either side, normalised or not) would run the same."""
    return normalise_task_definition(left) == normalise_task_definition(right)


# --- services ----------------------------------------------------------------------------

# What ECS assumes for a REPLICA service's rolling deployments when a field is absent.
DEPLOYMENT_DEFAULTS: Mapping[str, Any] = {
    "deploymentCircuitBreaker": {"enable": False, "rollback": False},
    "maximumPercent": 200,
    "minimumHealthyPercent": 100,
}


def normalise_deployment_configuration(raw: Mapping[str, Any] | None) -> dict[str, Any]:
    """The managed part of a service's `deploymentConfiguration`, ECS's defaults filled
    in, so that a service that never named them reads as one that named the defaults.
    Fields ecs-infer does not set (`alarms`, `strategy`, `bakeTimeInMinutes`, hooks...)
    are not ours to compare and are dropped."""
    raw = raw or {}
    breaker = raw.get("deploymentCircuitBreaker") or {}
    return {
        "deploymentCircuitBreaker": {
            "enable": bool(breaker.get("enable", False)),
            "rollback": bool(breaker.get("rollback", False)),
        },
        "maximumPercent": int(raw.get("maximumPercent", DEPLOYMENT_DEFAULTS["maximumPercent"])),
        "minimumHealthyPercent": int(
            raw.get("minimumHealthyPercent", DEPLOYMENT_DEFAULTS["minimumHealthyPercent"])
        ),
    }


def normalise_placement_constraints(
    raw: Sequence[Mapping[str, Any]] | None,
) -> tuple[dict[str, str], ...]:
    """Constraints are all met or the task is not placed: their order carries no meaning."""
    constraints = [
        {key: str(value) for key, value in item.items() if value not in (None, "")}
        for item in raw or ()
    ]
    return tuple(sorted(constraints, key=lambda c: (c.get("type", ""), c.get("expression", ""))))


def normalise_placement_strategy(
    raw: Sequence[Mapping[str, Any]] | None,
) -> tuple[dict[str, str], ...]:
    """Strategies apply in order, so the order is kept; an absent `field` is dropped."""
    return tuple(
        {key: str(value) for key, value in item.items() if value not in (None, "")}
        for item in raw or ()
    )


def without_paths(
    content: Mapping[str, Any], container: str, fields: Sequence[str]
) -> dict[str, Any]:
    """`content` normalised, without these fields of the named container (the fields that
    others own, e.g. the model container's `image` under `ignore: [image]`)."""
    canonical = normalise_task_definition(content)
    containers = []
    for definition in canonical.get("containerDefinitions", ()):
        if definition.get("name") == container:
            definition = {k: v for k, v in definition.items() if k not in fields}
        containers.append(definition)
    if containers:
        canonical["containerDefinitions"] = containers
    return canonical
