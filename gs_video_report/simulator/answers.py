"""Deterministic, plausible answers that validate against a requested JSON Schema.

The content is derived from the video's name and duration (and clip range), seeded
so the same request always gets the same answer, and every string says it is
simulated. Timestamps (integer fields named ``*seconds*``) rise through the clip.
"""

from __future__ import annotations

import hashlib
import random
import re
from dataclasses import dataclass
from typing import Any

_CJK = re.compile(r"[\u4e00-\u9fff]")

_EN_SENTENCES = (
    "explains how {topic} builds on the previous idea",
    "shows a worked example of {topic} step by step",
    "points out a common mistake students make with {topic}",
    "connects {topic} to a real classroom situation",
    "summarises the key idea of {topic} before moving on",
    "asks the audience a question about {topic}",
)
_ZH_SENTENCES = (
    "讲解{topic}如何承接前面的内容",
    "通过一个例子一步一步演示{topic}",
    "指出学生在{topic}上常见的错误",
    "把{topic}和真实的课堂情境联系起来",
    "在进入下一部分之前总结{topic}的要点",
    "向听众提出一个关于{topic}的问题",
)


@dataclass
class _Context:
    rng: random.Random
    topic: str
    chinese: bool
    start_s: float
    end_s: float


def _topic(name: str) -> str:
    stem = re.sub(r"\.[A-Za-z0-9]{2,4}$", "", name)
    words = re.sub(r"[_\-.]+", " ", stem).strip()
    return words or "this video"


def fake_answer(
    schema: dict[str, Any],
    *,
    name: str,
    duration_s: float,
    prompt: str = "",
    start_s: float = 0.0,
    end_s: float | None = None,
) -> Any:
    seed = hashlib.sha256(
        f"{name}|{duration_s}|{start_s}|{end_s}|{sorted(schema)}".encode()
    ).digest()
    end = duration_s if end_s is None else min(end_s, duration_s)
    ctx = _Context(
        rng=random.Random(seed),
        topic=_topic(name),
        chinese=bool(_CJK.search(prompt)),
        start_s=max(0.0, start_s),
        end_s=max(start_s + 1.0, end),
    )
    return _value(schema, "root", ctx, 0, 1)


def _count(schema: dict[str, Any], name: str, ctx: _Context) -> int:
    span_min = (ctx.end_s - ctx.start_s) / 60
    wanted = {"transcript": max(2, min(12, int(span_min * 2) + 2))}.get(name, 3)
    low = int(schema.get("minItems", 0))
    high = int(schema.get("maxItems", max(wanted, low)))
    return max(low, min(high, wanted))


def _seconds(name: str, ctx: _Context, index: int, count: int) -> int:
    span = ctx.end_s - ctx.start_s
    at = ctx.start_s + span * (index + (1 if name.startswith("end") else 0)) / max(1, count)
    if name.startswith("end"):
        at -= 1
    return int(max(ctx.start_s, min(ctx.end_s - 1, at)))


def _text(name: str, ctx: _Context, index: int) -> str:
    n = index + 1
    if ctx.chinese:
        sentence = ctx.rng.choice(_ZH_SENTENCES).format(topic=ctx.topic)
        special = {
            "title": f"【模拟】{ctx.topic}",
            "speaker": "讲师",
            "label": "讲师" if index == 0 else f"学生 {chr(64 + n)}",
            "term": f"Simulated Term {n}",
            "name": f"Simulated Person {n}",
        }
        return special.get(name, f"【模拟】第{n}部分：讲师{sentence}。")
    sentence = ctx.rng.choice(_EN_SENTENCES).format(topic=ctx.topic)
    special = {
        "title": f"[Simulated] {ctx.topic.title()}",
        "main_topic": f"[Simulated] {ctx.topic.title()}",
        "speaker": "Instructor",
        "label": "Instructor" if index == 0 else f"Student {chr(64 + n)}",
        "term": f"Simulated term {n}",
        "name": f"Simulated person {n}",
        "question": f"[Simulated] What does part {n} of {ctx.topic} show?",
    }
    return special.get(name, f"[Simulated] Part {n}: the speaker {sentence}.")


def _value(schema: dict[str, Any], name: str, ctx: _Context, index: int, count: int) -> Any:
    if schema.get("enum"):
        return schema["enum"][index % len(schema["enum"])]
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "string")
    if kind == "object":
        props = schema.get("properties", {})
        return {key: _value(sub, key, ctx, index, count) for key, sub in props.items()}
    if kind == "array":
        n = _count(schema, name, ctx)
        item = schema.get("items", {"type": "string"})
        return [_value(item, name, ctx, i, n) for i in range(n)]
    if kind in ("integer", "number"):
        if "second" in name:
            value: float = _seconds(name, ctx, index, count)
        elif "minute" in name:
            value = 10 + 5 * (index % 3)
        else:
            value = index + 1
        low = schema.get("minimum")
        high = schema.get("maximum")
        if low is not None:
            value = max(value, low)
        if high is not None:
            value = min(value, high)
        return int(value) if kind == "integer" else float(value)
    if kind == "boolean":
        return index % 2 == 0
    return _text(name, ctx, index)
