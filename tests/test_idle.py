"""Idle workers: woken at once when asked, still cancellable by anyone else, and an error
of the clock's own wait (an interrupt) reaches the worker."""

from __future__ import annotations

import asyncio

import pytest

from gs_video_report.batch.idle import Idlers
from gs_video_report.clock import Clock


async def _forever(seconds: float) -> None:
    await asyncio.get_running_loop().create_future()  # only a cancel ends it


def test_wake_all_ends_every_wait_and_only_the_waits() -> None:
    async def body() -> list[bool]:
        idle = Idlers(Clock(sleep=_forever))
        waiters = [asyncio.create_task(idle.wait(3600)) for _ in range(3)]
        await asyncio.sleep(0)
        idle.wake_all()
        await asyncio.wait_for(asyncio.gather(*waiters), timeout=5)
        return [w.cancelled() for w in waiters]

    assert asyncio.run(body()) == [False, False, False]


def test_a_cancel_from_elsewhere_still_cancels_a_woken_waiter() -> None:
    async def body() -> bool:
        idle = Idlers(Clock(sleep=_forever))
        waiter = asyncio.create_task(idle.wait(3600))
        await asyncio.sleep(0)
        idle.wake_all()
        waiter.cancel()  # an abort at the same moment
        await asyncio.gather(waiter, return_exceptions=True)
        return waiter.cancelled()

    assert asyncio.run(body())


def test_the_clocks_own_error_reaches_the_waiter() -> None:
    async def interrupted(seconds: float) -> None:
        raise RuntimeError("interrupted")

    with pytest.raises(RuntimeError, match="interrupted"):
        asyncio.run(Idlers(Clock(sleep=interrupted)).wait(1))
