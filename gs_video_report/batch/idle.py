"""Workers with nothing to claim wait here: for their poll, or less — until no task
runs any more, when the batch may be through and every idle worker must see it at once.
The process exits when the last worker returns, so a full idle poll was up to a second
added to every batch's end. Waking only then (not at every task's end) keeps the tail of
a big batch from waking all idle workers for each lesson."""

from __future__ import annotations

import asyncio

from gs_video_report.clock import Clock


class Idlers:
    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self._waiting: set[asyncio.Task[object]] = set()
        self._woken: set[asyncio.Task[object]] = set()  # cancelled by ``wake_all``

    async def wait(self, seconds: float) -> None:
        """The clock's own wait, in the caller's task (an error of the clock's, such as
        an interrupt, surfaces there as before); ``wake_all`` ends it early."""
        me = asyncio.current_task()
        assert me is not None
        self._waiting.add(me)
        try:
            await self.clock.sleep(seconds)
        except asyncio.CancelledError:
            if me in self._woken and me.uncancel() == 0:
                return  # woken, not cancelled by anyone else
            raise
        finally:
            self._waiting.discard(me)
            self._woken.discard(me)

    def wake_all(self) -> None:
        for waiter in self._waiting - self._woken:
            self._woken.add(waiter)
            waiter.cancel()
