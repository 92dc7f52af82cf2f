"""Tokens and dollars: estimates before a call, and the price of real usage after it.

An unknown model's price is ``None`` ("unknown"), never $0.
"""

from __future__ import annotations

from datetime import date

from gs_video_report.catalog import MODELS
from gs_video_report.models import GenerationSettings, Usage

# Tokens per second of video (Gemini docs): frames at the media resolution x fps, plus audio.
FRAME_TOKENS = {"low": 66, "medium": 66, "high": 258}
AUDIO_TOKENS_PER_S = 32
EXPECTED_OUTPUT_TOKENS = 4000  # a lesson; corrected by real usage as videos finish


def estimate_input_tokens(
    duration_s: float | None, settings: GenerationSettings, prompt: str
) -> int:
    seconds = duration_s if duration_s is not None else 300.0  # YouTube: unknown until answered
    frames = FRAME_TOKENS.get(settings.media_resolution or "low", 66) * (settings.fps or 1.0)
    return int(seconds * (frames + AUDIO_TOKENS_PER_S)) + len(prompt) // 4


def price_usd(model: str, input_tokens: int, output_tokens: int, day: date) -> float | None:
    info = MODELS.get(model)
    price = info.price_on(day) if info else None
    if price is None:
        return None
    return (input_tokens * price.input + output_tokens * price.output) / 1_000_000


def cost_of(model: str, usage: Usage, day: date) -> float | None:
    """Output is billed including thinking tokens."""
    return price_usd(
        model, usage.prompt_tokens, usage.candidates_tokens + usage.thoughts_tokens, day
    )
