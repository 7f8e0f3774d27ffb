"""The moto patches of the data plane: installed by the first user, removed by the last."""

from __future__ import annotations

from moto.ecs import models, responses

from controller.sandbox.ecs.patches import install_patches, remove_patches

_PATCHED = (
    (responses.EC2ContainerServiceResponse, "list_tasks"),
    (responses.EC2ContainerServiceResponse, "list_container_instances"),
    (responses.EC2ContainerServiceResponse, "create_service"),
    (models.EC2ContainerServiceBackend, "update_service"),
)


def _current() -> list[object]:
    return [getattr(owner, name) for owner, name in _PATCHED]


def test_the_patches_stay_until_the_last_user_removes_them() -> None:
    originals = _current()
    install_patches()
    patched = _current()
    assert all(now is not before for now, before in zip(patched, originals, strict=True))
    install_patches()
    remove_patches()
    assert _current() == patched  # one user is left
    remove_patches()
    assert _current() == originals
