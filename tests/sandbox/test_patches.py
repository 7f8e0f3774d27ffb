"""The moto patches of the data plane: installed by the first user, removed by the last."""

from __future__ import annotations

from moto.ecs import models, responses

from controller.sandbox.ecs.patches import install_patches, remove_patches
from controller.sandbox.emulator import Emulator

_PATCHED = (
    (responses.EC2ContainerServiceResponse, "list_tasks"),
    (responses.EC2ContainerServiceResponse, "list_container_instances"),
    (responses.EC2ContainerServiceResponse, "create_service"),
    (models.EC2ContainerServiceBackend, "update_service"),
)


def _current() -> list[object]:
    return [getattr(owner, name) for owner, name in _PATCHED]


def test_the_patches_stay_until_the_last_user_removes_them(emulator: Emulator) -> None:
    # The session's emulator is one user already (tests/conftest.py).
    patched = _current()
    install_patches()
    assert _current() == patched
    remove_patches()
    assert _current() == patched  # the session's use is left
    remove_patches()
    originals = _current()
    assert all(now is not before for now, before in zip(patched, originals, strict=True))
    install_patches()  # give the session its use back
    assert all(now is not before for now, before in zip(_current(), originals, strict=True))
