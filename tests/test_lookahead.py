"""Lookahead: how many videos are uploaded and processed ahead of generation."""

from __future__ import annotations

import asyncio

import pytest

from gs_video_report.batch.lookahead import (
    GENERATING,
    MAX_AHEAD_PER_SLOT,
    PREPARING,
    READY,
    Lookahead,
)


def test_before_measurements_the_window_is_parallel_plus_uploads() -> None:
    window = Lookahead(parallel=4, max_uploads=2)
    assert window.target == 6
    for task in range(6):
        assert window.has_room()
        window.move(task, PREPARING)
    assert not window.has_room()
    window.move(0, GENERATING)  # a video in a generate slot is no longer ahead
    assert window.has_room() and window.ahead == 5


def test_the_window_follows_littles_law_from_measurements() -> None:
    window = Lookahead(parallel=4, max_uploads=2)
    window.prepared(3.0)
    window.generated(0.5)  # 4 slots / 0.5 s = 8 videos/s need 3 s x 8 = 24 under way
    assert window.target == 24 + 4  # and one ready per slot
    window.rate_limit_per_s = 2.0  # the rate limit is slower: 3 s x 2/s = 6
    assert window.target == 6 + 4
    slow = Lookahead(parallel=4, max_uploads=2)
    slow.prepared(3.0)
    slow.generated(100.0)  # slow generation: one ahead of each slot is plenty
    assert slow.target == 6
    slow.generated(20.0)  # a moving average: 100 -> 76 s
    assert slow.generate_s == pytest.approx(76.0) and slow.target == 6


def test_the_window_has_a_ceiling_in_tasks_and_in_bytes_on_the_server() -> None:
    window = Lookahead(parallel=2, max_uploads=2, max_bytes=1000)
    window.prepared(600.0)
    window.generated(0.1)
    assert window.target == MAX_AHEAD_PER_SLOT * 2 + 2 == window.ceiling
    window.move(1, READY, size_bytes=600)
    assert window.has_room()
    window.move(2, PREPARING, size_bytes=600)
    assert not window.has_room() and window.held_bytes == 1200
    window.move(1, GENERATING)  # still on the server while it is generated
    assert not window.has_room()
    window.move(1, None)  # finished: its upload is deleted
    assert window.has_room() and window.held_bytes == 600


def test_waiters_are_let_in_one_at_a_time_in_order_and_all_when_the_pool_stops() -> None:
    async def scenario() -> None:
        window = Lookahead(parallel=1, max_uploads=0)
        await window.enter(-1)  # room: placed at once
        assert window.count(PREPARING) == 1
        let_in: list[int] = []

        async def worker(key: int) -> None:
            await window.enter(key)
            let_in.append(key)

        waiting = [asyncio.create_task(worker(k)) for k in (-2, -3, -4)]
        await asyncio.sleep(0)
        assert let_in == []
        window.move(-1, None)  # one place frees: exactly one waiter, the first, takes it
        await asyncio.sleep(0)
        assert let_in == [-2] and window.count(PREPARING) == 1
        waiting[1].cancel()  # a worker cancelled while waiting gives up its turn
        window.move(-2, None)
        await asyncio.sleep(0)
        assert let_in == [-2, -4]
        window.close()  # stopping: nobody waits any more, places or not
        assert await asyncio.wait_for(window.enter(-5), 1) is None
        await asyncio.gather(*waiting, return_exceptions=True)

    asyncio.run(scenario())


@pytest.mark.parametrize("placeholder", [-1, -7])
def test_a_claiming_worker_holds_its_place_until_it_has_a_task(placeholder: int) -> None:
    window = Lookahead(parallel=1, max_uploads=0)
    window.move(placeholder, PREPARING)
    assert not window.has_room()
    window.move(placeholder, None)
    window.move(42, PREPARING, size_bytes=10)
    assert window.count(PREPARING) == 1 and window.held_bytes == 10
