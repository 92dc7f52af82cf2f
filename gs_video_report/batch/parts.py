"""Long videos in parts: one upload, several generate calls over ``video_metadata``
start/end offsets, and one lesson merged from their answers.

A video is split up front when its input would not fit the model at the template's media
resolution and fps, and after the fact when its answer is cut off (MAX_TOKENS) even with
the largest output budget. Parts are stored one by one (see ``CheckpointManager.parts``),
so a resume only asks for the parts that are missing.

Merging follows the template's schema: lists are joined in time order without repeats
(items with the same identity — a term, a name, the same segment — appear once) and cut
to the schema's ``maxItems`` evenly across the video; a title-like string comes from the
first part, other strings are joined as paragraphs; numbers come from the first part.
Times ("...second..." fields) are made absolute when a part answered relative to its clip.
"""

from __future__ import annotations

import dataclasses
import itertools
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from gs_video_report.batch.cost import estimate_input_tokens
from gs_video_report.catalog import MODELS
from gs_video_report.clock import Clock
from gs_video_report.models import Generation, GenerationSettings, Usage
from gs_video_report.storage.checkpoint import CheckpointManager

# A part must fit the model's input with room for the prompt and the answer.
_INPUT_SHARE = 0.8
MIN_PART_S = 60.0
_DEFAULT_INPUT_TOKENS = 1_048_576  # a model not in the catalog: assume the common window
_TITLE_WORDS = ("title", "topic", "name", "subject")


@dataclass(frozen=True)
class Part:
    index: int
    start_s: float
    end_s: float
    answer: dict[str, Any] | None = None  # None: not generated yet
    usage: Usage | None = None

    @property
    def done(self) -> bool:
        return self.answer is not None


class StoredParts:
    """A task's parts in the state database: each part's answer is committed as it
    arrives, so a resume asks only for the missing ones. A whole-video answer is kept as
    the only part (``keep``) before its lesson is written."""

    def __init__(self, store: CheckpointManager, task_id: int, clock: Clock) -> None:
        self.store, self.task_id, self.clock = store, task_id, clock

    async def load(self) -> list[Part]:
        return [
            Part(
                row["idx"],
                row["start_s"],
                row["end_s"],
                json.loads(row["answer_json"]) if row["answer_json"] else None,
                Usage(**json.loads(row["usage_json"])) if row["usage_json"] else None,
            )
            for row in await self.store.parts(self.task_id)
        ]

    async def plan(self, bounds: Sequence[tuple[float, float]]) -> list[Part]:
        await self.store.plan_parts(self.task_id, bounds)
        return await self.load()

    async def keep(self, generation: Generation, duration_s: float) -> None:
        await self.store.keep_answer(
            self.task_id,
            duration_s,
            json.dumps(generation.data, ensure_ascii=False),
            json.dumps(dataclasses.asdict(generation.usage)),
            self.clock.time(),
        )

    async def finish(self, part: Part, answer: dict[str, Any], usage: Usage) -> Part:
        await self.store.finish_part(
            self.task_id,
            part.index,
            json.dumps(answer, ensure_ascii=False),
            json.dumps(dataclasses.asdict(usage)),
            self.clock.time(),
        )
        return Part(part.index, part.start_s, part.end_s, answer, usage)


def fits(duration_s: float, settings: GenerationSettings, input_tokens: int) -> bool:
    return estimate_input_tokens(duration_s, settings, "") <= _INPUT_SHARE * input_tokens


def spans(
    duration_s: float | None,
    part_s: float,
    settings: GenerationSettings,
    input_tokens: int,
    *,
    at_least_two: bool = False,
) -> list[tuple[float, float]]:
    """Part boundaries for a video, or [] when it goes in one request. Parts are
    ``part_s`` long at most, shorter when that would not fit the model, and equal."""
    if not duration_s or duration_s < 2 * MIN_PART_S:
        return []
    if not at_least_two and fits(duration_s, settings, input_tokens):
        return []
    per_second = max(1, estimate_input_tokens(1000, settings, "")) / 1000
    longest = min(part_s, _INPUT_SHARE * input_tokens / per_second)
    count = max(2 if at_least_two else 1, math.ceil(duration_s / max(MIN_PART_S, longest)))
    if count < 2:
        return []
    step = duration_s / count
    bounds = [round(i * step, 1) for i in range(count)] + [round(duration_s, 1)]
    return list(itertools.pairwise(bounds))


def input_limit(model: str) -> int:
    info = MODELS.get(model)
    return info.input_tokens if info else _DEFAULT_INPUT_TOKENS


def part_instruction(index: int, count: int, start_s: float, end_s: float) -> str:
    return (
        f"This request covers part {index + 1} of {count} of the video: from second"
        f" {start_s:.0f} to second {end_s:.0f}. Describe only this part, and give every time"
        " in seconds from the start of the whole video (not of this part)."
    )


# -- merging ---------------------------------------------------------------------------
def _is_time(name: str) -> bool:
    return "second" in name


def _times(value: Any, name: str = "") -> list[float]:
    if isinstance(value, dict):
        return [t for key, item in value.items() for t in _times(item, key)]
    if isinstance(value, list):
        return [t for item in value for t in _times(item, name)]
    if _is_time(name) and isinstance(value, int | float) and not isinstance(value, bool):
        return [float(value)]
    return []


def _shift(value: Any, by: float, name: str = "") -> Any:
    if isinstance(value, dict):
        return {key: _shift(item, by, key) for key, item in value.items()}
    if isinstance(value, list):
        return [_shift(item, by, name) for item in value]
    if _is_time(name) and isinstance(value, int | float) and not isinstance(value, bool):
        return type(value)(value + by)
    return value


def absolute(answer: dict[str, Any], start_s: float, end_s: float) -> dict[str, Any]:
    """The answer with absolute times: a part that counted from its own start (every time
    within the clip's length, some before the clip) is shifted by ``start_s``."""
    times = _times(answer)
    if start_s <= 0 or not times:
        return answer
    if max(times) <= (end_s - start_s) + 1 and min(times) < start_s:
        return dict(_shift(answer, start_s))
    return answer


def _first_time(item: Any) -> float | None:
    times = _times(item)
    return min(times) if times else None


def _identity(item: Any) -> str:
    """Items with a time are distinct by content; others by their first text field (a
    term, a name, a question), so what every part mentions appears once."""
    if isinstance(item, dict) and _first_time(item) is None:
        for value in item.values():
            if isinstance(value, str) and value.strip():
                return value.strip().casefold()
    return json.dumps(item, sort_keys=True, ensure_ascii=False)


def _spread(items: list[Any], limit: int) -> list[Any]:
    if len(items) <= limit:
        return items
    if limit <= 1:
        return items[:limit]
    step = (len(items) - 1) / (limit - 1)
    return [items[round(i * step)] for i in range(limit)]


def merge_values(schema: dict[str, Any], values: Sequence[Any], name: str = "") -> Any:
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), None)
    present = [v for v in values if v is not None]
    if not present:
        return values[0] if values else None
    if kind == "object" and all(isinstance(v, dict) for v in present):
        props = schema.get("properties", {})
        keys = [k for k in props if any(k in v for v in present)]
        keys += [k for v in present for k in v if k not in props and k not in keys]
        return {
            key: merge_values(props.get(key, {}), [v.get(key) for v in present], key)
            for key in keys
        }
    if kind == "array" and all(isinstance(v, list) for v in present):
        seen: set[str] = set()
        items = []
        for value in present:
            for item in value:
                identity = _identity(item)
                if identity not in seen:
                    seen.add(identity)
                    items.append(item)
        if all(_first_time(i) is not None for i in items):
            items.sort(key=lambda i: _first_time(i) or 0.0)
        limit = schema.get("maxItems")
        return _spread(items, int(limit)) if limit is not None else items
    if kind == "string" or all(isinstance(v, str) for v in present):
        texts = list(dict.fromkeys(str(v).strip() for v in present if str(v).strip()))
        if not texts:
            return present[0]
        if any(word in name.lower() for word in _TITLE_WORDS):
            return texts[0]
        return "\n\n".join(texts)
    return present[0]


def merge(schema: dict[str, Any], parts: Sequence[Part]) -> dict[str, Any]:
    answers = [absolute(p.answer, p.start_s, p.end_s) for p in parts if p.answer is not None]
    merged = merge_values(schema, answers)
    assert isinstance(merged, dict)
    return merged
