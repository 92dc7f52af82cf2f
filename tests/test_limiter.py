"""APILimiter on a virtual clock: the sliding window (every window checked), one shared
pause, parking. No sleeping."""

from __future__ import annotations

import asyncio
import bisect
import random

import pytest

from gs_video_report.batch.limiter import APILimiter, Limits, QuotaParked
from gs_video_report.simulator.state import SimState
from tests.virtual_time import VirtualClock


def limiter(clock: VirtualClock, **limits: float) -> APILimiter:
    return APILimiter(lambda model: Limits(**limits), clock=clock, sleep=clock.sleep)


def busiest_window(starts: list[float], window: float = 60.0) -> int:
    """The most starts any ``window``-second span holds (one starting at a start is the
    busiest of its neighbours, so checking those checks every window)."""
    ordered = sorted(starts)
    return max(bisect.bisect_left(ordered, t + window) - i for i, t in enumerate(ordered))


def test_rpm_lets_the_burst_through_and_no_minute_holds_more_than_the_limit() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=10, safety=1.0).bucket("project", "m")
    starts: list[float] = []
    t0 = clock()

    async def worker() -> None:
        for _ in range(10):
            await bucket.acquire()
            starts.append(clock() - t0)

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(4)))  # 4 workers, 40 calls

    asyncio.run(clock.run(main))
    starts.sort()
    assert len(starts) == 40
    assert busiest_window(starts) == 10
    # a burst of 10 every minute, not one call every 6 s
    assert starts == [60.0 * (i // 10) for i in range(40)]


def test_irregular_callers_never_overfill_any_window() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=7, safety=1.0).bucket("project", "m")
    rng = random.Random(3)
    starts: list[float] = []

    async def worker(pauses: list[float]) -> None:
        for pause in pauses:
            await clock.sleep(pause)
            starts.append(await bucket.acquire())

    async def main() -> None:
        plans = [
            [rng.choice((0.0, 0.3, 5.0, 17.0, 59.9, 61.0)) for _ in range(25)] for _ in range(5)
        ]
        await asyncio.gather(*(worker(plan) for plan in plans))

    asyncio.run(clock.run(main))
    assert len(starts) == 125
    assert busiest_window(starts) == 7  # full windows, never an eighth call


def test_the_safety_margin_lengthens_the_window_not_the_burst() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=120).bucket("p", "m")  # default safety 0.985
    t0 = clock()

    async def main() -> list[float]:
        return [await bucket.acquire() - t0 for _ in range(121)]

    starts = asyncio.run(clock.run(main))
    assert starts[:120] == [0.0] * 120  # the whole quota at once
    assert starts[120] == pytest.approx(60 / 0.985)  # the 121st once the first is 60.9 s old
    assert bucket.pace_rpm == pytest.approx(120 * 0.985)  # the rate past the burst


def test_tokens_per_minute_window() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, tpm=60_000, safety=1.0).bucket("p", "m")
    starts: list[float] = []

    async def main() -> None:
        for tokens in (30_000, 30_000, 30_000, 30_000, 10_000, 90_000, 10_000):
            await bucket.acquire(tokens=tokens)
            starts.append(clock())

    asyncio.run(clock.run(main))
    offsets = [round(s - starts[0], 3) for s in starts]
    # two fit in a window; one larger than the whole window waits for an empty one, and
    # the window is then full until it leaves
    assert offsets == [0.0, 0.0, 60.0, 60.0, 120.0, 180.0, 240.0]


def test_tokens_wait_only_for_the_calls_that_must_leave() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, tpm=100, safety=1.0).bucket("p", "m")
    starts: list[float] = []

    async def main() -> None:
        for pause, tokens in ((0, 40), (10, 40), (10, 10), (0, 60)):
            await clock.sleep(pause)
            starts.append(await bucket.acquire(tokens=tokens) - 1000.0)

    asyncio.run(clock.run(main))
    # the last 60 need 50 of the 90 in the window gone: the first call alone (40) is
    # not enough, the first two are, once the second is a window old: at 10 + 60
    assert starts == [0.0, 10.0, 20.0, 70.0]


def test_a_per_minute_429_pauses_everyone_once_and_shrinks_the_window() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=60, safety=1.0).bucket("p", "m")
    starts: list[float] = []
    t0 = clock()

    async def worker() -> None:
        for _ in range(25):
            starts.append(await bucket.acquire() - t0)

    async def main() -> None:
        sent = await bucket.acquire()
        starts.append(sent - t0)
        # three calls on the wire together all come back 429: one pause, not three, and
        # the window shrinks once (to 42 calls, not 60 * 0.7 ** 3 = 20)
        for _ in range(3):
            bucket.rate_limited(retry_after=20.0, sent_at=sent)
        await asyncio.gather(*(worker() for _ in range(4)))

    asyncio.run(clock.run(main))
    assert bucket.pauses == 1
    assert sorted(starts)[1] == pytest.approx(20.0)  # nobody went before the pause ended
    assert busiest_window(starts) == 42
    assert sum(1 for s in starts if s < 60) == 42  # the first call counts in its window
    assert bucket.pace_rpm == pytest.approx(42)
    for _ in range(200):
        bucket.succeeded()
    assert bucket.pace_rpm == pytest.approx(60)  # recovered step by step


def test_a_parked_bucket_refuses_and_others_go_on() -> None:
    clock = VirtualClock()
    lim = limiter(clock, rpm=100)
    lim.bucket("p", "m").park("daily quota used up", resets_at=5000.0)

    async def main() -> None:
        with pytest.raises(QuotaParked) as err:
            await lim.bucket("p", "m").acquire()
        assert err.value.resets_at == 5000.0 and err.value.exit_code == 5
        await lim.bucket("p", "other-model").acquire()  # another model has its own quota

    asyncio.run(clock.run(main))


def test_the_simulators_window_slides_as_the_limiter_assumes() -> None:
    """The server side of benchmarks/limiter.py: R calls in any 60 s, a refusal says
    when the oldest leaves."""
    now = [0.0]
    state = SimState(clock=lambda: now[0])
    state.limits.rpm = 2
    answers = []
    for at in (0.0, 30.0, 59.0, 60.0, 89.0, 90.0):
        now[0] = at
        answers.append(state.over_rpm("project"))
    assert answers == [None, None, pytest.approx(1.0), None, pytest.approx(1.0), None]
