"""The work queue's contract: collapse, one key at a time, per-key backoff, no starvation."""

from __future__ import annotations

import asyncio

import pytest

from controller.runner.queueing import Backoff, ShutDown, WorkQueue


def queue(base: float = 0.01, cap: float = 0.08) -> WorkQueue:
    return WorkQueue(backoff=Backoff(base_s=base, cap_s=cap))


async def test_re_adds_while_queued_collapse_into_one() -> None:
    q = queue()
    for _ in range(5):
        q.add("deployment/bert")
    q.add("cluster/demo")
    assert q.queued == ("deployment/bert", "cluster/demo")
    assert await q.get() == "deployment/bert"
    assert await q.get() == "cluster/demo"
    assert len(q) == 0


async def test_a_busy_key_is_not_handed_out_again_and_its_re_adds_collapse() -> None:
    q = queue()
    q.add("deployment/bert")
    key = await q.get()
    q.add("deployment/bert")
    q.add("deployment/bert")
    assert len(q) == 0  # not queued while busy
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(q.get(), 0.05)
    q.done(key)
    assert q.queued == ("deployment/bert",)  # exactly once
    assert await q.get() == "deployment/bert"
    q.done("deployment/bert")
    assert len(q) == 0


async def test_never_reconciles_one_key_twice_at_once() -> None:
    q = queue()
    running: set[str] = set()
    overlaps: list[str] = []
    runs: list[str] = []

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            if key in running:
                overlaps.append(key)
            running.add(key)
            runs.append(key)
            await asyncio.sleep(0.005)
            running.discard(key)
            q.done(key)

    workers = [asyncio.create_task(worker()) for _ in range(4)]
    for _ in range(30):
        for key in ("deployment/a", "deployment/b"):
            q.add(key)
        await asyncio.sleep(0.001)
    await asyncio.sleep(0.05)
    q.shut_down()
    await asyncio.gather(*workers)
    assert overlaps == []
    assert {"deployment/a", "deployment/b"} == set(runs)
    assert len(runs) < 60  # adds collapsed


def test_backoff_doubles_and_is_capped() -> None:
    backoff = Backoff(base_s=1.0, cap_s=180.0)
    delays = [backoff.delay(n) for n in range(1, 11)]
    assert delays[:8] == [1, 2, 4, 8, 16, 32, 64, 128]
    assert delays[8:] == [180, 180]
    assert backoff.delay(10_000) == 180  # no overflow for a key failing for days


async def test_rate_limited_key_grows_per_key_and_forget_resets() -> None:
    q = queue(base=0.01, cap=0.04)
    assert [q.add_rate_limited("deployment/bad") for _ in range(4)] == [0.01, 0.02, 0.04, 0.04]
    assert q.failures("deployment/bad") == 4
    assert q.failures("deployment/good") == 0
    q.forget("deployment/bad")
    assert q.add_rate_limited("deployment/bad") == 0.01


async def test_add_after_delays_and_the_earliest_timer_wins() -> None:
    q = queue()
    q.add_after("deployment/bert", 10.0)
    q.add_after("deployment/bert", 0.02)  # earlier: replaces the 10 s timer
    q.add_after("deployment/bert", 5.0)  # later: ignored
    assert len(q) == 0
    assert await asyncio.wait_for(q.get(), 1.0) == "deployment/bert"
    q.done("deployment/bert")
    assert not q.scheduled("deployment/bert")


async def test_a_failing_key_does_not_delay_another() -> None:
    """The failing key backs off on a timer; the healthy key is served meanwhile."""
    q = queue(base=0.2, cap=0.2)
    served: list[tuple[str, float]] = []
    loop = asyncio.get_running_loop()
    start = loop.time()

    async def worker() -> None:
        while True:
            try:
                key = await q.get()
            except ShutDown:
                return
            served.append((key, loop.time() - start))
            if key == "deployment/bad":
                q.add_rate_limited(key)
            q.done(key)

    task = asyncio.create_task(worker())  # one worker: the worst case
    q.add("deployment/bad")
    await asyncio.sleep(0.01)
    q.add("deployment/good")
    await asyncio.sleep(0.05)
    q.shut_down()
    await task
    good = [at for key, at in served if key == "deployment/good"]
    bad = [at for key, at in served if key == "deployment/bad"]
    assert len(bad) == 1  # its retry waits for its backoff
    assert good and good[0] < 0.1


async def test_shut_down_wakes_getters_and_drops_timers() -> None:
    q = queue()
    getter = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add_after("deployment/bert", 0.01)
    q.shut_down()
    with pytest.raises(ShutDown):
        await getter
    await asyncio.sleep(0.03)
    assert len(q) == 0
    q.add("deployment/late")
    assert len(q) == 0


async def test_a_cancelled_getter_hands_its_wake_up_on() -> None:
    q = queue()
    first = asyncio.create_task(q.get())
    second = asyncio.create_task(q.get())
    await asyncio.sleep(0)
    q.add("deployment/bert")  # wakes `first` ...
    first.cancel()  # ... which is cancelled before it runs
    assert await asyncio.wait_for(second, 1.0) == "deployment/bert"
