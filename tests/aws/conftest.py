"""Fixtures for the AWS shell's tests: real aiobotocore clients on the emulator.

Low retries (one attempt) everywhere, so that a failure shows at once; the retry tests
build their own clients.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from aws_helpers import NO_RETRIES

from controller.aws.clients import AwsClients, RequestCounter
from controller.sandbox.emulator import Emulator


@pytest.fixture
def counter() -> RequestCounter:
    return RequestCounter()


@pytest.fixture
async def clients(aws: Emulator, counter: RequestCounter) -> AsyncIterator[AwsClients]:
    async with AwsClients(settings=NO_RETRIES, on_request=counter) as opened:
        yield opened
