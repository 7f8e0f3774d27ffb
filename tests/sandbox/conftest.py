"""Fixtures of the sandbox tests: one BERT encoder per session, a data plane per test
on the shared emulator (reset for each test by the `aws` fixture)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from controller.sandbox.ecs.dataplane import DataPlane
from controller.sandbox.emulator import Emulator
from controller.sandbox.modelserver import EncoderModel
from controller.settings import DataPlaneSettings


@pytest.fixture(scope="session")
def encoder() -> Iterator[EncoderModel]:
    model = EncoderModel.load()
    yield model
    model.close()


@pytest.fixture
async def dataplane(aws: Emulator, encoder: EncoderModel) -> AsyncIterator[DataPlane]:
    plane = DataPlane(
        model=encoder,
        aws_port=aws.port,
        settings=DataPlaneSettings(tick_s=0.1, start_failure_backoff_s=0.5),
    )
    await plane.start()
    yield plane
    await plane.stop()


@pytest.fixture
def ecs(aws: Emulator) -> Any:
    return aws.boto3_client("ecs")


@pytest.fixture
def ec2(aws: Emulator) -> Any:
    return aws.boto3_client("ec2")
