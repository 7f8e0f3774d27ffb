"""The trimmed botocore service models: up to date with the installed botocore, covering
every call the controller makes, used by `AwsClients`, and the trimmer itself."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest
from aiobotocore.session import get_session
from aws_helpers import NO_RETRIES
from botocore import xform_name
from botocore.model import ServiceModel
from botocore.session import Session

import controller
from controller.aws.clients import AwsClients, RequestCounter
from controller.aws.service_models import (
    MODELS_DIR,
    OPERATIONS,
    botocore_loader,
    render_models,
    trim_model,
    use_trimmed_models,
)
from controller.sandbox.emulator import Emulator

REGENERATE = "run `.venv/bin/python -m controller.aws.service_models` and commit the result"
SOURCE = Path(controller.__file__).parent
# Client methods that are not AWS operations.
META_METHODS = frozenset(
    {"get_paginator", "can_paginate", "get_waiter", "close", "generate_presigned_url"}
)
# `meta.events` is botocore's event system of a client, not the EventBridge client.
SERVICE = r"(?<!meta\.)\b(ecs|ec2|ssm|sts|sqs|events)"
CALL = re.compile(SERVICE + r"\s*\.\s*([a-z_][a-z0-9_]*)\s*\(")
PAGINATOR = re.compile(SERVICE + r"\s*\.\s*get_paginator\(\s*[\"']([a-z0-9_]+)[\"']")
OPERATION_NAME = re.compile(r"""(?:service=["'](\w+)["'],\s*)?operation=["']([A-Za-z0-9]+)["']""")


def test_committed_models_are_what_the_installed_botocore_generates() -> None:
    expected = render_models()
    committed = {
        path.relative_to(MODELS_DIR).as_posix(): path.read_text(encoding="utf-8")
        for path in MODELS_DIR.rglob("*")
        if path.is_file()
    }
    missing = sorted(expected.keys() - committed.keys())
    extra = sorted(committed.keys() - expected.keys())
    stale = sorted(
        name for name in expected.keys() & committed.keys() if expected[name] != committed[name]
    )
    assert not (missing or extra or stale), (
        f"controller/aws/models is out of date with the installed botocore or with "
        f"OPERATIONS (missing {missing}, extra {extra}, different {stale}): {REGENERATE}"
    )


def _full_operation_names(service: str) -> dict[str, str]:
    """`{"describe_tasks": "DescribeTasks", ...}` from botocore's full model."""
    loader = botocore_loader()
    version = loader.determine_latest_version(service, "service-2")
    model = ServiceModel(loader.load_service_model(service, "service-2", version), service)
    return {xform_name(name): name for name in model.operation_names}


def _calls_in_source() -> set[tuple[str, str, str]]:
    """Every (service, operation, where) the controller's source calls or names, the
    sandbox (which drives moto itself) excepted."""
    full = {service: _full_operation_names(service) for service in OPERATIONS}
    found: set[tuple[str, str, str]] = set()
    for path in sorted(SOURCE.rglob("*.py")):
        relative = path.relative_to(SOURCE.parent)
        if relative.parts[:2] == ("controller", "sandbox"):
            continue
        text = path.read_text(encoding="utf-8")

        def where(match: re.Match[str], *, path: Path = relative, text: str = text) -> str:
            return f"{path}:{text.count(chr(10), 0, match.start()) + 1}"

        for regex in (CALL, PAGINATOR):
            for match in regex.finditer(text):
                service, method = match.groups()
                if method in META_METHODS:
                    continue
                assert method in full[service], (
                    f"{where(match)}: {service}.{method} is not a {service} operation"
                )
                found.add((service, full[service][method], where(match)))
        for match in OPERATION_NAME.finditer(text):
            service, operation = match.groups()
            services = [service] if service else [s for s in full if operation in OPERATIONS[s]]
            found.add((services[0] if services else "?", operation, where(match)))
    return found


def test_every_call_of_the_controller_is_a_trimmed_operation() -> None:
    calls = _calls_in_source()
    assert len(calls) > 40, "the source scan found too few calls: is the regex still right?"
    missing = sorted(
        f"{where}: {service}.{operation}"
        for service, operation, where in calls
        if operation not in OPERATIONS.get(service, ())
    )
    assert not missing, (
        "calls to operations the trimmed models lack (an AttributeError at run time): add "
        f"them to OPERATIONS in controller/aws/service_models.py, then {REGENERATE}: {missing}"
    )


def test_every_trimmed_operation_is_called() -> None:
    called = {(service, operation) for service, operation, _ in _calls_in_source()}
    unused = sorted(
        f"{service}.{operation}"
        for service, operations in OPERATIONS.items()
        for operation in operations
        if (service, operation) not in called
    )
    assert not unused, f"OPERATIONS lists operations nothing calls; drop them: {unused}"


async def test_clients_have_exactly_the_trimmed_operations(
    aws: Emulator, clients: AwsClients, counter: RequestCounter
) -> None:
    for service, operations in OPERATIONS.items():
        client = getattr(clients, service)
        assert client.meta.service_model.operation_names == sorted(operations), service
    assert not hasattr(clients.ecs, "start_task")

    # A paginated read through a trimmed model (botocore's paginator config).
    ec2 = aws.boto3_client("ec2")
    for _ in range(6):
        ec2.run_instances(ImageId="ami-12c6146b", MinCount=1, MaxCount=1, InstanceType="t3.micro")
    expected = {
        instance["InstanceId"]
        for reservation in ec2.describe_instances()["Reservations"]
        for instance in reservation["Instances"]
    }
    pages = [
        page
        async for page in clients.ec2.get_paginator("describe_instances").paginate(
            PaginationConfig={"PageSize": 5}
        )
    ]
    found = {
        instance["InstanceId"]
        for page in pages
        for reservation in page["Reservations"]
        for instance in reservation["Instances"]
    }
    assert found == expected and len(found) >= 6
    assert len(pages) >= 2 and counter.count("ec2.DescribeInstances") == len(pages)
    assert await clients.account_id() == "123456789012"


async def test_an_injected_session_gets_the_trimmed_models(aws: Emulator) -> None:
    session = get_session()
    async with AwsClients(settings=NO_RETRIES, session=session) as clients:
        assert clients.ec2.meta.service_model.operation_names == sorted(OPERATIONS["ec2"])
    assert session.get_config_variable("data_path").split(os.pathsep)[0] == str(MODELS_DIR)


async def test_a_session_that_already_loaded_data_keeps_the_full_models(aws: Emulator) -> None:
    """botocore builds a session's data loader once, from `data_path`: too late for the
    trimmed models, but the clients still work."""
    session = get_session()
    async with session.create_client("sts") as sts:
        await sts.get_caller_identity()
    async with AwsClients(settings=NO_RETRIES, session=session) as clients:
        assert len(clients.ec2.meta.service_model.operation_names) > 100
        assert await clients.account_id() == "123456789012"
        described = await clients.ecs.describe_clusters(clusters=["nothing"])
        assert described["clusters"] == []


def test_user_data_paths_stay_after_ours(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_DATA_PATH", os.pathsep.join(["/theirs/a", "/theirs/b"]))
    session = Session()
    use_trimmed_models(session)
    use_trimmed_models(session)  # idempotent
    expected = os.pathsep.join([str(MODELS_DIR), "/theirs/a", "/theirs/b"])
    assert session.get_config_variable("data_path") == expected


def _ref(shape: str, **extra: Any) -> dict[str, Any]:
    return {"shape": shape, "documentation": "a member", **extra}


TINY: dict[str, Any] = {
    "version": "2.0",
    "documentation": "The service.",
    "metadata": {"apiVersion": "2020-01-01", "protocol": "json", "serviceId": "Tiny"},
    "operations": {
        "GetThing": {
            "name": "GetThing",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "GetThingRequest"},
            "output": {"shape": "GetThingResponse"},
            "errors": [{"shape": "NotFound"}],
            "documentation": "Gets a thing.",
            "documentationUrl": "https://example.com",
        },
        "DropThing": {
            "name": "DropThing",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "DropThingRequest"},
            "errors": [{"shape": "Conflict"}],
        },
    },
    "shapes": {
        "GetThingRequest": {
            "type": "structure",
            "required": ["Id"],
            "members": {"Id": _ref("String"), "documentation": _ref("Boolean")},
        },
        "GetThingResponse": {"type": "structure", "members": {"Things": _ref("ThingList")}},
        "ThingList": {"type": "list", "member": _ref("Thing", locationName="item")},
        "Thing": {"type": "structure", "members": {"Labels": _ref("LabelMap")}},
        "LabelMap": {"type": "map", "key": {"shape": "LabelKey"}, "value": {"shape": "Label"}},
        "LabelKey": {"type": "string", "max": 128, "documentation": "A key."},
        "Label": {"type": "string", "enum": ["documentation", "other"]},
        "String": {"type": "string"},
        "Boolean": {"type": "boolean"},
        "NotFound": {"type": "structure", "members": {"Reason": _ref("Reason")}, "exception": True},
        "Reason": {"type": "string"},
        "DropThingRequest": {"type": "structure", "members": {"Force": _ref("Boolean")}},
        "Conflict": {"type": "structure", "members": {}, "exception": True},
        "Unused": {"type": "structure", "members": {"Id": _ref("String")}},
    },
}


def test_trim_model_keeps_what_the_operations_reach_without_documentation() -> None:
    trimmed = trim_model(TINY, ["GetThing"])
    assert trimmed["version"] == "2.0" and trimmed["metadata"] == TINY["metadata"]
    assert "documentation" not in trimmed
    assert trimmed["operations"] == {
        "GetThing": {
            "name": "GetThing",
            "http": {"method": "POST", "requestUri": "/"},
            "input": {"shape": "GetThingRequest"},
            "output": {"shape": "GetThingResponse"},
            "errors": [{"shape": "NotFound"}],
        }
    }
    assert set(trimmed["shapes"]) == {
        "GetThingRequest",  # input
        "GetThingResponse",  # output
        "String",  # structure member
        "Boolean",  # a member named "documentation" is a member like any other
        "ThingList",
        "Thing",  # list member
        "LabelMap",
        "LabelKey",  # map key
        "Label",  # map value
        "NotFound",  # error
        "Reason",  # an error's member
    }
    shapes = trimmed["shapes"]
    assert shapes["GetThingRequest"] == {
        "type": "structure",
        "required": ["Id"],
        "members": {"Id": {"shape": "String"}, "documentation": {"shape": "Boolean"}},
    }
    assert shapes["ThingList"]["member"] == {"shape": "Thing", "locationName": "item"}
    assert shapes["LabelKey"] == {"type": "string", "max": 128}
    assert shapes["Label"]["enum"] == ["documentation", "other"]
    assert TINY["operations"]["GetThing"]["documentation"] == "Gets a thing."  # not mutated

    both = trim_model(TINY, ["DropThing", "GetThing"])
    assert set(both["operations"]) == {"DropThing", "GetThing"}
    assert set(both["shapes"]) - set(trimmed["shapes"]) == {"DropThingRequest", "Conflict"}
    assert "Unused" not in both["shapes"]


def test_trim_model_refuses_an_unknown_operation() -> None:
    with pytest.raises(KeyError, match="NoSuchThing"):
        trim_model(TINY, ["GetThing", "NoSuchThing"])


def test_a_trimmed_model_is_a_valid_botocore_model() -> None:
    model = ServiceModel(trim_model(TINY, ["GetThing"]), "tiny")
    output = model.operation_model("GetThing").output_shape
    assert output is not None
    assert model.operation_names == ["GetThing"]
    assert output.members["Things"].member.members["Labels"].value.name == "Label"  # type: ignore[attr-defined]
