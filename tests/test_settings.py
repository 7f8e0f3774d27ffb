"""The settings tree, built from the command line in one place (`cli.settings_from`)."""

from __future__ import annotations

import dataclasses

from controller.cli import settings_from
from controller.settings import AwsSettings, Settings


def test_defaults_are_the_tree_s_own() -> None:
    built = settings_from(environ={})
    defaults = Settings()
    assert built.runner.queue == defaults.runner.queue
    assert built.runner.resync == defaults.runner.resync
    assert built.waits == defaults.waits
    assert built.aws == defaults.aws


def test_flags_land_in_their_groups() -> None:
    built = settings_from(
        environ={},
        wait_timeout_s=12.0,
        metrics_addr="127.0.0.1:0",
        resync_interval_s=7.0,
        discovery_interval_s=3.0,
        workers=9,
        backoff_cap_s=60.0,
        probe=False,
    )
    assert built.waits.timeout_s == 12.0
    assert built.runner.serving.metrics_addr == "127.0.0.1:0"
    assert built.runner.resync.interval_s == 7.0
    assert built.runner.queue.workers == 9 and built.runner.queue.backoff_cap_s == 60.0
    assert not built.runner.probing.enabled
    assert built.runner.probing.discovery_interval_s == 3.0


def test_an_emulator_endpoint_keeps_probes_on_loopback_unless_told_otherwise() -> None:
    emulated = {"AWS_ENDPOINT_URL": "http://127.0.0.1:5000"}
    assert not settings_from(environ=emulated).runner.probing.prober.allow_non_loopback
    assert settings_from(environ={}).runner.probing.prober.allow_non_loopback
    told = settings_from(environ=emulated, allow_non_loopback=True)
    assert told.runner.probing.prober.allow_non_loopback


def test_the_tree_is_frozen_and_keeps_secrets_out_of_its_repr() -> None:
    settings = Settings(aws=AwsSettings(access_key_id="AKIAEXAMPLE", secret_access_key="s3cr3t"))
    assert "s3cr3t" not in repr(settings)
    try:
        settings.aws.region = "eu-west-1"  # type: ignore[misc]
    except dataclasses.FrozenInstanceError:
        pass
    else:  # pragma: no cover
        raise AssertionError("settings must be frozen")
