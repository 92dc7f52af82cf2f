"""Tokens and dollars: estimates before a call, real prices after it, and the budget.

An unknown model's price is ``None`` ("unknown"), never $0. Prices come from the shipped,
dated table (``catalog``) unless the config's ``prices`` section overrides a model.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING

from gs_video_report.catalog import MODELS, PricePoint
from gs_video_report.models import GenerationSettings, Usage

if TYPE_CHECKING:
    from gs_video_report.config import PriceOverride  # pydantic: not needed to price

# Tokens per second of video (Gemini docs): frames at the media resolution x fps, plus audio.
FRAME_TOKENS = {"low": 66, "medium": 66, "high": 258}
AUDIO_TOKENS_PER_S = 32
EXPECTED_OUTPUT_TOKENS = 4000  # a lesson; corrected by real usage as videos finish
# Thinking a call may spend at its level before real usage is known (max_output_tokens
# caps thinking and output together); models think at "medium" unless told otherwise.
THINKING_TOKENS = {"minimal": 0, "low": 1_024, "medium": 4_096, "high": 16_384}
DEFAULT_THINKING = "medium"
UNKNOWN_DURATION_S = 300.0  # YouTube: unknown until answered


def usd(amount: float) -> str:
    """Dollars for people: cents for real sums, more digits for the tiny ones."""
    return f"${amount:.2f}" if amount >= 0.1 or amount == 0 else f"${amount:.4f}"


def estimate_input_tokens(
    duration_s: float | None, settings: GenerationSettings, prompt: str
) -> int:
    seconds = duration_s if duration_s is not None else UNKNOWN_DURATION_S
    frames = FRAME_TOKENS.get(settings.media_resolution or "low", 66) * (settings.fps or 1.0)
    return int(seconds * (frames + AUDIO_TOKENS_PER_S)) + len(prompt) // 4


def expected_output_tokens(settings: GenerationSettings) -> int:
    """Output expected of one call before any real usage is known: a lesson plus the
    thinking its level allows, never more than the call may produce."""
    thinking = THINKING_TOKENS.get(settings.thinking_level or DEFAULT_THINKING, 4_096)
    expected = EXPECTED_OUTPUT_TOKENS + thinking
    return min(expected, settings.max_output_tokens) if settings.max_output_tokens else expected


class Prices:
    """The price in force for a model on a day: config override, else the shipped table."""

    def __init__(
        self, overrides: Mapping[str, PriceOverride] | None = None, *, discounted: bool = False
    ) -> None:
        self._overrides = dict(overrides or {})
        # Batch Mode and Flex: the table's batch prices (half of standard) are the price
        self.discounted = discounted

    def on(self, model: str, day: date | None = None) -> PricePoint | None:
        point = self._standard(model, day)
        if point is None or not self.discounted:
            return point
        return PricePoint(
            point.effective,
            point.batch_input,
            point.batch_output,
            point.batch_input,
            point.batch_output,
        )

    def _standard(self, model: str, day: date | None) -> PricePoint | None:
        override = self._overrides.get(model)
        if override is not None:
            return PricePoint(
                date.min,
                override.input,
                override.output,
                override.batch_input if override.batch_input is not None else override.input,
                override.batch_output if override.batch_output is not None else override.output,
            )
        info = MODELS.get(model)
        return info.price_on(day or datetime.now(UTC).date()) if info else None

    def usd(
        self, model: str, input_tokens: int, output_tokens: int, day: date | None = None
    ) -> float | None:
        price = self.on(model, day)
        if price is None:
            return None
        return (input_tokens * price.input + output_tokens * price.output) / 1_000_000

    def of_usage(self, model: str, usage: Usage, day: date | None = None) -> float | None:
        """Output is billed including thinking tokens; the prompt's cached tokens (part
        of ``prompt_tokens``) at the cached rate, where the table has one."""
        price = self.on(model, day)
        full = self.usd(
            model, usage.prompt_tokens, usage.candidates_tokens + usage.thoughts_tokens, day
        )
        if full is None or price is None or not usage.cached_tokens:
            return full
        rate = price.cached_input if price.cached_input is not None else price.input
        return full - usage.cached_tokens * (price.input - rate) / 1_000_000

    def of_grouped_usage(
        self, rows: Iterable[tuple[str, str, str, Usage]]
    ) -> tuple[dict[str, float | None], dict[str, float | None]]:
        """(batch, ISO day, model, usage) rows to USD per batch and per day, each priced
        on its day; None where a model without a known price was used."""
        by_batch: dict[str, float | None] = {}
        by_day: dict[str, float | None] = {}
        for batch, day, model, usage in rows:
            usd = self.of_usage(model, usage, date.fromisoformat(day))
            for table, key in ((by_batch, batch), (by_day, day)):
                known = table.get(key, 0.0)
                table[key] = None if usd is None or known is None else known + usd
        return by_batch, by_day


@dataclass
class Estimator:
    """Before-the-call estimates, corrected as real usage of finished videos arrives:
    input by the measured ratio real/estimated, output by the measured mean."""

    _estimated_in: int = 0
    _real_in: int = 0
    _real_out: int = 0
    _observed: int = 0

    def observe(self, estimated_input: int, usage: Usage) -> None:
        if usage.prompt_tokens <= 0:
            return
        self._estimated_in += estimated_input
        self._real_in += usage.prompt_tokens
        self._real_out += usage.candidates_tokens + usage.thoughts_tokens
        self._observed += 1

    @property
    def observed(self) -> int:
        return self._observed

    def tokens(
        self, estimated_input: int, settings: GenerationSettings | None = None
    ) -> tuple[int, int]:
        """(input, output) tokens expected for a video whose raw estimate is given; before
        any observation, the output its first call's ``settings`` allow for."""
        if not self._observed or not self._estimated_in:
            return estimated_input, expected_output_tokens(settings or GenerationSettings())
        ratio = self._real_in / self._estimated_in
        return round(estimated_input * ratio), round(self._real_out / self._observed)


class BudgetExceeded(Exception):
    """Internal signal: the next call would cross ``--cost-limit`` (stops scheduling)."""


class Budget:
    """``--cost-limit``: before every paid call, spent + in-flight estimates + this call's
    estimate must stay within the limit. The limit covers the whole batch, earlier runs
    of it included."""

    def __init__(self, limit_usd: float | None, spent_usd: float = 0.0) -> None:
        self.limit_usd = limit_usd
        self.spent_usd = spent_usd
        self._in_flight: dict[int, float] = {}

    @property
    def in_flight_usd(self) -> float:
        return sum(self._in_flight.values())

    def reserve(self, task_id: int, estimate_usd: float) -> None:
        """Hold ``estimate_usd`` for a video about to be paid for, or raise BudgetExceeded."""
        if (
            self.limit_usd is not None
            and self.spent_usd + self.in_flight_usd + estimate_usd > self.limit_usd
        ):
            raise BudgetExceeded(
                f"the next video (~{usd(estimate_usd)}) would cross the cost limit "
                f"{usd(self.limit_usd)} (spent {usd(self.spent_usd)}, "
                f"in flight ~{usd(self.in_flight_usd)})"
            )
        self._in_flight[task_id] = estimate_usd

    def holds(self, task_id: int) -> bool:
        return task_id in self._in_flight

    def release(self, task_id: int) -> None:
        self._in_flight.pop(task_id, None)

    def spend(self, usd: float | None) -> None:
        """A paid call answered (even a rejected answer is billed)."""
        self.spent_usd += usd or 0.0


class BudgetGate:
    """The budget as tasks meet it: each paid call reserves its estimate first and holds
    it until it has answered. While other calls' estimates are in flight, a call that
    does not fit waits for their real cost (often lower); it raises ``BudgetExceeded``
    only when it would not fit even with nothing in flight."""

    def __init__(self, budget: Budget, calibrated: Callable[[], bool] = lambda: True) -> None:
        self.budget = budget
        # With a limit, calls run one at a time until a real answer's usage (thinking
        # included) has corrected the estimates: a first wave of parallel calls at a
        # guessed price could overshoot the limit many times over.
        self.calibrated = calibrated
        self._freed = asyncio.Event()
        self._closed = False

    def _must_wait(self) -> bool:
        return (
            self.budget.limit_usd is not None
            and not self.calibrated()
            and self.budget.in_flight_usd > 0
        )

    async def reserve(
        self, task_id: int, estimate: Callable[[], float], *, waiting: Callable[[], None]
    ) -> bool:
        """True once reserved; False when the gate closed (the batch is stopping).
        ``estimate`` is asked again after every wait: real usage may have corrected it."""
        while not self._closed:
            if self._must_wait():
                waiting()
                self._freed.clear()
                await self._freed.wait()
                continue
            try:
                self.budget.reserve(task_id, estimate())
                return True
            except BudgetExceeded:
                if self.budget.in_flight_usd <= 0:
                    raise
            waiting()
            self._freed.clear()
            await self._freed.wait()
        return False

    def holds(self, task_id: int) -> bool:
        return self.budget.holds(task_id)

    def release(self, task_id: int) -> None:
        """Safe to call for a task that holds nothing (every task's ``finally`` does)."""
        self.budget.release(task_id)
        self._freed.set()

    def close(self) -> None:
        self._closed = True
        self._freed.set()
