"""Adapting instead of repeating: when an answer fails in a way a person would fix by hand,
change what they would change for the next call, and say what and why.

- MAX_TOKENS: a larger output budget (doubling up to the model's ceiling), then a lower
  thinking level; after that the video has to be processed in parts.
- RECITATION: once, an instruction to paraphrase instead of quoting.
- An answer that is not valid JSON or misses the schema: once, an instruction naming what
  was invalid.
- SAFETY, a blocked prompt, an empty answer: nothing a retry would fix; the video fails
  with the reason.

The adjustments are data (``Adjustments``), stored with the task before the next call,
so a resumed task continues with them, and each note goes into the attempt log and the
report's ``prompt_evolution``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from gs_video_report.errors import AnswerError
from gs_video_report.models import GenerationSettings

MAX_OUTPUT_CEILING = 65_536  # Gemini 2.5/3 Flash and Pro: 65,536 output tokens
_FALLBACK_BUDGET = 8_192  # the API default when the template sets none
_LOWER_THINKING = {"high": "low", "medium": "low", "low": "minimal"}

PARAPHRASE = (
    "Do not quote the video, its slides or any other source verbatim beyond a few words:"
    " paraphrase and summarise in your own words."
)
_REPAIR = (
    "Your previous answer was rejected: {problem}. Answer again with JSON that matches the"
    " response schema exactly: every required field present, with the right types."
)


@dataclass(frozen=True)
class Adjustments:
    max_output_tokens: int | None = None
    thinking_level: str | None = None
    instructions: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()  # what was changed, in order, and why

    def settings(self, base: GenerationSettings) -> GenerationSettings:
        return replace(
            base,
            max_output_tokens=self.max_output_tokens or base.max_output_tokens,
            thinking_level=self.thinking_level or base.thinking_level,
        )

    def prompt(self, base: str) -> str:
        return "\n\n".join((base, *self.instructions)) if self.instructions else base

    def to_json(self) -> str:
        return json.dumps(
            {
                "max_output_tokens": self.max_output_tokens,
                "thinking_level": self.thinking_level,
                "instructions": list(self.instructions),
                "notes": list(self.notes),
            },
            ensure_ascii=False,
        )

    @classmethod
    def from_json(cls, text: str | None) -> Adjustments:
        if not text:
            return cls()
        data: dict[str, Any] = json.loads(text)
        return cls(
            data.get("max_output_tokens"),
            data.get("thinking_level"),
            tuple(data.get("instructions", ())),
            tuple(data.get("notes", ())),
        )


def adapt(error: AnswerError, current: Adjustments, base: GenerationSettings) -> Adjustments | None:
    """The next call's adjustments after ``error``, or None: nothing left to change."""
    reason = error.reason
    if reason == "MAX_TOKENS":
        budget = current.max_output_tokens or base.max_output_tokens or _FALLBACK_BUDGET
        if budget < MAX_OUTPUT_CEILING:
            bigger = min(MAX_OUTPUT_CEILING, budget * 2)
            return _with(
                current,
                f"MAX_TOKENS: output budget {budget} -> {bigger} tokens",
                max_output_tokens=bigger,
            )
        level = (current.thinking_level or base.thinking_level or "high").lower()
        lower = _LOWER_THINKING.get(level)
        if lower is not None:
            return _with(
                current,
                f"MAX_TOKENS at the {budget}-token ceiling: thinking level {level} -> {lower}",
                thinking_level=lower,
            )
        return None
    if reason == "RECITATION":
        if PARAPHRASE in current.instructions:
            return None
        return _with(
            current,
            "RECITATION: asked to paraphrase instead of quoting",
            instructions=(*current.instructions, PARAPHRASE),
        )
    if reason in ("SCHEMA_MISMATCH", "INVALID_JSON"):
        if any(i.startswith("Your previous answer was rejected") for i in current.instructions):
            return None
        problem = error.message
        return _with(
            current,
            f"{reason}: told the model what was invalid ({problem[:120]})",
            instructions=(*current.instructions, _REPAIR.format(problem=problem)),
        )
    return None


def _with(current: Adjustments, note: str, **changes: Any) -> Adjustments:
    return replace(current, notes=(*current.notes, note), **changes)
