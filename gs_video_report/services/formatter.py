"""LessonFormatter: a validated answer plus what we know of the video -> Markdown.

The Markdown is YAML front matter followed by the template's layout. Timestamps
become links: ``&t=Ns`` on the YouTube URL, or ``video.mp4#t=N`` relative to the
lesson file for local videos — the conventions of browsers, media players and
Obsidian's Media Extended plugin (docs/formats.md). The HTML page renders the same
layout (``body``) with its own timestamp links.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote_to_bytes

import yaml

from gs_video_report.errors import InputError
from gs_video_report.models import Usage, VideoSource, mmss
from gs_video_report.services.sources import parse_source, printable
from gs_video_report.services.templates import LessonTemplate

# Usage.as_dict's names, in Usage's field order
_TOKEN_KEYS = ("prompt", "candidates", "thoughts", "cached", "total")


@dataclass(frozen=True)
class LessonMeta:
    source: VideoSource
    duration_s: float | None
    template: LessonTemplate
    model: str
    created: datetime
    usage: Usage
    simulated: bool
    parameters: Mapping[str, str]

    @classmethod
    def from_sidecar(cls, document: Mapping[str, Any], template: LessonTemplate) -> LessonMeta:
        """What the lesson was written with, from its JSON sidecar (``front_matter`` of
        it is stored there as ``meta``); ``InputError`` when the sidecar lacks it."""
        try:
            front = document["meta"]
            tokens = front.get("tokens") or {}
            duration = front.get("duration_seconds")
            return cls(
                source=parse_source(str(document["source"])),
                # as stored (45, not 45.0): the front matter comes out as it was
                duration_s=duration if isinstance(duration, int | float) else None,
                template=template,
                model=str(front["model"]),
                created=datetime.fromisoformat(str(front["created"])),
                usage=Usage(*(int(tokens.get(k, 0)) for k in _TOKEN_KEYS)),
                simulated=bool(front.get("simulated", False)),
                parameters={str(k): str(v) for k, v in (front.get("parameters") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InputError(
                f"the sidecar has no usable 'meta' ({type(exc).__name__}: {exc})"
            ) from exc


def relative_video(source: VideoSource, beside: Path) -> str | None:
    """The local video's path from ``beside``'s folder as a relative URL: percent-encoded
    bytes, so a name that is not valid UTF-8 is kept as it is on disk (None for YouTube,
    or a video on another drive)."""
    if source.path is None:
        return None
    try:
        rel = os.path.relpath(source.path, beside.parent)
    except ValueError:
        return None
    return quote(os.fsencode(Path(rel).as_posix()), safe="/._-~")


def relocated(meta: LessonMeta, relative: object, sidecar: Path) -> LessonMeta:
    """``meta`` with the video found by its path relative to the sidecar, when the folder
    was moved with its videos (the absolute path then leads nowhere)."""
    path = meta.source.path
    if path is None or not isinstance(relative, str) or path.exists():
        return meta
    rel = os.fsdecode(unquote_to_bytes(relative))
    moved = Path(os.path.normpath(sidecar.parent / rel))  # not resolve(): as linked
    if not moved.is_file():
        return meta
    return replace(meta, source=replace(meta.source, path=moved))


def timestamp_target(source: VideoSource, lesson_path: Path, seconds: int) -> str:
    if source.is_youtube:
        return f"{source.identity}&t={seconds}s"
    assert source.path is not None
    rel = relative_video(source, lesson_path)
    if rel is None:  # another drive on Windows: fall back to an absolute file URI
        return f"{source.path.as_uri()}#t={seconds}"
    return f"{rel}#t={seconds}"


class LessonFormatter:
    def __init__(self, template: LessonTemplate) -> None:
        self.template = template

    def title(self, answer: Mapping[str, Any], source: VideoSource) -> str:
        field = self.template.title_field
        value = answer.get(field) if field else None
        return str(value).strip() if value else source.display_name

    def front_matter(self, answer: Mapping[str, Any], meta: LessonMeta) -> dict[str, Any]:
        return {
            "title": self.title(answer, meta.source),
            "source": meta.source.identity
            if meta.source.is_youtube
            else printable(str(meta.source.path)),
            "duration": mmss(meta.duration_s) if meta.duration_s is not None else None,
            "duration_seconds": meta.duration_s,
            "template": self.template.name,
            "template_version": self.template.version,
            "parameters": dict(meta.parameters),
            "model": meta.model,
            "created": meta.created.isoformat(timespec="seconds"),
            "tokens": meta.usage.as_dict(),
            "simulated": meta.simulated,
        }

    def render(self, answer: Mapping[str, Any], meta: LessonMeta, lesson_path: Path) -> str:
        def ts(seconds: int) -> str:
            return f"[{mmss(seconds)}]({timestamp_target(meta.source, lesson_path, seconds)})"

        front = self.front_matter(answer, meta)
        body = self.body(answer, meta, lesson_path, ts)
        header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000)
        return f"---\n{header}---\n\n{body}\n"

    def body(
        self,
        answer: Mapping[str, Any],
        meta: LessonMeta,
        lesson_path: Path,
        link: Callable[[int], str],
    ) -> str:
        """The template's layout (Markdown); ``link(seconds)`` writes each timestamp."""
        front = self.front_matter(answer, meta)

        def ts(seconds: Any) -> str:
            return link(max(0, int(seconds)))

        source_link = (
            f"[{meta.source.identity}]({meta.source.identity})"
            if meta.source.is_youtube
            else f"[{meta.source.display_name}]({timestamp_target(meta.source, lesson_path, 0)})"
        )
        context = {
            "answer": answer,
            "meta": {**front, "source_link": source_link, "duration": front["duration"] or "?"},
        }
        return self.template.render_layout(context, {"ts": ts, "mmss": mmss}).strip()
