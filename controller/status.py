"""`ecs-infer status`: per deployment, replicas, drift, probe latency and the last reconcile.

Owns: where the figures come from (the daemon's `/status` when it answers; otherwise AWS
read directly, observe + plan, which knows replicas and drift but nothing of probes or
reconciles; when AWS cannot be read either, or the specs are invalid, the specs alone,
with every live figure unknown) and the table printed from them. The command always
exits 0 (CONTRACT §3): it reports, it does not judge. Must not: write to AWS or probe anything.
"""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from controller.specs.loading import load_folder

DEFAULT_DAEMON = "http://127.0.0.1:9108"


class StatusUnavailable(Exception):
    """AWS cannot be asked (the specs are invalid, so a plan would mislead)."""


def from_daemon(url: str, *, timeout_s: float = 2.0) -> dict[str, Any] | None:
    """The daemon's `/status`, or None when no daemon answers there."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/status", timeout=timeout_s) as response:
            document: dict[str, Any] = json.load(response)
            return document
    except (OSError, urllib.error.URLError, ValueError):
        return None


async def from_aws(path: Path) -> dict[str, Any]:
    """What AWS says right now (observe + plan): replicas and drift, no probe data."""
    from controller.aws.clients import AwsClients
    from controller.pipeline import AwsShell
    from controller.runner.reporting import status_document

    loaded = await asyncio.to_thread(load_folder, path)
    if not loaded.ok:
        raise StatusUnavailable(
            "the specs are invalid:\n" + "\n".join(str(error) for error in loaded.errors)
        )
    async with AwsClients() as clients:
        level = await AwsShell(clients).read_level(loaded.specs)
    return status_document(level=level, probes=None, source="aws")


def from_specs(path: Path, *, unavailable: str) -> dict[str, Any]:
    """What the specs alone say (desired replicas), when neither the daemon nor AWS could
    be read; `unavailable` says why. Live figures are None: unknown, not zero."""
    loaded = load_folder(path)
    deployments = {
        name: {
            "cluster": spec.spec.cluster,
            "service": spec.service_name,
            "in_spec": True,
            "replicas": {"desired": spec.spec.replicas, "running": None, "pending": None},
            "rollout": None,
            "drift": None,
            "pending_actions": None,
            "probe": None,
            "reconcile": None,
        }
        for name, spec in sorted(loaded.specs.deployments.items())
    }
    clusters = {
        name: {"status": None, "instances": None, "drift": None, "reconcile": None}
        for name in sorted(loaded.specs.clusters)
    }
    return {
        "source": "specs",
        "unavailable": unavailable,
        "generated_at": time.time(),
        "specs_valid": loaded.ok,
        "spec_errors": [str(error) for error in loaded.errors],
        "probes_available": False,
        "deployments": deployments,
        "clusters": clusters,
    }


def collect(path: Path, *, daemon: str | None) -> dict[str, Any]:
    """From the daemon when it answers, else from AWS; when AWS cannot be read either
    (or the specs are invalid, so that a plan would mislead), from the specs alone."""
    from controller.aws.errors import AwsError

    if daemon:
        document = from_daemon(daemon)
        if document is not None:
            document.setdefault("daemon", daemon)
            return document
    try:
        return asyncio.run(from_aws(path))
    except (AwsError, StatusUnavailable) as exc:
        return from_specs(path, unavailable=str(exc))


def _ms(value: Any) -> str:
    return "-" if value is None else f"{float(value):.1f}"


def _ago(at: Any) -> str:
    if at is None:
        return ""
    seconds = max(0.0, time.time() - float(at))
    return f"{seconds:.0f}s ago" if seconds < 120 else f"{seconds / 60:.0f}m ago"


_TITLES = {
    "daemon": "from the daemon",
    "aws": "from AWS (observe + plan)",
    "specs": "from the specs alone",
}


def _count(value: Any) -> str:
    return "?" if value is None else str(value)


def render_text(document: dict[str, Any], *, console: Console) -> None:
    source = document.get("source")
    title = _TITLES.get(str(source), str(source))
    table = Table(title=f"ecs-infer status ({title})", title_justify="left")
    for column in ("deployment", "desired", "running", "pending", "drift"):
        table.add_column(
            column, justify="right" if column in ("desired", "running", "pending") else "left"
        )
    table.add_column("probe ok", justify="right")
    table.add_column("p50 ms", justify="right")
    table.add_column("p99 ms", justify="right")
    table.add_column("last reconcile")
    for name, row in document.get("deployments", {}).items():
        replicas = row.get("replicas", {})
        drift = "?" if row.get("drift") is None else ", ".join(row["drift"]) or "no"
        if not row.get("in_spec", True):
            drift += " (spec removed)"
        probe = row.get("probe")
        if probe is None:
            ok, p50, p99 = "n/a", "n/a", "n/a"
        else:
            ok = f"{probe.get('ok', 0)}/{probe.get('count', 0)}"
            p50, p99 = _ms(probe.get("p50_ms")), _ms(probe.get("p99_ms"))
        reconcile = row.get("reconcile")
        if reconcile is None or reconcile.get("result") is None:
            last = "n/a" if source != "daemon" else "not yet"
            pending = row.get("pending_actions") or 0
            if source != "daemon" and pending:
                last = f"{pending} change(s) pending"
        else:
            last = f"{reconcile['result']} {_ago(reconcile.get('finished_at'))}".strip()
            if reconcile.get("error"):
                last += f": {reconcile['error']}"
        table.add_row(
            name,
            _count(replicas.get("desired")),
            _count(replicas.get("running")),
            _count(replicas.get("pending")),
            drift,
            ok,
            p50,
            p99,
            last,
        )
    console.print(table)
    if source == "aws":
        console.print(
            "Probe latency and reconcile results need the daemon (`ecs-infer run`); "
            "none answered, so these figures come from AWS directly."
        )
    elif source == "specs":
        console.print(
            f"No daemon answered and AWS was not read ({document.get('unavailable')}), "
            "so only the specs' desired replicas are shown (? = unknown).",
            markup=False,
        )
    for error in document.get("spec_errors") or []:
        console.print(f"spec error: {error}", markup=False)
    for warning in document.get("warnings") or []:
        console.print(f"warning: {warning}", markup=False)
