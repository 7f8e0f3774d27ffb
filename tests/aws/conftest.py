"""Fixtures for the AWS shell's tests: real aiobotocore clients on the emulator.

Low retries (one attempt) everywhere, so that a failure shows at once; the retry tests
build their own clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from controller.aws.clients import AwsClients, AwsSettings, RequestCounter
from controller.sandbox.emulator import Emulator

NO_RETRIES = AwsSettings(max_attempts=1, connect_timeout_s=5, read_timeout_s=30)


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
async def clients(aws: Emulator, counter: RequestCounter) -> AsyncIterator[AwsClients]:
    async with AwsClients(settings=NO_RETRIES, on_request=counter) as opened:
        yield opened
