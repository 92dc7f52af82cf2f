"""APILimiter: pace calls *before* making them, per (project or key, model).

- requests per minute: a sliding window — a call may start while fewer than ``rpm``
  calls started in the last minute, so the first ``rpm`` calls go at once (the burst a
  per-minute quota allows) and no 60-second window ever holds more than ``rpm`` starts;
- input tokens per minute: the same window over the tokens the calls started with (their
  estimates); a call waits until its tokens fit, one larger than the whole window waits
  for an empty window;
- a per-minute 429 pauses every caller of that bucket once, until the server's delay
  has passed, and shrinks both windows' capacity, which recovers step by step with
  successes;
- a per-day 429 parks the bucket: ``acquire`` raises ``QuotaParked`` until it is reset.

Time is injected (``clock``, ``sleep``), so tests run on a virtual clock.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gs_video_report.errors import ExitCode, GsVideoReportError

Sleep = Callable[[float], Awaitable[None]]

WINDOW_S = 60.0  # the server's per-minute window
_BACKOFF_FACTOR = 0.7  # capacity after a per-minute 429
_FLOOR = 0.2  # never below this share of the configured capacity
_RECOVERY_STEP = 0.05  # share of the configured capacity regained ...
_RECOVERY_EVERY = 10  # ... per this many successes


class QuotaParked(GsVideoReportError):
    """The bucket's daily quota is used up; nothing more is scheduled on it."""

    kind = "QuotaParked"
    exit_code = ExitCode.QUOTA

    def __init__(self, message: str, resets_at: float | None) -> None:
        super().__init__(message)
        self.resets_at = resets_at


@dataclass(frozen=True)
class Limits:
    rpm: float | None = None  # requests per minute; None = unlimited
    tpm: float | None = None  # input tokens per minute; None = unlimited
    # Our window is a little longer than the server's minute: a call reaches the server
    # later than it started here, by a delay that varies (network, the SDK building the
    # request), so two starts exactly a minute apart could land less than a minute apart
    # there. 60 / 0.985 = 60.9 s absorbs 0.9 s of that, far above loopback or LAN jitter.
    # The capacity is not cut: rounding it down would waste a whole call per window.
    safety: float = 0.985


class Bucket:
    def __init__(self, name: str, limits: Limits, clock: Callable[[], float], sleep: Sleep) -> None:
        self.name = name
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._window_s = WINDOW_S / limits.safety
        self._starts: deque[float] = deque()  # calls started within the window
        self._spent: deque[tuple[float, float]] = deque()  # (start, tokens) within it
        self._spent_total = 0.0
        self._pause_until = 0.0
        self._episode_start = float("-inf")  # when the latest 429 episode began
        self._scale = 1.0  # share of the configured capacity in force
        self._successes = 0
        self.parked: QuotaParked | None = None
        self.pauses = 0
        self.waited_s = 0.0

    @property
    def pace_rpm(self) -> float | None:
        """The sustained rate the window allows now (calls per minute), past its burst."""
        if self.limits.rpm is None:
            return None
        capacity, window = self._request_window()
        return capacity * WINDOW_S / window

    @property
    def paused_until(self) -> float:
        return self._pause_until

    async def acquire(self, tokens: float = 0.0) -> float:
        """Wait until a call may start; returns when it started (for ``rate_limited``).
        The lock makes callers queue in order (fair)."""
        async with self._lock:
            while True:
                if self.parked is not None:
                    raise self.parked
                now = self._clock()
                self._forget(now)
                wait = max(
                    self._pause_until - now, self._request_wait(now), self._token_wait(now, tokens)
                )
                if wait <= 0:
                    break
                self.waited_s += wait
                await self._sleep(wait)
            if self.limits.rpm:
                self._starts.append(now)
            if self.limits.tpm and tokens > 0:
                self._spent.append((now, tokens))
                self._spent_total += tokens
            return now

    def _request_window(self) -> tuple[int, float]:
        """How many calls the window holds now, and its length. Under one call a minute
        (a low limit, or one cut down by 429s), one call per proportionally longer window."""
        allowed = (self.limits.rpm or 0.0) * self._scale
        if allowed >= 1:
            return math.floor(allowed), self._window_s
        return 1, self._window_s / allowed

    def _forget(self, now: float) -> None:
        # a start exactly a window ago no longer counts (as in the server's window)
        if self._starts:
            _, window = self._request_window()
            while self._starts and self._starts[0] <= now - window:
                self._starts.popleft()
        while self._spent and self._spent[0][0] <= now - self._window_s:
            self._spent_total -= self._spent.popleft()[1]
        if not self._spent:
            self._spent_total = 0.0  # no float drift left behind

    def _request_wait(self, now: float) -> float:
        if not self.limits.rpm:
            return 0.0
        capacity, window = self._request_window()
        if len(self._starts) < capacity:
            return 0.0
        # the start that must leave the window for one fewer than capacity to remain in it
        return self._starts[len(self._starts) - capacity] + window - now

    def _token_wait(self, now: float, tokens: float) -> float:
        tpm = self.limits.tpm
        if not tpm or tokens <= 0 or not self._spent:
            return 0.0
        capacity = tpm * self._scale
        if self._spent_total + tokens <= capacity:
            return 0.0
        if tokens > capacity:  # never fits beside another call: wait for an empty window
            return self._spent[-1][0] + self._window_s - now
        left = self._spent_total
        for started, spent in self._spent:
            left -= spent
            if left + tokens <= capacity:
                return started + self._window_s - now
        return self._spent[-1][0] + self._window_s - now  # float rounding only

    def rate_limited(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """A per-minute 429: one shared pause, and a smaller window from now on.

        429s for calls sent before the current pause began (``sent_at``) belong to the same
        episode: several workers' calls were on the wire together. They may stretch the
        pause to the server's latest delay but do not shrink the window again."""
        now = self._clock()
        until = now + (retry_after if retry_after is not None else 30.0)
        if sent_at is None or sent_at > self._episode_start:
            self._episode_start = now
            self.pauses += 1
            self._scale = max(_FLOOR, self._scale * _BACKOFF_FACTOR)
            self._successes = 0
        self._pause_until = max(self._pause_until, until)

    def succeeded(self) -> None:
        self._successes += 1
        if self._scale < 1.0 and self._successes % _RECOVERY_EVERY == 0:
            self._scale = min(1.0, self._scale + _RECOVERY_STEP)

    def park(self, message: str, resets_at: float | None) -> None:
        self.parked = QuotaParked(message, resets_at)


class APILimiter:
    """Buckets by (quota owner, model). Keys of one Google Cloud project share a bucket."""

    def __init__(
        self,
        limits_for: Callable[[str], Limits],
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self._limits_for = limits_for
        self._clock = clock
        self._sleep = sleep
        self._buckets: dict[tuple[str, str], Bucket] = {}

    def bucket(self, owner: str, model: str) -> Bucket:
        key = (owner, model)
        if key not in self._buckets:
            self._buckets[key] = Bucket(
                f"{owner}/{model}", self._limits_for(model), self._clock, self._sleep
            )
        return self._buckets[key]

    def buckets(self) -> list[Bucket]:
        return list(self._buckets.values())
