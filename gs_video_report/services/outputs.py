"""Every file of one lesson, in the formats asked for, from its answer and metadata alone
(what the JSON sidecar holds): the Markdown, the HTML page, SRT and WebVTT subtitles.
One function, so ``batch`` and ``render`` write the very same bytes."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gs_video_report.models import LessonFiles, LessonFormat
from gs_video_report.services import subtitles
from gs_video_report.services.formatter import LessonFormatter, LessonMeta
from gs_video_report.services.html import render_page
from gs_video_report.services.templates import LessonTemplate

SUBTITLE_FORMATS = (LessonFormat.SRT, LessonFormat.VTT)


def untimed_note(template: LessonTemplate, formats: Iterable[LessonFormat]) -> str | None:
    """The one line saying the subtitles asked for cannot come from ``template``'s
    answers (None when they can, or when none are asked for)."""
    asked = "/".join(f.value for f in formats if f in SUBTITLE_FORMATS)
    if not asked or subtitles.timed_field(template.schema) is not None:
        return None
    return f"{asked} skipped: template '{template.name}' has no timed segments"


@dataclass(frozen=True)
class RenderedFile:
    format: LessonFormat
    path: Path
    text: str


@dataclass(frozen=True)
class RenderedLesson:
    files: tuple[RenderedFile, ...]
    notes: tuple[str, ...]  # one line each: a format skipped, segments left out


def render_lesson(
    answer: Mapping[str, Any],
    meta: LessonMeta,
    files: LessonFiles,
    formats: Iterable[LessonFormat],
) -> RenderedLesson:
    wanted = tuple(formats)
    subs = None
    notes: list[str] = []
    if any(f in wanted for f in SUBTITLE_FORMATS):
        subs = subtitles.from_answer(meta.template.schema, answer, meta.duration_s)
        asked = "/".join(f.value for f in wanted if f in SUBTITLE_FORMATS)
        untimed = untimed_note(meta.template, wanted)
        if subs is None and untimed:
            notes.append(untimed)
        elif subs is not None and not subs.cues:
            notes.append(f"{asked} skipped: the answer has no timed segment with text")
        elif subs is not None and subs.dropped:
            notes.append(f"{subs.dropped} segment(s) start after the video's end: not subtitled")
    cued = subs is not None and bool(subs.cues)
    out: list[RenderedFile] = []
    for fmt in wanted:
        path = files.path(fmt)
        if fmt is LessonFormat.MD:
            text = LessonFormatter(meta.template).render(answer, meta, path)
        elif fmt is LessonFormat.HTML:
            text = render_page(answer, meta, path)
        elif subs is None or not cued:
            continue
        elif fmt is LessonFormat.SRT:
            text = subtitles.to_srt(subs)
        else:
            text = subtitles.to_vtt(subs)
        out.append(RenderedFile(fmt, path, text))
    return RenderedLesson(tuple(out), tuple(notes))
