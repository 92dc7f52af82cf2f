"""APILimiter: pace calls *before* making them, per (project or key, model).

- requests per minute: starts are spaced at least 60/rpm seconds apart (a leaky bucket
  of capacity one, so no 60-second window can ever hold more than ``rpm`` starts);
- input tokens per minute: a token bucket filled at tpm/60 per second; a request waits
  until its estimate fits (one larger than the whole bucket waits for a full bucket);
- a per-minute 429 pauses every caller of that bucket once, until the server's delay
  has passed, and lowers the pace, which recovers step by step with successes;
- a per-day 429 parks the bucket: ``acquire`` raises ``QuotaParked`` until it is reset.

Time is injected (``clock``, ``sleep``), so tests run on a virtual clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from gs_video_report.errors import ExitCode, GsVideoReportError

Sleep = Callable[[float], Awaitable[None]]

_BACKOFF_FACTOR = 0.7  # pace after a per-minute 429
_FLOOR = 0.2  # never below this share of the configured pace
_RECOVERY_STEP = 0.05  # share of the configured pace regained ...
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
    # Pace slightly under the limit: our clock and the server's window disagree by the
    # network's jitter. 1.5 % of a minute is ~0.9 s of slack, far above loopback or LAN jitter.
    safety: float = 0.985


class Bucket:
    def __init__(self, name: str, limits: Limits, clock: Callable[[], float], sleep: Sleep) -> None:
        self.name = name
        self.limits = limits
        self._clock = clock
        self._sleep = sleep
        self._lock = asyncio.Lock()
        self._next_start = 0.0
        self._tokens = limits.tpm or 0.0
        self._tokens_at = clock()
        self._pause_until = 0.0
        self._episode_start = float("-inf")  # when the latest 429 episode began
        self._scale = 1.0  # share of the configured pace in force
        self._successes = 0
        self.parked: QuotaParked | None = None
        self.pauses = 0
        self.waited_s = 0.0

    @property
    def pace_rpm(self) -> float | None:
        rpm = self.limits.rpm
        return None if rpm is None else rpm * self.limits.safety * self._scale

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
                wait = max(
                    self._pause_until - now, self._next_start - now, self._token_wait(now, tokens)
                )
                if wait <= 0:
                    break
                self.waited_s += wait
                await self._sleep(wait)
            now = self._clock()
            pace = self.pace_rpm
            if pace:
                self._next_start = max(now, self._next_start) + 60.0 / pace
            if self.limits.tpm:
                self._refill(now)
                self._tokens -= min(tokens, self.limits.tpm)
            return now

    def _refill(self, now: float) -> None:
        tpm = self.limits.tpm or 0.0
        self._tokens = min(tpm, self._tokens + (now - self._tokens_at) * tpm / 60.0)
        self._tokens_at = now

    def _token_wait(self, now: float, tokens: float) -> float:
        tpm = self.limits.tpm
        if not tpm or tokens <= 0:
            return 0.0
        self._refill(now)
        need = min(tokens, tpm) - self._tokens
        return 0.0 if need <= 0 else need * 60.0 / (tpm * self._scale)

    def rate_limited(self, retry_after: float | None, sent_at: float | None = None) -> None:
        """A per-minute 429: one shared pause, and a slower pace from now on.

        429s for calls sent before the current pause began (``sent_at``) belong to the same
        episode: several workers' calls were on the wire together. They may stretch the
        pause to the server's latest delay but do not slow the pace again."""
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
