"""The retry decision, as a small pure policy over our error classes.

Exponential backoff with jitter, never shorter than the server's own RetryInfo
delay. Non-retryable errors (permanent, auth, per-day quota, bad answers) get no
retry at all. Randomness is injected so tests can pin it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

from gs_video_report.errors import ApiError


@dataclass(frozen=True)
class RetryPolicy:
    max_retries: int = 3
    base_s: float = 2.0
    cap_s: float = 120.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay(self, error: ApiError, retry_number: int) -> float | None:
        """Seconds to wait before retry ``retry_number`` (1-based), or None to give up."""
        if not error.retryable or retry_number > self.max_retries:
            return None
        ceiling = min(self.cap_s, self.base_s * 2 ** (retry_number - 1))
        backoff = ceiling * (0.5 + 0.5 * self.rng.random())  # "equal jitter": never ~0
        if error.retry_after is not None:
            # Honour the server, plus a little spread so paused workers do not all return at once.
            server: float = error.retry_after
            spread: float = self.rng.uniform(0.0, min(2.0, 0.1 * server + 0.5))
            return server + spread
        return float(backoff)
