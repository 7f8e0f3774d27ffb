"""The one place botocore/aiohttp errors become the project's two error kinds.

Owns: `translating_errors()` and `map_error()`, which map whatever botocore or aiohttp
raise into `TransientError` (worth retrying later) or `TerminalError` (retrying the same
request will not help); which AWS error codes are transient; spot capacity refusals.
The kinds themselves live in `controller.core.errors`, where the runner can use them.
Must not: retry, sleep, or log. Retrying within a call is botocore's job (see
`clients.AwsSettings`); retrying a reconcile later is the runner's.

Callers that expect a particular failure (a missing service, a spot capacity refusal)
look at `error_code()` of the botocore error *inside* the `translating_errors()` block
and handle it there; everything unexpected leaves the shell as one of the two kinds.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionError,
    HTTPClientError,
    NoCredentialsError,
    NoRegionError,
    ParamValidationError,
    PartialCredentialsError,
    ReadTimeoutError,
)

from controller.core.errors import THROTTLING_CODES, AwsError, TerminalError, TransientError

__all__ = [
    "SPOT_CAPACITY_CODES",
    "THROTTLING_CODES",
    "AwsError",
    "TerminalError",
    "TransientError",
    "error_code",
    "error_status",
    "is_throttling",
    "map_error",
    "translating_errors",
]

# Failures that are the service's (or the network's), not the request's.
_TRANSIENT_CODES = frozenset(
    {
        "InternalError",
        "InternalFailure",
        "InternalServerError",
        "ServerException",  # ECS
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "Unavailable",
        "RequestTimeout",
        "RequestTimeoutException",
        "IDPCommunicationError",
        "InsufficientInstanceCapacity",  # EC2 capacity comes back
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "UpdateInProgressException",  # ECS: a previous update is still being applied
        "IncorrectState",
        "DependencyViolation",  # EC2: e.g. a group still used by a terminating instance
        "ClusterContainsContainerInstancesException",  # until terminated instances leave
        "ClusterContainsServicesException",  # until deleted services finish draining
        "ClusterContainsTasksException",
    }
)

# run_instances refusals after which an on-demand launch may still succeed.
SPOT_CAPACITY_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        "InsufficientCapacity",
        "SpotInstanceCountExceeded",
        "UnfulfillableCapacity",
    }
)


def error_code(exc: BaseException) -> str | None:
    """AWS's error code of a botocore `ClientError` (or of a mapped `AwsError`)."""
    if isinstance(exc, AwsError):
        return exc.code
    if isinstance(exc, ClientError):
        code = exc.response.get("Error", {}).get("Code")
        return str(code) if code else None
    return None


def error_status(exc: BaseException) -> int | None:
    if isinstance(exc, AwsError):
        return exc.status
    if isinstance(exc, ClientError):
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return int(status) if status else None
    return None


def is_throttling(exc: BaseException) -> bool:
    return error_code(exc) in THROTTLING_CODES


def map_error(exc: BaseException) -> AwsError | None:
    """The project's error for a botocore/aiohttp failure; None for anything else."""
    if isinstance(exc, AwsError):
        return exc
    if isinstance(exc, ClientError):
        code = error_code(exc)
        status = error_status(exc)
        operation = getattr(exc, "operation_name", None)
        message = exc.response.get("Error", {}).get("Message") or str(exc)
        kind: type[AwsError]
        if code in THROTTLING_CODES or code in _TRANSIENT_CODES or (status or 0) >= 500:
            kind = TransientError
        else:
            kind = TerminalError
        return kind(
            f"{operation or 'request'} failed: {code}: {message}",
            operation=operation,
            code=code,
            status=status,
        )
    if isinstance(exc, ParamValidationError):
        return TerminalError(f"invalid request: {exc}")
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return TerminalError(f"no usable AWS credentials: {exc}")
    if isinstance(exc, NoRegionError):
        return TerminalError("no AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
    if isinstance(exc, ConnectionError | HTTPClientError | ReadTimeoutError):
        return TransientError(f"cannot reach AWS: {exc}")
    if isinstance(exc, aiohttp.ClientError | asyncio.TimeoutError | TimeoutError):
        return TransientError(f"cannot reach AWS: {type(exc).__name__}: {exc}")
    if isinstance(exc, BotoCoreError):
        return TerminalError(f"AWS client error: {exc}")
    return None


@contextmanager
def translating_errors() -> Iterator[None]:
    """Re-raise botocore/aiohttp failures inside the block as Transient/TerminalError."""
    try:
        yield
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is None or mapped is exc:
            raise
        raise mapped from exc
