"""Subtitles (SRT and WebVTT) from an answer's timed segments.

A template's answer has timed segments when its schema has a top-level array of
objects that require ``start_seconds`` and have a ``text`` (the transcript template's
``transcript``); ``speaker`` and ``end_seconds`` are used when present. Cues are
ordered by start; segments that start at the same second become one cue; a cue ends
at its own ``end_seconds`` when that comes before the next start, else at the next
start, and the last at the video's end (or ``LAST_CUE_S`` after its start when the
duration is unknown, as for YouTube). So cues never overlap and always last.
Segments that start at or after the video's end cannot be shown and are dropped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

LAST_CUE_S = 10.0  # the last cue's length when the video's duration is unknown
_BLANK_LINES = re.compile(r"\n\s*\n+")


@dataclass(frozen=True)
class Cue:
    start_s: float
    end_s: float
    text: str
    speaker: str | None = None


@dataclass(frozen=True)
class Subtitles:
    cues: tuple[Cue, ...]
    dropped: int  # segments past the video's end


def timed_field(schema: Mapping[str, Any]) -> str | None:
    """The answer's array of timed segments, by the rule in the module docstring."""
    for name, spec in (schema.get("properties") or {}).items():
        items = spec.get("items") if isinstance(spec, dict) else None
        if not isinstance(items, dict) or spec.get("type") != "array":
            continue
        required = items.get("required") or []
        if "start_seconds" in required and "text" in (items.get("properties") or {}):
            return str(name)
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and value >= 0 else None


def _clean(text: Any) -> str:
    # a blank line would end the cue in both formats
    return _BLANK_LINES.sub("\n", str(text).replace("\r\n", "\n").replace("\r", "\n")).strip()


def build(segments: Sequence[Any], duration_s: float | None) -> Subtitles:
    """Cues for ``segments`` (the answer's timed array), by the module's rules."""
    timed: list[tuple[float, float | None, str, str | None]] = []
    dropped = 0
    for seg in segments:
        start = _seconds(seg.get("start_seconds")) if isinstance(seg, dict) else None
        text = _clean(seg.get("text", "")) if isinstance(seg, dict) else ""
        if start is None or not text:
            continue
        if duration_s is not None and start >= duration_s:
            dropped += 1
            continue
        speaker = " ".join(str(seg.get("speaker") or "").split()) or None
        timed.append((start, _seconds(seg.get("end_seconds")), text, speaker))
    timed.sort(key=lambda t: t[0])  # stable: the answer's order within a second
    merged: list[tuple[float, float | None, str, str | None]] = []
    for start, end, text, speaker in timed:
        if merged and merged[-1][0] == start:
            prev = merged[-1]
            line = f"{speaker}: {text}" if speaker and speaker != prev[3] else text
            merged[-1] = (start, prev[1], f"{prev[2]}\n{line}", prev[3])
        else:
            merged.append((start, end, text, speaker))
    cues = []
    for i, (start, end, text, speaker) in enumerate(merged):
        if i + 1 < len(merged):
            bound = merged[i + 1][0]
        elif duration_s is not None:
            bound = duration_s
        else:
            bound = start + LAST_CUE_S
        stop = end if end is not None and start < end < bound else bound
        cues.append(Cue(start, stop, text, speaker))
    return Subtitles(tuple(cues), dropped)


def from_answer(
    schema: Mapping[str, Any], answer: Mapping[str, Any], duration_s: float | None
) -> Subtitles | None:
    """None when the template's answers have no timed segments."""
    field = timed_field(schema)
    if field is None:
        return None
    segments = answer.get(field)
    return build(segments if isinstance(segments, list) else [], duration_s)


def _clock(seconds: float, sep: str) -> str:
    ms = round(seconds * 1000)
    h, rest = divmod(ms, 3_600_000)
    m, rest = divmod(rest, 60_000)
    s, ms = divmod(rest, 1000)
    return f"{h:02d}:{m:02d}:{s:02d}{sep}{ms:03d}"


def to_srt(subtitles: Subtitles) -> str:
    blocks = []
    for n, cue in enumerate(subtitles.cues, 1):
        text = f"{cue.speaker}: {cue.text}" if cue.speaker else cue.text
        timing = f"{_clock(cue.start_s, ',')} --> {_clock(cue.end_s, ',')}"
        blocks.append(f"{n}\n{timing}\n{text.replace('-->', '->')}\n")
    return "\n".join(blocks)


def _vtt_escape(text: str) -> str:
    # the cue payload is markup: & < > are entities (so "-->" cannot end up in it)
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_vtt(subtitles: Subtitles) -> str:
    blocks = ["WEBVTT\n"]
    for cue in subtitles.cues:
        text = _vtt_escape(cue.text)
        if cue.speaker:  # a voice span: players show or style the speaker
            text = f"<v {_vtt_escape(cue.speaker)}>{text}"
        blocks.append(f"{_clock(cue.start_s, '.')} --> {_clock(cue.end_s, '.')}\n{text}\n")
    return "\n".join(blocks)
