"""The work queue: which key to reconcile next, never one key twice at once.

Owns: client-go's workqueue contract in asyncio. A key is `"deployment/<name>"` or
`"cluster/<name>"` (`Action.key`). Adding a key that is already queued does nothing;
adding a key that is being reconciled marks it dirty, and it is queued again once (and
only once) its reconcile is `done`. `add_after` delays an add with a timer (the earliest
pending timer of a key wins); `add_rate_limited` delays it by the key's own exponential
backoff, so a failing key waits alone while the others flow. Must not: know what a key
means, count outcomes, or log (the runner does all three).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass


class ShutDown(Exception):
    """`get()` on a queue that was shut down."""


@dataclass(frozen=True, kw_only=True)
class Backoff:
    """Per-key exponential backoff: base, 2 x base, 4 x base, ... capped."""

    base_s: float
    cap_s: float

    def delay(self, failures: int) -> float:
        if failures <= 0:
            return 0.0
        # min() before the power would overflow for a key failing for days.
        exponent = min(failures - 1, 62)
        return float(min(self.base_s * (2**exponent), self.cap_s))


class WorkQueue:
    def __init__(self, *, backoff: Backoff) -> None:
        self.backoff = backoff
        self._queue: deque[str] = deque()
        self._dirty: set[str] = set()  # queued, or re-added while processing
        self._processing: set[str] = set()
        self._failures: dict[str, int] = {}
        self._timers: dict[str, tuple[float, asyncio.TimerHandle]] = {}
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._shut_down = False

    # --- adding ---------------------------------------------------------------------

    def add(self, key: str) -> None:
        """Queue `key` unless it is queued already; if busy, queue it again once done."""
        if self._shut_down or key in self._dirty:
            return
        self._dirty.add(key)
        if key in self._processing:
            return
        self._queue.append(key)
        self._notify()

    def add_after(self, key: str, delay_s: float) -> None:
        """Queue `key` after `delay_s`; an earlier timer of the same key is kept."""
        if self._shut_down:
            return
        if delay_s <= 0:
            self.add(key)
            return
        loop = asyncio.get_running_loop()
        due = loop.time() + delay_s
        existing = self._timers.get(key)
        if existing is not None:
            if existing[0] <= due:
                return
            existing[1].cancel()
        self._timers[key] = (due, loop.call_at(due, self._fire, key))

    def add_rate_limited(self, key: str) -> float:
        """Count a failure of `key` and queue it after its backoff; returns the delay."""
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = self.backoff.delay(failures)
        self.add_after(key, delay)
        return delay

    def forget(self, key: str) -> None:
        """Clear the failure count of `key` (after a success)."""
        self._failures.pop(key, None)

    def drop(self, key: str) -> None:
        """Forget every pending add of `key`: queued, re-added while busy, or on a timer.
        For a key that must wait for something outside the queue (a terminal error)."""
        self._dirty.discard(key)
        if key in self._queue:
            self._queue.remove(key)
        timer = self._timers.pop(key, None)
        if timer is not None:
            timer[1].cancel()

    def failures(self, key: str) -> int:
        return self._failures.get(key, 0)

    def _fire(self, key: str) -> None:
        self._timers.pop(key, None)
        self.add(key)

    # --- taking ---------------------------------------------------------------------

    async def get(self) -> str:
        """The next key to reconcile; it is busy until `done(key)`. Raises ShutDown."""
        while not self._queue:
            if self._shut_down:
                raise ShutDown
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                # Woken and cancelled at once: hand the wake-up on, or a key would wait.
                if waiter.done() and not waiter.cancelled():
                    self._notify()
                raise
        if self._shut_down:
            raise ShutDown
        key = self._queue.popleft()
        self._processing.add(key)
        self._dirty.discard(key)
        return key

    def done(self, key: str) -> None:
        """`key` is no longer busy; if it was re-added meanwhile, queue it now."""
        self._processing.discard(key)
        if key in self._dirty and not self._shut_down:
            self._queue.append(key)
            self._notify()

    def _notify(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    # --- state ----------------------------------------------------------------------

    def shut_down(self) -> None:
        """Take no more work: pending timers are dropped, `get()` raises ShutDown."""
        self._shut_down = True
        for _, timer in self._timers.values():
            timer.cancel()
        self._timers.clear()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)

    @property
    def is_shut_down(self) -> bool:
        return self._shut_down

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def queued(self) -> tuple[str, ...]:
        return tuple(self._queue)

    @property
    def processing(self) -> frozenset[str]:
        return frozenset(self._processing)

    def busy(self, key: str) -> bool:
        """True while `key` is being reconciled."""
        return key in self._processing

    def scheduled(self, key: str) -> bool:
        """True while a delayed add of `key` is pending."""
        return key in self._timers
