"""A virtual clock for asyncio code that takes ``clock`` and ``sleep``: sleeping tasks
wake in time order and time jumps forward only when every task is waiting on it."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time as _time
from collections.abc import Awaitable, Callable
from typing import TypeVar

from gs_video_report.clock import Clock

T = TypeVar("T")


class VirtualClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._counter = itertools.count()

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + max(0.0, seconds), next(self._counter), future))
        await future

    async def run(self, main: Callable[[], Awaitable[T]]) -> T:
        """Run ``main`` to completion, advancing time whenever everything is asleep."""
        task = asyncio.ensure_future(main())
        while not task.done():
            for _ in range(50):  # let every runnable task reach its next await
                await asyncio.sleep(0)
                if task.done():
                    break
            if task.done() or not self._sleepers:
                continue
            when, _, future = heapq.heappop(self._sleepers)
            self.now = max(self.now, when)
            if not future.done():
                future.set_result(None)
        return task.result()


class SteppingClock:
    """The engine's clock in tests that run it whole (CLI, runner): time moves forward
    to the end of what the code waits for, so retries, pauses and polls pass at once. Each
    wait still gives the event loop a millisecond, so a loop that waits (the lease
    keeper, idle workers) never starves the rest. ``waits`` records every wait asked for.
    Between waits time runs as the real one does (from today's date), so stored times
    look like today's and always move forward."""

    def __init__(self) -> None:
        self._started = _time.time()
        self._skipped = 0.0
        self.waits: list[float] = []

    @property
    def now(self) -> float:
        return _time.time() + self._skipped

    def time(self) -> float:
        return self.now

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        # Time jumps to the end of the wait when the sleeper wakes, so waits that overlap
        # (idle workers, the lease keeper, a retry) overlap in virtual time too.
        self.waits.append(seconds)
        target = self.now + max(0.0, seconds)
        await asyncio.sleep(0.001 if seconds > 0 else 0)
        self._skipped = max(self._skipped, target - _time.time())

    @property
    def clock(self) -> Clock:
        return Clock(self.time, self.sleep)
