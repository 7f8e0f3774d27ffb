"""The controller's error taxonomy: what a failed request means for the key that made it.

Owns: `AwsError` and its two kinds, `TransientError` (worth retrying later, with
backoff: throttling, 5xx, connection problems, timeouts, capacity that may come back) and
`TerminalError` (the same request fails the same way until someone changes something:
access denied, an invalid parameter, a role or key pair that does not exist), and the
error codes AWS uses for throttling. controller-runtime's `TerminalError` contract: the
runner counts a terminal error on its key and does not retry it until the key's spec
changes, the account changes, or the next resync; everything else backs off per key.
Must not: import botocore or aiohttp. Mapping their exceptions into these kinds is the
AWS shell's job, in one place (`controller.aws.errors.translating_errors`); living here,
below both, lets the runner branch on the kind without importing the shell.
"""

from __future__ import annotations

# Error codes AWS uses for rate limiting, across the query (EC2) and JSON (ECS, SSM) APIs.
THROTTLING_CODES = frozenset(
    {
        "Throttling",
        "ThrottlingException",
        "ThrottledException",
        "RequestThrottledException",
        "TooManyRequestsException",
        "ProvisionedThroughputExceededException",
        "TransactionInProgressException",
        "RequestLimitExceeded",
        "BandwidthLimitExceeded",
        "RequestThrottled",
        "SlowDown",
        "PriorRequestNotComplete",
        "EC2ThrottledException",
    }
)


class AwsError(Exception):
    """An AWS request failed. `code` is AWS's error code when there was a response."""

    def __init__(
        self,
        message: str,
        *,
        service: str | None = None,
        operation: str | None = None,
        code: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.service = service
        self.operation = operation
        self.code = code
        self.status = status


class TransientError(AwsError):
    """Worth trying again later (with backoff): the same request may well succeed."""

    @property
    def throttled(self) -> bool:
        return self.code in THROTTLING_CODES


class TerminalError(AwsError):
    """Trying the same request again will fail the same way until someone changes something."""
