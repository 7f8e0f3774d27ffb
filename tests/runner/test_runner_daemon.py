"""The daemon's loop with a scripted shell: folder → keys → reconciles, HTTP, clean stop."""

from __future__ import annotations

import asyncio
import json
import socket
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from runner_helpers import CLUSTER, DEPLOYMENT, ScriptedShell, action, level

from controller.core.plans import Plan
from controller.metrics import Metrics
from controller.runner.daemon import Daemon
from controller.runner.reconciling import Applied, Level
from controller.settings import (
    QueueSettings,
    ResyncSettings,
    RunnerSettings,
    ServingSettings,
    WatchSettings,
)
from controller.specs.loading import SpecSet


class FolderShell(ScriptedShell):
    """Plans a `create` for every spec key not applied yet; applying marks it done."""

    def __init__(self) -> None:
        self.done: set[str] = set()
        self.seen_specs: list[SpecSet] = []
        super().__init__(self._level)

    def _level(self, specs: SpecSet) -> Level:
        self.seen_specs.append(specs)
        keys = [f"cluster/{n}" for n in specs.clusters]
        keys += [f"deployment/{n}" for n in specs.deployments]
        return level(specs, *(action(key) for key in keys if key not in self.done))

    async def apply(self, plan: Plan, *, level: Level) -> Applied:
        applied = await super().apply(plan, level=level)
        self.done.update(a.key for a in applied.changed)
        return applied


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def until(check: Callable[[], Any], within_s: float = 5.0) -> Any:
    for _ in range(int(within_s / 0.02)):
        result = check()
        if result:
            return result
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out: {check}")


def get(address: str, path: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(f"http://{address}{path}", timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def settings(address: str) -> RunnerSettings:
    return RunnerSettings(
        queue=QueueSettings(workers=2, verify_after_s=0.1, backoff_base_s=0.05),
        resync=ResyncSettings(interval_s=0.3, jitter=0.1),
        watch=WatchSettings(debounce_ms=50),
        serving=ServingSettings(metrics_addr=address),
    )


async def test_folder_changes_become_reconciles_and_stop_is_clean(tmp_path: Path) -> None:
    (tmp_path / "cluster.yaml").write_text(CLUSTER)
    (tmp_path / "a.yaml").write_text(DEPLOYMENT.format(name="a", replicas=1))
    address = f"127.0.0.1:{free_port()}"
    shell, metrics = FolderShell(), Metrics()
    daemon = Daemon(tmp_path, settings=settings(address), shell=shell, metrics=metrics)
    stop = asyncio.Event()
    running = asyncio.create_task(daemon.run(stop))

    await until(daemon.runner.ready.is_set)
    assert shell.done >= {"cluster/demo", "deployment/a"}
    assert await asyncio.to_thread(get, address, "/readyz") == (200, b"ready\n")
    code, body = await asyncio.to_thread(get, address, "/status")
    document = json.loads(body)
    assert code == 200 and document["ready"] is True
    assert document["deployments"]["a"]["reconcile"]["result"] == "success"
    assert metrics.registry.get_sample_value("ecsinfer_leader") == 1

    (tmp_path / "b.yaml").write_text(DEPLOYMENT.format(name="b", replicas=1))
    await until(lambda: "deployment/b" in shell.done)

    # A half-valid folder: counted, and nothing new is applied.
    (tmp_path / "broken.yaml").write_text("kind: [\n")
    (tmp_path / "c.yaml").write_text(DEPLOYMENT.format(name="c", replicas=1))
    await until(lambda: metrics.registry.get_sample_value("ecsinfer_spec_errors") == 1)
    await asyncio.sleep(0.8)  # a couple of resyncs
    assert "deployment/c" not in shell.done
    assert all("c" not in specs.deployments for specs in shell.seen_specs)
    (tmp_path / "broken.yaml").unlink()
    await until(lambda: "deployment/c" in shell.done)

    stop.set()
    await asyncio.wait_for(running, 5)
    assert metrics.registry.get_sample_value("ecsinfer_leader") == 0
    with pytest.raises(OSError):
        await asyncio.to_thread(get, address, "/healthz")


async def test_a_taken_port_fails_the_start(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        daemon = Daemon(
            tmp_path, settings=settings(address), shell=FolderShell(), metrics=Metrics()
        )
        with pytest.raises(OSError):
            await daemon.run(asyncio.Event())
