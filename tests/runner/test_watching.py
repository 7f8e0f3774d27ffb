"""Watching the spec folder: reloads, the last good specs, revision, file filter, resync."""

from __future__ import annotations

import asyncio
import random
import subprocess
from pathlib import Path

from runner_helpers import CLUSTER, DEPLOYMENT
from watchfiles import Change

from controller.metrics import Metrics
from controller.runner.watching import (
    SpecFilter,
    SpecSource,
    git_revision,
    jittered,
    resync_forever,
    watch_folder,
)
from controller.settings import ResyncSettings, WatchSettings


def sample(metrics: Metrics, name: str, labels: dict[str, str] | None = None) -> float | None:
    return metrics.registry.get_sample_value(name, labels or {})


def write_folder(root: Path) -> None:
    (root / "cluster.yaml").write_text(CLUSTER)
    (root / "bert.yaml").write_text(DEPLOYMENT.format(name="bert", replicas=1))


async def test_reload_publishes_specs_and_revision_none_outside_git(tmp_path: Path) -> None:
    write_folder(tmp_path)
    metrics = Metrics()
    source = SpecSource(tmp_path, metrics=metrics)
    snapshot, changed = await source.reload()
    assert changed and snapshot.valid
    assert set(snapshot.specs.deployments) == {"bert"}
    assert sample(metrics, "ecsinfer_spec_errors") == 0
    assert sample(metrics, "ecsinfer_source_info", {"revision": "none"}) == 1
    again, changed = await source.reload()
    assert not changed and again.generation == snapshot.generation


async def test_an_invalid_file_keeps_the_last_good_specs_and_stops_acting(tmp_path: Path) -> None:
    write_folder(tmp_path)
    metrics = Metrics()
    source = SpecSource(tmp_path, metrics=metrics)
    good, _ = await source.reload()
    (tmp_path / "broken.yaml").write_text("apiVersion: ecs-infer/v1\nkind: Nope\n")
    (tmp_path / "worse.yml").write_text("a: [\n")
    (tmp_path / "bert.yaml").write_text(DEPLOYMENT.format(name="bert", replicas=3))
    snapshot, changed = await source.reload()
    assert changed and not snapshot.valid
    assert snapshot.specs == good.specs  # replicas: 3 is not picked up from a broken folder
    assert sample(metrics, "ecsinfer_spec_errors") == 2
    (tmp_path / "broken.yaml").unlink()
    (tmp_path / "worse.yml").unlink()
    fixed, changed = await source.reload()
    assert changed and fixed.valid
    assert fixed.specs.deployments["bert"].spec.replicas == 3
    assert sample(metrics, "ecsinfer_spec_errors") == 0


def commit_folder(root: Path) -> str:
    git = ["git", "-C", str(root), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "."], check=True)
    subprocess.run([*git, "commit", "-qm", "specs"], check=True)
    return subprocess.run(
        [*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True
    ).stdout.strip()


async def test_revision_is_the_folders_git_commit(tmp_path: Path) -> None:
    write_folder(tmp_path)
    head = await asyncio.to_thread(commit_folder, tmp_path)
    assert await git_revision(tmp_path) == head
    metrics = Metrics()
    snapshot, _ = await SpecSource(tmp_path, metrics=metrics).reload()
    assert snapshot.revision == head
    assert sample(metrics, "ecsinfer_source_info", {"revision": head}) == 1
    assert sample(metrics, "ecsinfer_source_info", {"revision": "none"}) is None


def test_filter_takes_yaml_only_outside_hidden_folders(tmp_path: Path) -> None:
    keep = SpecFilter(tmp_path)
    assert keep(Change.modified, str(tmp_path / "a.yaml"))
    assert keep(Change.added, str(tmp_path / "team" / "b.yml"))
    assert keep(Change.deleted, str(tmp_path / "gone.yaml"))
    assert not keep(Change.modified, str(tmp_path / "notes.md"))
    assert not keep(Change.modified, str(tmp_path / ".git" / "x.yaml"))
    assert not keep(Change.modified, str(tmp_path / "team" / ".hidden" / "x.yaml"))
    assert not keep(Change.modified, str(tmp_path / "a.yaml.swp"))


async def test_watch_reports_a_debounced_change_of_a_spec_file_only(tmp_path: Path) -> None:
    write_folder(tmp_path)
    (tmp_path / ".git").mkdir()
    calls: list[float] = []
    changed = asyncio.Event()

    async def on_change() -> None:
        calls.append(asyncio.get_running_loop().time())
        changed.set()

    stop = asyncio.Event()
    watcher = asyncio.create_task(
        watch_folder(
            tmp_path, on_change=on_change, stop=stop, settings=WatchSettings(debounce_ms=100)
        )
    )
    await asyncio.sleep(0.3)  # the watch is set up
    (tmp_path / "README.md").write_text("not a spec")
    (tmp_path / ".git" / "HEAD.yaml").write_text("hidden")
    await asyncio.sleep(0.4)
    assert calls == []
    for replicas in (2, 3, 4):  # one editor session: folded into one reload
        (tmp_path / "bert.yaml").write_text(DEPLOYMENT.format(name="bert", replicas=replicas))
    await asyncio.wait_for(changed.wait(), 5.0)
    await asyncio.sleep(0.3)
    stop.set()
    await asyncio.wait_for(watcher, 5.0)
    assert len(calls) == 1


def test_jitter_stays_within_the_fraction() -> None:
    rng = random.Random(7)
    values = [jittered(30.0, 0.1, rng=rng) for _ in range(1000)]
    assert min(values) >= 27.0 and max(values) <= 33.0
    assert max(values) - min(values) > 3.0  # actually spread


async def test_resync_runs_periodically_survives_errors_and_stops() -> None:
    calls = 0

    async def on_resync() -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("AWS is down")

    stop = asyncio.Event()
    task = asyncio.create_task(
        resync_forever(
            on_resync=on_resync, stop=stop, settings=ResyncSettings(interval_s=0.02, jitter=0.5)
        )
    )
    for _ in range(200):  # it keeps going past the failure
        if calls >= 3:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 1.0)
    assert calls >= 3
    assert task.done() and task.exception() is None
