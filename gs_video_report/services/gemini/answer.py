"""Reading a generateContent response: a complete, valid JSON answer becomes a
``Generation``; anything else (blocked, cut off, empty, not JSON, off-schema) an
``AnswerError``, never half a lesson."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from google.genai import types

from gs_video_report.errors import AnswerError
from gs_video_report.models import Generation, Usage

Validator = Callable[[Any], list[str]]


def usage_of(meta: types.GenerateContentResponseUsageMetadata | None) -> Usage:
    if meta is None:
        return Usage()
    return Usage(
        prompt_tokens=meta.prompt_token_count or 0,
        candidates_tokens=meta.candidates_token_count or 0,
        thoughts_tokens=meta.thoughts_token_count or 0,
        cached_tokens=meta.cached_content_token_count or 0,
        total_tokens=meta.total_token_count or 0,
    )


def enum_name(value: Any) -> str:
    return str(getattr(value, "name", value))


def read_answer(
    response: types.GenerateContentResponse,
    *,
    model: str,
    latency: float,
    validate: Validator | None,
) -> Generation:
    """The answer's JSON object; anything short of a complete answer that passes
    ``validate`` is an ``AnswerError``."""
    usage = usage_of(response.usage_metadata)
    feedback = response.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = enum_name(feedback.block_reason)
        raise AnswerError(
            f"the prompt was blocked by Gemini ({reason})", reason=f"BLOCKED_{reason}"
        )
    if not response.candidates:
        raise AnswerError("Gemini returned no answer (no candidates)", reason="EMPTY")
    candidate = response.candidates[0]
    finish = enum_name(candidate.finish_reason) if candidate.finish_reason else "UNSPECIFIED"
    if finish != "STOP":
        hints = {
            "MAX_TOKENS": "the answer hit max_output_tokens and was cut off",
            "SAFETY": "the answer was stopped by safety filters",
            "RECITATION": "the answer was stopped for reciting copyrighted text",
        }
        hint = hints.get(finish, "the answer did not finish normally")
        raise AnswerError(f"incomplete answer: finish_reason={finish} ({hint})", reason=finish)
    parts = candidate.content.parts if candidate.content and candidate.content.parts else []
    text = "".join(p.text for p in parts if p.text and not p.thought)
    if not text.strip():
        raise AnswerError("Gemini returned an empty answer", reason="EMPTY")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AnswerError(
            f"the answer is not valid JSON ({exc.msg})", reason="INVALID_JSON"
        ) from exc
    if not isinstance(data, dict):
        raise AnswerError("the answer is JSON but not an object", reason="INVALID_JSON")
    problems = validate(data) if validate else []
    if problems:
        more = f" (+{len(problems) - 1} more)" if len(problems) > 1 else ""
        raise AnswerError(
            f"the answer does not match the template's schema: {problems[0]}{more}",
            reason="SCHEMA_MISMATCH",
        )
    return Generation(
        data=data,
        usage=usage,
        finish_reason=finish,
        model=model,
        model_version=response.model_version,
        latency_s=latency,
    )
