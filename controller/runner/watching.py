"""Watching the spec folder: what the specs say now, and when to look again.

Owns: reloading the folder (`SpecSource.reload`), its revision (`git rev-parse HEAD`, or
none), the `ecsinfer_spec_errors` and `ecsinfer_source_info` gauges, the file watch
(`watchfiles`: `*.yaml` / `*.yml` only, hidden folders skipped, debounced) and the
periodic resync (an interval with jitter).
Must not: reconcile, or decide what a change means for AWS (the daemon enqueues keys).

A folder with any invalid file is never acted on: the snapshot keeps the last good specs
(so status and probing carry on) but says `valid=False`, and the daemon applies nothing
until the folder is whole again. A half-valid folder would look like deleted specs.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import structlog
from watchfiles import Change, DefaultFilter, awatch

from controller.metrics import Metrics
from controller.settings import ResyncSettings, WatchSettings
from controller.specs.loading import SPEC_SUFFIXES, LoadResult, SpecError, SpecSet, load_folder

log = structlog.get_logger(__name__)


@dataclass(frozen=True, kw_only=True)
class SpecSnapshot:
    """The specs the daemon acts on, and whether it may act at all."""

    specs: SpecSet
    """The last good specs (empty until the folder has loaded cleanly once)."""
    valid: bool
    """False while any file of the folder is invalid: nothing is applied."""
    errors: tuple[SpecError, ...]
    revision: str | None
    """`git rev-parse HEAD` of the folder, None when it is not a git checkout."""
    generation: int
    """Bumped each time `specs`, `valid` or `revision` changes."""


class SpecSource:
    """The folder of specs, reloaded on demand; keeps the last good specs."""

    def __init__(
        self, path: Path, *, metrics: Metrics, settings: WatchSettings | None = None
    ) -> None:
        self.path = path
        self.metrics = metrics
        self.settings = settings or WatchSettings()
        self.snapshot = SpecSnapshot(
            specs=SpecSet(), valid=False, errors=(), revision=None, generation=0
        )
        self._lock = asyncio.Lock()

    async def reload(self) -> tuple[SpecSnapshot, bool]:
        """Load the folder again; returns the snapshot and whether it changed."""
        async with self._lock:  # two reloads at once could publish an older one last
            result, revision = await asyncio.gather(
                asyncio.to_thread(load_folder, self.path),
                git_revision(self.path, timeout_s=self.settings.git_timeout_s),
            )
            return self._publish(result, revision)

    def _publish(self, result: LoadResult, revision: str | None) -> tuple[SpecSnapshot, bool]:
        previous = self.snapshot
        self.metrics.spec_errors.set(len(result.invalid_files))
        if revision != previous.revision or previous.generation == 0:
            self.metrics.set_source_revision(revision)
        errors: tuple[SpecError, ...]
        if result.ok:
            specs, valid, errors = result.specs, True, ()
        else:
            specs, valid, errors = previous.specs, False, result.errors
            if previous.valid or previous.generation == 0 or errors != previous.errors:
                log.error(
                    "specs.invalid",
                    path=str(self.path),
                    invalid_files=len(result.invalid_files),
                    errors=[str(error) for error in errors[:20]],
                    note="nothing is applied until every file is valid",
                )
        changed = (
            specs != previous.specs or valid != previous.valid or revision != previous.revision
        )
        if changed or errors != previous.errors:
            self.snapshot = SpecSnapshot(
                specs=specs,
                valid=valid,
                errors=errors,
                revision=revision,
                generation=previous.generation + (1 if changed else 0),
            )
        if changed and valid:
            log.info(
                "specs.loaded",
                path=str(self.path),
                clusters=len(specs.clusters),
                deployments=len(specs.deployments),
                revision=revision or "none",
            )
        return self.snapshot, changed


async def git_revision(path: Path, *, timeout_s: float = 2.0) -> str | None:
    """The commit checked out at `path`, or None when it is not a git checkout."""
    folder = _existing_folder(path)
    if folder is None:
        return None
    try:
        process = await asyncio.create_subprocess_exec(
            "git",
            "-C",
            str(folder),
            "rev-parse",
            "HEAD",
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
        )
    except OSError:  # no git installed
        return None
    try:
        stdout, _ = await asyncio.wait_for(process.communicate(), timeout_s)
    except TimeoutError:
        process.kill()
        await process.wait()
        return None
    revision = stdout.decode().strip()
    return revision if process.returncode == 0 and revision else None


class SpecFilter(DefaultFilter):
    """`*.yaml` / `*.yml` files, outside hidden folders (`.git` included)."""

    def __init__(self, root: Path) -> None:
        super().__init__()
        self.root = root.resolve()

    def __call__(self, change: Change, path: str) -> bool:
        candidate = Path(path)
        try:
            relative = candidate.resolve().relative_to(self.root).parts
        except ValueError:
            relative = candidate.parts
        if any(part.startswith(".") for part in relative):
            return False
        return candidate.suffix in SPEC_SUFFIXES and super().__call__(change, path)


async def watch_folder(
    path: Path,
    *,
    on_change: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    settings: WatchSettings | None = None,
) -> None:
    """Call `on_change()` after each debounced batch of spec-file changes, until `stop`."""
    settings = settings or WatchSettings()
    root, watch_filter, recursive = _watch_target(path)
    async for changes in awatch(
        root,
        watch_filter=watch_filter,
        debounce=settings.debounce_ms,
        step=min(50, settings.debounce_ms),
        stop_event=stop,
        recursive=recursive,
    ):
        log.debug("specs.changed", files=sorted({p for _, p in changes})[:20])
        await on_change()


def _existing_folder(path: Path) -> Path | None:
    folder = path if path.is_dir() else path.parent
    return folder if folder.exists() else None


def _watch_target(path: Path) -> tuple[Path, Callable[[Change, str], bool], bool]:
    """What to watch for a folder (recursively, spec files) or a single spec file."""
    if path.is_dir():
        return path, SpecFilter(path), True
    return path.parent, _single_file(path), False


def _single_file(path: Path) -> Callable[[Change, str], bool]:
    wanted = path.resolve()

    def only(change: Change, changed: str) -> bool:
        return Path(changed).resolve() == wanted

    return only


def jittered(interval_s: float, jitter: float, *, rng: random.Random | None = None) -> float:
    """`interval_s` stretched or shrunk by up to `jitter` (a fraction), at random."""
    spread = max(0.0, min(jitter, 1.0)) * interval_s
    return max(0.0, interval_s + (rng or random).uniform(-spread, spread))


async def resync_forever(
    *,
    on_resync: Callable[[], Awaitable[None]],
    stop: asyncio.Event,
    settings: ResyncSettings | None = None,
) -> None:
    """Call `on_resync()` every interval (with jitter) until `stop`; errors are logged."""
    settings = settings or ResyncSettings()
    while not stop.is_set():
        delay = jittered(settings.interval_s, settings.jitter)
        try:
            await asyncio.wait_for(stop.wait(), delay)
            return
        except TimeoutError:
            pass
        try:
            await on_resync()
        except Exception:
            log.exception("resync.failed")
