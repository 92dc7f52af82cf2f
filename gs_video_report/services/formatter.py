"""LessonFormatter: a validated answer plus what we know of the video -> Markdown.

The Markdown is YAML front matter followed by the template's layout. Timestamps
become links: ``&t=Ns`` on the YouTube URL, or ``video.mp4#t=N`` relative to the
lesson file for local videos (media players and Obsidian understand both).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import yaml

from gs_video_report.models import Usage, VideoSource, mmss
from gs_video_report.services.sources import printable
from gs_video_report.services.templates import LessonTemplate


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


def timestamp_target(source: VideoSource, lesson_path: Path, seconds: int) -> str:
    if source.is_youtube:
        return f"{source.identity}&t={seconds}s"
    assert source.path is not None
    try:
        rel = os.path.relpath(source.path, lesson_path.parent)
    except ValueError:  # another drive on Windows: fall back to an absolute file URI
        return f"{source.path.as_uri()}#t={seconds}"
    # bytes: a name that is not valid UTF-8 is percent-encoded as it is on disk
    return f"{quote(os.fsencode(Path(rel).as_posix()), safe='/._-~')}#t={seconds}"


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
        front = self.front_matter(answer, meta)

        def ts(seconds: Any) -> str:
            sec = max(0, int(seconds))
            return f"[{mmss(sec)}]({timestamp_target(meta.source, lesson_path, sec)})"

        source_link = (
            f"[{meta.source.identity}]({meta.source.identity})"
            if meta.source.is_youtube
            else f"[{meta.source.display_name}]({timestamp_target(meta.source, lesson_path, 0)})"
        )
        context = {
            "answer": answer,
            "meta": {**front, "source_link": source_link, "duration": front["duration"] or "?"},
        }
        body = self.template.render_layout(context, {"ts": ts, "mmss": mmss})
        header = yaml.safe_dump(front, allow_unicode=True, sort_keys=False, width=1000)
        return f"---\n{header}---\n\n{body.strip()}\n"
