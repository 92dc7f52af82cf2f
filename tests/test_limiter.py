"""APILimiter on a virtual clock: exact pacing, one shared pause, parking. No sleeping."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from gs_video_report.batch.limiter import APILimiter, Limits, QuotaParked
from tests.virtual_time import VirtualClock


def limiter(clock: VirtualClock, **limits: float) -> APILimiter:
    return APILimiter(lambda model: Limits(**limits), clock=clock, sleep=clock.sleep)


def test_rpm_spaces_starts_so_no_minute_holds_more_than_the_limit() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=10, safety=1.0).bucket("project", "m")
    starts: list[float] = []

    async def worker() -> None:
        for _ in range(5):
            await bucket.acquire()
            starts.append(clock())

    async def main() -> None:
        await asyncio.gather(*(worker() for _ in range(4)))  # 4 workers, 20 calls

    asyncio.run(clock.run(main))
    starts.sort()
    assert len(starts) == 20
    assert all(b - a == pytest.approx(6.0) for a, b in itertools.pairwise(starts))
    for i, t in enumerate(starts):
        assert sum(1 for s in starts[i:] if s < t + 60) <= 10


def test_tokens_per_minute_budget() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, tpm=60_000, safety=1.0).bucket("p", "m")
    starts: list[float] = []

    async def main() -> None:
        for _ in range(4):
            await bucket.acquire(tokens=30_000)  # two fit in a minute
            starts.append(clock())

    asyncio.run(clock.run(main))
    offsets = [round(s - starts[0], 3) for s in starts]
    assert offsets == [0.0, 0.0, 30.0, 60.0]


def test_a_per_minute_429_pauses_everyone_once_and_slows_the_pace() -> None:
    clock = VirtualClock()
    bucket = limiter(clock, rpm=60, safety=1.0).bucket("p", "m")
    starts: list[float] = []
    t0 = clock()

    async def worker(i: int) -> None:
        await bucket.acquire()
        starts.append(clock() - t0)

    async def main() -> None:
        sent = await bucket.acquire()
        # three calls on the wire together all come back 429: one pause, not three, and the
        # pace is lowered once
        for _ in range(3):
            bucket.rate_limited(retry_after=20.0, sent_at=sent)
        await asyncio.gather(*(worker(i) for i in range(3)))

    asyncio.run(clock.run(main))
    assert bucket.pauses == 1
    assert min(starts) == pytest.approx(20.0)
    gaps = [b - a for a, b in zip(sorted(starts), sorted(starts)[1:], strict=False)]
    assert all(g > 1.0 for g in gaps)  # slower than the 1 s pace of 60 rpm
    assert bucket.pace_rpm is not None and bucket.pace_rpm < 60
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
