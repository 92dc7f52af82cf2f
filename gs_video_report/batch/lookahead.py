"""How far uploads and processing run ahead of generation.

A generate slot should never wait for an upload: while ``parallel`` videos are being
generated, others are uploaded and processed so they are ready when a slot frees. How
many must be under way follows Little's law: the time preparing a video takes times the
rate generation can go (``parallel`` / generate latency, or the rate limit if lower),
plus one ready video per generate slot. Both are measured as the batch runs; before the
first measurements the window is ``parallel + max_uploads``.

Running further ahead than that only costs: uploaded files count against the project's
20 GB of Files API storage and expire after 48 hours. So the window has a ceiling in
tasks and in bytes held on the server, and grows only as far as the measurements say.
"""

from __future__ import annotations

import asyncio
import math
from collections import Counter, deque

PREPARING = "preparing"  # claimed: waiting to upload, uploading or processing
READY = "ready"  # ACTIVE on the server, waiting for a generate slot
GENERATING = "generating"  # in a generate slot (or after it: writing)

_SMOOTHING = 0.3  # weight of the newest measurement in the moving averages
MAX_AHEAD_PER_SLOT = 16
MAX_AHEAD_BYTES = 10e9  # half the 20 GB Files API storage of a project


class Lookahead:
    def __init__(
        self,
        parallel: int,
        max_uploads: int,
        *,
        max_bytes: float = MAX_AHEAD_BYTES,
    ) -> None:
        self.parallel = parallel
        self.max_uploads = max_uploads
        self.max_bytes = max_bytes
        self.ceiling = MAX_AHEAD_PER_SLOT * parallel + max_uploads
        self.prepare_s: float | None = None  # moving average: upload start -> ACTIVE
        self.generate_s: float | None = None  # moving average: one generate call
        self.rate_limit_per_s: float | None = None  # the limiter's current pace
        self.held_bytes = 0
        self._phase: dict[int, str] = {}
        self._bytes: dict[int, int] = {}
        self._counts: Counter[str] = Counter()
        self._waiters: deque[tuple[asyncio.Future[None], int]] = deque()
        self._closed = False

    # -- the window ------------------------------------------------------------------
    @property
    def target(self) -> int:
        """Tasks that may be preparing or ready at once."""
        base = self.parallel + self.max_uploads
        if self.prepare_s is None or self.generate_s is None:
            return base
        rate = self.parallel / max(self.generate_s, 1e-3)
        if self.rate_limit_per_s is not None:
            rate = min(rate, self.rate_limit_per_s)
        # those being prepared to keep up with generation, plus one ready per slot
        return min(self.ceiling, max(base, math.ceil(self.prepare_s * rate) + self.parallel))

    @property
    def ahead(self) -> int:
        return self._counts[PREPARING] + self._counts[READY]

    def count(self, phase: str) -> int:
        return self._counts[phase]

    def has_room(self) -> bool:
        return self.ahead < self.target and self.held_bytes < self.max_bytes

    async def enter(self, key: int) -> None:
        """Wait for room, then hold it as ``key`` (PREPARING) — a worker's placeholder
        while it claims a task. Waiters are let in one at a time, in order, as room
        appears (no herd of workers waking to look). Returns without a place once the
        pool is closed."""
        if self._closed:
            return
        if not self._waiters and self.has_room():
            self.move(key, PREPARING)
            return
        admitted: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((admitted, key))
        try:
            await admitted
        except asyncio.CancelledError:
            self.move(key, None)
            raise

    def move(self, key: int, phase: str | None, size_bytes: int | None = None) -> None:
        """Put ``key`` (a task id, or a placeholder) in ``phase``; ``None`` drops it.
        Bytes count from the claim until the task leaves."""
        old = self._phase.pop(key, None)
        if old is not None:
            self._counts[old] -= 1
        if phase is None:
            self.held_bytes -= self._bytes.pop(key, 0)
        else:
            self._phase[key] = phase
            self._counts[phase] += 1
            if size_bytes:
                self.held_bytes += size_bytes - self._bytes.get(key, 0)
                self._bytes[key] = size_bytes
        self._admit()

    def close(self) -> None:
        """The pool is stopping: nobody waits for room any more."""
        self._closed = True
        while self._waiters:
            admitted, _ = self._waiters.popleft()
            if not admitted.done():
                admitted.set_result(None)

    def _admit(self) -> None:
        while self._waiters and self.has_room():
            admitted, key = self._waiters.popleft()
            if admitted.done():  # cancelled while waiting
                continue
            self.move(key, PREPARING)
            admitted.set_result(None)

    # -- measurements ----------------------------------------------------------------
    def prepared(self, seconds: float) -> None:
        self.prepare_s = _average(self.prepare_s, seconds)
        self._admit()

    def generated(self, seconds: float) -> None:
        self.generate_s = _average(self.generate_s, seconds)
        self._admit()


def _average(current: float | None, new: float) -> float:
    return new if current is None else current + _SMOOTHING * (new - current)
