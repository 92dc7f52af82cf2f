"""Models this tool knows, with context sizes and dated prices (USD per 1M tokens).

Prices change on fixed dates, so each model has a list of price points; the one in
force on a given day is used. Sources: Gemini pricing page as transcribed on
2026-11-22 (see docs/models.md); context-cache prices (cached read, storage per hour)
from the same page as copied on 2026-12-01 (shared/reference/batch-mode-and-caching.md
B2), for the models it lists. Any other model name works with ``-m``; its price
is "unknown", never $0.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date


@dataclass(frozen=True)
class PricePoint:
    effective: date
    input: float  # text/image/video input
    output: float  # output including thinking
    batch_input: float
    batch_output: float
    # Context caching (explicit): reading cached input, and keeping 1M tokens cached for an
    # hour. None: not known for this model, so the tool never creates a cache for it.
    # Writing a cache is billed as input (an assumption the reference marks unverified).
    cached_input: float | None = None
    cache_storage_hour: float | None = None


@dataclass(frozen=True)
class ModelInfo:
    name: str
    description: str
    input_tokens: int
    output_tokens: int
    prices: tuple[PricePoint, ...]
    cache_min_tokens: int = 4096  # the least a context cache may hold (3.x: 4,096)

    def price_on(self, day: date) -> PricePoint | None:
        current = [p for p in self.prices if p.effective <= day]
        return max(current, key=lambda p: p.effective) if current else None


_START = date(2026, 1, 1)


def _flash(name: str, description: str) -> ModelInfo:
    return ModelInfo(
        name,
        description,
        1_048_576,
        65_536,
        (
            PricePoint(_START, 0.75, 3.75, 0.375, 1.875, 0.075, 0.50),
            PricePoint(date(2027, 1, 1), 1.50, 7.50, 0.75, 3.75, 0.15, 1.00),
        ),
    )


MODELS: dict[str, ModelInfo] = {
    m.name: m
    for m in (
        _flash("gemini-3.8-flash", "Most capable Flash model (default)"),
        _flash("gemini-3.7-flash", "Previous Flash generation"),
        _flash("gemini-3.6-flash", "Older Flash generation"),
        ModelInfo(
            "gemini-3.5-flash",
            "Earlier Flash",
            1_048_576,
            65_536,
            (PricePoint(_START, 1.50, 9.00, 0.75, 4.50),),
        ),
        ModelInfo(
            "gemini-3.5-flash-lite",
            "Fast and cheap",
            1_048_576,
            65_536,
            (PricePoint(_START, 0.30, 2.50, 0.15, 1.25),),
        ),
        ModelInfo(
            "gemini-3.1-flash-lite",
            "Cheapest current model",
            1_048_576,
            65_536,
            (PricePoint(_START, 0.25, 1.50, 0.125, 0.75),),
        ),
        ModelInfo(
            "gemini-3.1-pro-preview",
            "Pro preview (prices for prompts <= 200k tokens)",
            1_048_576,
            65_536,
            (PricePoint(_START, 2.00, 12.00, 1.00, 6.00, 0.20, 4.50),),
        ),
        ModelInfo(
            "gemini-4-argon",
            "Frontier model",
            1_048_576,
            65_536,
            (
                PricePoint(_START, 2.00, 10.00, 1.00, 5.00),
                PricePoint(date(2026, 12, 1), 4.00, 20.00, 2.00, 10.00),
            ),
        ),
        ModelInfo(
            "gemini-4-carbon",
            "Frontier reasoning model",
            1_048_576,
            65_536,
            (
                PricePoint(_START, 2.00, 10.00, 1.00, 5.00),
                PricePoint(date(2026, 12, 1), 4.00, 20.00, 2.00, 10.00),
            ),
        ),
        ModelInfo(
            "gemini-2.5-flash",
            "Legacy (may be closed to new users)",
            1_048_576,
            65_536,
            (PricePoint(_START, 0.30, 2.50, 0.15, 1.25, 0.03, 1.00),),
            cache_min_tokens=2048,
        ),
        ModelInfo(
            "gemini-2.5-flash-lite",
            "Legacy (may be closed to new users)",
            1_048_576,
            65_536,
            (PricePoint(_START, 0.10, 0.40, 0.05, 0.20, 0.01, 1.00),),
            cache_min_tokens=2048,
        ),
        ModelInfo(
            "gemini-2.5-pro",
            "Legacy (may be closed to new users)",
            1_048_576,
            65_536,
            (PricePoint(_START, 1.25, 10.00, 0.625, 5.00, 0.125, 4.50),),
            cache_min_tokens=2048,
        ),
    )
}
