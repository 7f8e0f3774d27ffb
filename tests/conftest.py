"""Fixtures shared by every ring of tests.

The AWS emulator is moto in server mode on loopback, behind real clients (DESIGN.md,
testing ring 2). One server serves the whole session; each test that asks for `aws`
gets it reset and re-seeded with the walkthrough's prerequisites.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from controller.sandbox.ecs.patches import install_patches, remove_patches
from controller.sandbox.emulator import REGION, Emulator, start_emulator


@pytest.fixture(scope="session")
def emulator() -> Iterator[Emulator]:
    """moto with the sandbox's API patches (what AWS stores and answers that moto does
    not, e.g. a service's deploymentConfiguration), even without the data plane."""
    emulator = start_emulator()
    install_patches()
    yield emulator
    remove_patches()
    emulator.stop()


@pytest.fixture
def aws(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> Emulator:
    """A fresh emulated account; the botocore chain of this process points at it."""
    emulator.reset()
    monkeypatch.setenv("AWS_ENDPOINT_URL", emulator.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    return emulator
