"""The settings tree, built from the command line in one place (`cli.settings_from`)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from click.testing import CliRunner

from controller.cli import cli, events_mode, settings_from
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


def test_events_are_off_unless_asked_for() -> None:
    assert settings_from(environ={}).runner.events.mode == "off"
    assert settings_from(environ={}, events="auto").runner.events.mode == "auto"
    url = "https://sqs.us-east-1.amazonaws.com/123456789012/q"
    built = settings_from(environ={}, events=url)
    assert built.runner.events.mode == url
    assert built.runner.events.wait_s == 20 and built.runner.events.batch_size == 10


@pytest.mark.parametrize(
    ("given", "mode"),
    [
        ("auto", "auto"),
        ("OFF", "off"),
        (" auto ", "auto"),
        ("https://sqs.eu-west-1.amazonaws.com/123456789012/ecs-infer-events", None),
        ("http://127.0.0.1:5000/123456789012/ecs-infer-events", None),
    ],
)
def test_events_mode_accepts_auto_off_and_queue_urls(given: str, mode: str | None) -> None:
    assert events_mode(given) == (mode or given)


@pytest.mark.parametrize(
    "given",
    [
        "on",
        "",
        "ecs-infer-events",
        "sqs.us-east-1.amazonaws.com/1/q",
        "https://example.com/1/q",
        "http://x",
    ],
)
def test_events_mode_refuses_anything_else_clearly(given: str) -> None:
    with pytest.raises(ValueError, match="expected auto, off, or an SQS queue URL"):
        events_mode(given)


def test_run_refuses_a_bad_events_value_before_starting(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["run", str(tmp_path), "--events", "sometimes"])
    assert result.exit_code == 2
    assert "expected auto, off, or an SQS queue URL" in result.output
