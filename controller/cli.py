"""The `ecs-infer` command line (CONTRACT §3).

Owns: arguments, exit codes and what is printed. Must not: hold logic of its own; each
command calls into the package. Heavy modules are imported inside the commands, so that
`ecs-infer validate` does not pay for aiobotocore, grpc or the sandbox.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from controller.logs import LogFormat, configure_logging
from controller.settings import Settings
from controller.specs.loading import LoadResult, load_folder

if TYPE_CHECKING:
    from controller.core.plans import Plan

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2

SPEC_PATH = click.Path(path_type=Path)
OUTPUT = click.Choice(["text", "json"])


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--log-level",
    default=None,
    help="DEBUG, INFO, WARNING. Default: INFO for run and sandbox, WARNING otherwise.",
)
@click.option(
    "--log-format",
    type=click.Choice(["auto", "json", "console"]),
    default="auto",
    show_default=True,
    help="auto = console on a terminal, JSON otherwise.",
)
@click.pass_context
def cli(ctx: click.Context, log_level: str | None, log_format: LogFormat) -> None:
    """Keep ML inference on AWS Inferentia behind Amazon ECS as the specs say."""
    long_running = ctx.invoked_subcommand in ("run", "sandbox")
    if ctx.invoked_subcommand == "sandbox" and log_format == "auto":
        # The sandbox is watched by a person, even through a pipe or `make run`.
        log_format = "console"
    # One-shot commands print their result; their progress logs would only be noise.
    configure_logging(level=log_level or ("INFO" if long_running else "WARNING"), fmt=log_format)


def settings_from(
    *,
    environ: Mapping[str, str] = os.environ,
    wait_timeout_s: float | None = None,
    metrics_addr: str | None = None,
    resync_interval_s: float | None = None,
    discovery_interval_s: float | None = None,
    workers: int | None = None,
    backoff_cap_s: float | None = None,
    probe: bool = True,
    allow_non_loopback: bool | None = None,
    events: str | None = None,
    events_wait_s: int | None = None,
) -> Settings:
    """The settings tree from the command line, in one place: a flag left out keeps its
    default. The environment is read here only for what botocore does not decide itself:
    whether the prober may dial addresses outside loopback (not when `AWS_ENDPOINT_URL`
    points at an emulator, whose made-up addresses belong to somebody else's network)."""
    if allow_non_loopback is None:
        allow_non_loopback = not environ.get("AWS_ENDPOINT_URL")
    defaults = Settings()
    runner = defaults.runner
    probing = replace(
        runner.probing,
        enabled=probe,
        prober=replace(runner.probing.prober, allow_non_loopback=allow_non_loopback),
        **_given(discovery_interval_s=discovery_interval_s),
    )
    return replace(
        defaults,
        runner=replace(
            runner,
            queue=replace(runner.queue, **_given(workers=workers, backoff_cap_s=backoff_cap_s)),
            resync=replace(runner.resync, **_given(interval_s=resync_interval_s)),
            serving=replace(runner.serving, **_given(metrics_addr=metrics_addr)),
            probing=probing,
            events=replace(runner.events, **_given(mode=events, wait_s=events_wait_s)),
        ),
        waits=replace(defaults.waits, **_given(timeout_s=wait_timeout_s)),
    )


def _given(**values: object) -> dict[str, Any]:
    """The flags that were given (None = left out, the setting keeps its default)."""
    return {name: value for name, value in values.items() if value is not None}


EVENTS_HELP = (
    "AWS events make the keys they name due at once (the resync stays the fallback): "
    "off; auto = the tagged SQS queue ecs-infer-events and its EventBridge rules, created "
    "if absent (API-call events need a CloudTrail trail); or a queue URL, read as it is."
)


def events_mode(value: str) -> str:
    """`--events`: `off`, `auto`, or an SQS queue URL (`https://sqs.` on AWS, `http://`
    for an emulator); anything else is an error that says so."""
    mode = value.strip()
    if mode.lower() in ("off", "auto"):
        return mode.lower()
    if mode.startswith(("https://sqs.", "http://")) and mode.count("/") >= 4:
        return mode
    raise ValueError(
        f"--events {value!r}: expected auto, off, or an SQS queue URL such as "
        "https://sqs.us-east-1.amazonaws.com/123456789012/ecs-infer-events"
    )


def _events_option(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        return events_mode(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from exc


def _load_or_report(path: Path) -> LoadResult:
    result = load_folder(path)
    for error in result.errors:
        click.echo(str(error), err=True)
    return result


@cli.command()
@click.argument("path", type=SPEC_PATH)
def validate(path: Path) -> None:
    """Check every spec under PATH; print each error as FILE:LINE: message."""
    result = _load_or_report(path)
    if not result.ok:
        files = len(result.invalid_files)
        click.echo(f"{len(result.errors)} error(s) in {files} file(s)", err=True)
        sys.exit(EXIT_ERROR)
    specs = result.specs
    click.echo(
        f"{len(result.files)} file(s), {len(specs.clusters)} cluster(s), "
        f"{len(specs.deployments)} deployment(s): valid"
    )


def render_plan_text(plan: Plan) -> str:
    symbols = {"create": "+", "update": "~", "replace": "-/+", "delete": "-"}
    lines: list[str] = []
    for action in plan.actions:
        lines.append(f"{symbols[action.verb]} {action.sentence()}")
        for change in action.fields:
            lines.append(
                f"    {change.path}: {json.dumps(change.before)} -> {json.dumps(change.after)}"
            )
    for action in plan.detected_drift:
        lines.append(f"! {action.resource} {action.id} has drifted (driftPolicy: detect)")
        for change in action.fields:
            lines.append(
                f"    {change.path}: spec {json.dumps(change.after)}, "
                f"live {json.dumps(change.before)}"
            )
    for warning in plan.warnings:
        lines.append(f"warning: {warning}")
    for key, error in sorted(plan.errors.items()):
        lines.append(f"error: {key} cannot be planned: {error}")
    summary = plan.summary()
    if plan.in_sync and not plan.errors:
        lines.append("No changes: AWS matches the specs.")
    else:
        lines.append(
            f"Plan: {summary['create']} to create, {summary['update']} to update, "
            f"{summary['replace']} to replace, {summary['delete']} to delete."
        )
    return "\n".join(lines)


@cli.command()
@click.argument("path", type=SPEC_PATH)
@click.option("--output", type=OUTPUT, default="text", show_default=True)
def plan(path: Path, output: str) -> None:
    """Show what apply would change, and why. Exit 0 in sync, 2 changes pending, 1 error."""
    from controller.aws.errors import AwsError
    from controller.pipeline import run_pass

    result = _load_or_report(path)
    if not result.ok:
        sys.exit(EXIT_ERROR)
    try:
        outcome = asyncio.run(run_pass(result.specs, apply=False, settings=settings_from()))
    except AwsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    if output == "json":
        click.echo(json.dumps(outcome.plan.to_json(), indent=2, default=str))
    else:
        click.echo(render_plan_text(outcome.plan))
    if outcome.plan.errors:
        sys.exit(EXIT_ERROR)
    sys.exit(EXIT_OK if outcome.plan.in_sync else EXIT_CHANGES)


@cli.command()
@click.argument("path", type=SPEC_PATH)
@click.option("--wait", is_flag=True, help="Wait until services are stable and rolled out.")
@click.option("--timeout", default=600.0, show_default=True, help="Seconds --wait may take.")
def apply(path: Path, wait: bool, timeout: float) -> None:
    """Make one reconcile pass. Exit 0 done, 1 error."""
    from controller.aws.errors import AwsError
    from controller.pipeline import run_pass

    result = _load_or_report(path)
    if not result.ok:
        click.echo("nothing was changed: fix the errors above first", err=True)
        sys.exit(EXIT_ERROR)
    try:
        settings = settings_from(wait_timeout_s=timeout)
        outcome = asyncio.run(run_pass(result.specs, apply=True, wait=wait, settings=settings))
    except AwsError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(EXIT_ERROR)
    for line in outcome.report_lines():
        click.echo(line)
    sys.exit(EXIT_OK if outcome.succeeded else EXIT_ERROR)


@cli.command()
@click.argument("target", metavar="HOST:PORT")
@click.option("--model", default="bert", show_default=True, help="TF Serving model name.")
@click.option("--requests", "count", default=100, show_default=True, type=click.IntRange(1))
@click.option("--concurrency", default=1, show_default=True, type=click.IntRange(1))
@click.option("--warmup", default=5, show_default=True, type=click.IntRange(0))
@click.option("--timeout", default=5.0, show_default=True, help="Seconds per request.")
@click.option("--sequence-length", default=128, show_default=True, type=click.IntRange(1))
@click.option(
    "--output-filter",
    multiple=True,
    metavar="NAME",
    help="Ask only for this output (repeatable), as a spec's probe.outputFilter does.",
)
@click.option("--output", type=OUTPUT, default="text", show_default=True)
def probe(
    target: str,
    model: str,
    count: int,
    concurrency: int,
    warmup: int,
    timeout: float,
    sequence_length: int,
    output_filter: tuple[str, ...],
    output: str,
) -> None:
    """The walkthrough's latency client: Predict COUNT times, report mean and percentiles."""
    from controller.probing.command import run_probe

    sys.exit(
        run_probe(
            target,
            model=model,
            requests=count,
            concurrency=concurrency,
            warmup=warmup,
            timeout=timeout,
            sequence_length=sequence_length,
            output_filter=output_filter,
            output=output,
        )
    )


@cli.command()
@click.argument("path", type=SPEC_PATH)
@click.option(
    "--metrics-addr",
    default="127.0.0.1:9108",
    show_default=True,
    envvar="ECSINFER_METRICS_ADDR",
    help="HOST:PORT for /metrics, /healthz, /readyz and /status.",
)
@click.option(
    "--resync-interval",
    default=30.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    envvar="ECSINFER_RESYNC_INTERVAL",
    help="Seconds between full resyncs (with 10% jitter).",
)
@click.option(
    "--discovery-interval",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    envvar="ECSINFER_DISCOVERY_INTERVAL",
    help="Seconds between discoveries of the endpoints to probe.",
)
@click.option("--workers", default=4, show_default=True, type=click.IntRange(1))
@click.option(
    "--backoff-cap",
    default=180.0,
    show_default=True,
    type=click.FloatRange(min=0.1),
    envvar="ECSINFER_BACKOFF_CAP",
    help="Longest wait, in seconds, between retries of a failing key.",
)
@click.option("--no-probe", is_flag=True, help="Reconcile only; probe nothing.")
@click.option(
    "--allow-non-loopback/--loopback-only",
    default=None,
    help="Probe addresses outside 127.0.0.0/8. Default: yes, unless AWS_ENDPOINT_URL is set.",
)
@click.option(
    "--events",
    default="off",
    show_default=True,
    envvar="ECSINFER_EVENTS",
    metavar="auto|QUEUE_URL|off",
    callback=_events_option,
    help=EVENTS_HELP,
)
@click.option(
    "--events-wait",
    default=20,
    show_default=True,
    type=click.IntRange(0, 20),
    envvar="ECSINFER_EVENTS_WAIT",
    help="Seconds one receive of the events queue long-polls; 0 = a short poll a second "
    "(for an emulator that serves nothing else while a long poll waits).",
)
def run(
    path: Path,
    metrics_addr: str,
    resync_interval: float,
    discovery_interval: float,
    workers: int,
    backoff_cap: float,
    no_probe: bool,
    allow_non_loopback: bool | None,
    events: str,
    events_wait: int,
) -> None:
    """The daemon: watch PATH, reconcile, probe, serve metrics; until SIGTERM/SIGINT."""
    from controller.daemon import run_daemon

    settings = settings_from(
        metrics_addr=metrics_addr,
        resync_interval_s=resync_interval,
        discovery_interval_s=discovery_interval,
        workers=workers,
        backoff_cap_s=backoff_cap,
        probe=not no_probe,
        allow_non_loopback=allow_non_loopback,
        events=events,
        events_wait_s=events_wait,
    )
    sys.exit(run_daemon(path, settings=settings))


@cli.command()
@click.argument("path", type=SPEC_PATH)
@click.option("--output", type=OUTPUT, default="text", show_default=True)
@click.option(
    "--daemon",
    default="http://127.0.0.1:9108",
    show_default=True,
    help="The daemon to ask first; when it does not answer, AWS is read directly.",
)
def status(path: Path, output: str, daemon: str) -> None:
    """Per deployment: desired/running/pending replicas, drift, probe p50/p99, last reconcile."""
    from rich.console import Console

    from controller.status import collect, render_text

    document = collect(path, daemon=daemon or None)
    if output == "json":
        if document.get("unavailable"):
            click.echo(f"warning: AWS was not read: {document['unavailable']}", err=True)
        click.echo(json.dumps(document, indent=2, default=str))
    else:
        render_text(document, console=Console(width=None if sys.stdout.isatty() else 160))
    sys.exit(EXIT_OK)


@cli.command()
@click.option("--specs", "specs", type=SPEC_PATH, default=None, help="The folder to reconcile.")
@click.option("--aws-port", default=5000, show_default=True, type=click.IntRange(0, 65535))
@click.option("--metrics-addr", default="127.0.0.1:9108", show_default=True)
@click.option("--no-controller", is_flag=True, help="Only the emulated AWS and data plane.")
@click.option(
    "--events",
    type=click.Choice(["auto", "off"]),
    default="auto",
    show_default=True,
    help="The controller reads the AWS events the sandbox emits (drift seen in about a "
    "second); off = only the resync.",
)
def sandbox(
    specs: Path | None, aws_port: int, metrics_addr: str, no_controller: bool, events: str
) -> None:
    """Emulated AWS + ECS data plane + BERT endpoints (+ the controller), all on loopback."""
    from controller.sandbox.main import run_sandbox

    sys.exit(
        run_sandbox(
            specs=specs,
            aws_port=aws_port,
            metrics_addr=metrics_addr,
            controller=not no_controller,
            events=events,
        )
    )


def main() -> None:
    cli(prog_name="ecs-infer")


if __name__ == "__main__":
    main()
