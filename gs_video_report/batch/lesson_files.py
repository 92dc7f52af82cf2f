"""Lessons from their saved answers through the ``Engine``, with no API call: ``render``
(a folder or a batch, in any format), the notes said before a run about formats a
template cannot give, and a lesson's HTML page for the dashboard."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from gs_video_report.batch.engine_core import EngineCore
from gs_video_report.batch.stored import read_stored_run
from gs_video_report.batch.views import RenderResult
from gs_video_report.errors import InputError
from gs_video_report.models import LessonFormat, TaskStage, parse_formats
from gs_video_report.services.sources import printable

if TYPE_CHECKING:
    from gs_video_report.services.templates import LessonTemplate


class LessonOutputs(EngineCore):
    async def render(
        self,
        target: str | Path,
        *,
        formats: Sequence[LessonFormat] | None = None,
        output: Path | None = None,
    ) -> RenderResult:
        """Rebuild lessons from their JSON sidecars, with no API call: every lesson under
        a folder, or a batch's (by id) — in place, or at the same places under ``output``.
        ``formats``: default ``output.formats``. ``InputError`` for a folder that is not
        there or holds no lesson; ``UnknownBatchError`` for a batch id that is unknown."""
        from gs_video_report.batch.render import existing_folder, render_lessons

        wanted = parse_formats(list(formats or self.settings.output.formats))
        folder = await asyncio.to_thread(existing_folder, target)
        if folder is not None:
            return await asyncio.to_thread(
                render_lessons, folder, None, output, self.registry(), wanted
            )
        text = str(target)
        if not (text.startswith("batch_") and self.db_path.exists()):
            raise InputError(f"no such folder or batch: {printable(text)}")
        view = await self.status(text)  # UnknownBatchError
        stored = await read_stored_run(text, self.db_path.parent)
        done = [t for t in view.tasks if t.stage is TaskStage.DONE]
        sidecars = [Path(t.output).with_suffix(".json") for t in done]
        registry = self.registry(stored.template_files)
        return await asyncio.to_thread(
            render_lessons,
            Path(view.output_dir),
            sidecars,
            output,
            registry,
            wanted,
            len(view.tasks) - len(done),
        )

    def format_notes(
        self, templates: Iterable[str | LessonTemplate], formats: Sequence[LessonFormat]
    ) -> list[str]:
        """One line per template whose answers cannot give the subtitles asked for (said
        before a run: the lessons are then written without them)."""
        from gs_video_report.batch.planner import find_template
        from gs_video_report.services.outputs import untimed_note

        registry = self.registry()
        found = [t if not isinstance(t, str) else find_template(registry, t) for t in templates]
        unique = {t.name: t for t in found}
        notes = (untimed_note(unique[name], formats) for name in sorted(unique))
        return [note for note in notes if note]

    def lesson_page(self, lesson: Path, *, page_path: Path | None = None) -> str:
        """A lesson's HTML page (its ``.json`` sidecar or any of its files), rendered in
        memory with nothing written — what the dashboard serves. The video link is made
        relative to ``page_path`` (default: the ``.html`` beside the sidecar)."""
        from gs_video_report.batch.render import page_for

        return page_for(lesson.with_suffix(".json"), self.registry(), page_path)
