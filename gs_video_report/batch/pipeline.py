"""One video, start to finish: check everything locally, then upload, wait for ACTIVE,
generate, delete the upload, and write the lesson atomically.

``prepare`` does every check that costs nothing (source, probe, template, parameters,
prompt rendering, output path) so bad input never reaches the API. ``VideoPipeline``
exposes its stages separately so the batch engine can checkpoint between them.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gs_video_report.batch.adapt import Adjustments
from gs_video_report.batch.decide import Adapt, Situation, decide
from gs_video_report.batch.parts import Part as Part
from gs_video_report.batch.parts import (
    StoredParts,
    input_limit,
    merge,
    part_instruction,
    spans,
)
from gs_video_report.clock import Clock
from gs_video_report.config import Settings
from gs_video_report.errors import AnswerError, ApiError
from gs_video_report.models import (
    CallRecord,
    Generation,
    GenerationSettings,
    LessonFiles,
    LessonFormat,
    Usage,
    VideoInfo,
    VideoSource,
    mmss,
)
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.formatter import LessonFormatter, LessonMeta, relative_video
from gs_video_report.services.outputs import RenderedLesson, render_lesson
from gs_video_report.services.probe import probe_video
from gs_video_report.services.sources import parse_source
from gs_video_report.services.templates import LessonTemplate, TemplateRegistry
from gs_video_report.services.writer import FileWriter, atomic_write_text, write_answer
from gs_video_report.storage.checkpoint import TaskRow

if TYPE_CHECKING:
    # only named here: planning (and so the CLI) loads without google-genai
    from gs_video_report.services.gemini import GeminiService, VideoRef

logger = logging.getLogger(__name__)

# awaited before each generate call: (share of the video, its settings, adapted?)
BeforeCall = Callable[[float, GenerationSettings, bool], Awaitable[None]]
_NO_RETRY = RetryPolicy(max_retries=0)  # an answer is adapted here, never just repeated


@dataclass(frozen=True)
class PreparedVideo:
    """A video that passed every local check, with its prompt and output paths fixed."""

    source: VideoSource
    info: VideoInfo | None  # None for YouTube: nothing to probe locally
    template: LessonTemplate
    params: dict[str, str]
    prompt: str
    system_instruction: str | None
    files: LessonFiles

    @property
    def duration_s(self) -> float | None:
        return self.info.duration_s if self.info else None


def prompt_builtins(source: VideoSource, info: VideoInfo | None, today: datetime) -> dict[str, Any]:
    return {
        "video_title": source.display_name,
        "video_duration": mmss(info.duration_s) if info else "unknown",
        "video_duration_seconds": round(info.duration_s) if info else None,
        "source_kind": source.kind.value,
        "current_date": today.date().isoformat(),
    }


def prepare(
    video: str | VideoSource,
    *,
    template: LessonTemplate,
    params: Mapping[str, str],
    settings: Settings,
    writer: FileWriter,
    subdir: Path | None = None,
    output_stem: str | None = None,
    taken: Collection[Path] = (),
    now: datetime | None = None,
    info: VideoInfo | None = None,
    render: bool = True,
) -> PreparedVideo:
    """Raise ``InputError``/``TemplateError`` for anything wrong, before any API call.
    ``info``: the probe's answer when the caller already has it (the probe cache).
    ``render=False``: a video the plan skips as done before — nothing will be asked, so
    no prompt is rendered (a rerun of 5,000 done videos spent a quarter of its time on
    prompts it threw away); its prompt is empty."""
    source = parse_source(video) if isinstance(video, str) else video
    resolved = template.resolve_parameters(params)
    if source.path is not None and info is None:
        info = probe_video(source.path, max_bytes=settings.video.max_file_size_mb * 1024 * 1024)
    prompt, system = "", None
    if render:
        builtins = prompt_builtins(source, info, now or datetime.now(UTC))
        prompt = template.render_prompt(resolved, builtins)
        system = template.render_system_instruction(resolved, builtins)
    files = writer.plan(source, template.name, subdir=subdir, stem=output_stem, taken=taken)
    return PreparedVideo(source, info, template, resolved, prompt, system, files)


def rebuild(task: TaskRow, registry: TemplateRegistry, now: datetime) -> PreparedVideo:
    """Everything the stages need, from the task's row alone (a new process may run it)."""
    source = parse_source(task.source)
    template = registry.get(task.template)
    info = None
    if source.path is not None:
        info = VideoInfo(task.duration_s or 0.0, task.size_bytes or 0, task.mime_type or "")
    builtins = prompt_builtins(source, info, now)
    params = task.params
    return PreparedVideo(
        source=source,
        info=info,
        template=template,
        params=params,
        prompt=template.render_prompt(params, builtins),
        system_instruction=template.render_system_instruction(params, builtins),
        files=LessonFiles(Path(task.output_md), Path(task.output_json)),
    )


class VideoPipeline:
    """The generate and write stages of one video over a ``GeminiService``. It never
    retries: a failure leaves as our error class and ``decide`` says what it means;
    only an answer that ``decide`` can fix (``Adapt``) is asked for again here."""

    def __init__(
        self,
        service: GeminiService,
        settings: Settings,
        *,
        model: str,
        clock: Clock,
        simulated: bool = False,
    ) -> None:
        self.service = service
        self.settings = settings
        self.model = model
        self.clock = clock
        self.simulated = simulated

    async def generate(
        self,
        video: PreparedVideo,
        ref: VideoRef,
        *,
        timeout_s: float | None = None,
        adjustments: Adjustments | None = None,
        on_adjust: Callable[[Adjustments], Awaitable[None]] | None = None,
        before_call: BeforeCall | None = None,
        part: Part | None = None,
        parts: int = 1,
    ) -> Generation:
        """One answer. ``on_adjust`` stores an adaptation before the call it changes;
        ``before_call(share)`` is awaited before every call (``share``: of the video's
        input) to pace it and reserve its cost. ``part``: only that clip of the video."""
        current = adjustments or Adjustments()
        prompt, base = video.prompt, video.template.generation
        share = 1.0
        if part is not None:
            prompt = f"{prompt}\n\n{part_instruction(part.index, parts, part.start_s, part.end_s)}"
            base = replace(base, start_offset_s=part.start_s, end_offset_s=part.end_s)
            share = (part.end_s - part.start_s) / max(1.0, video.duration_s or 1.0)
        while True:
            if before_call is not None:
                await before_call(share, current.settings(base), bool(current.notes))
            try:
                generation = await self.service.generate(
                    model=self.model,
                    video=ref,
                    prompt=current.prompt(prompt),
                    system_instruction=video.system_instruction,
                    schema=video.template.schema,
                    settings=current.settings(base),
                    validate=video.template.validate_answer,
                    timeout_s=timeout_s or self.settings.api.request_timeout,
                )
                return replace(generation, notes=current.notes)
            except AnswerError as exc:
                situation = Situation(
                    self.clock.time(), 0, self.model, adjustments=current, base=base
                )
                outcome = decide(exc, situation, _NO_RETRY)
                if not isinstance(outcome, Adapt):
                    raise
                current = outcome.adjustments
                logger.warning("%s: %s", video.source.display_name, current.notes[-1])
                if on_adjust is not None:
                    await on_adjust(current)

    async def lesson(
        self,
        video: PreparedVideo,
        ref: VideoRef,
        *,
        store: StoredParts,
        note: Callable[[str], None],
        **options: Any,
    ) -> Generation:
        """The video's answer: in one request, or in parts when the video is too long for
        the model or its answer is cut off even with the largest output budget. Parts in
        ``store`` that are done are not asked for again."""
        parts = await store.load()
        part_s = self.settings.video.part_minutes * 60
        limit = input_limit(self.model)
        if not parts:
            bounds = spans(video.duration_s, part_s, video.template.generation, limit)
            if bounds:
                parts = await store.plan(bounds)
                note(f"too long for one request: processing in {len(parts)} parts")
        if not parts:
            try:
                return await self.generate(video, ref, **options)
            except AnswerError as exc:
                bounds = spans(
                    video.duration_s,
                    min(part_s, (video.duration_s or 0) / 2),
                    video.template.generation,
                    limit,
                    at_least_two=True,
                )
                if exc.reason != "MAX_TOKENS" or not bounds:
                    raise
                parts = await store.plan(bounds)
                note(f"MAX_TOKENS with every adjustment: processing in {len(parts)} parts")
        done: list[Generation] = []
        for part in parts:
            if part.done:
                continue
            generation = await self.generate(video, ref, part=part, parts=len(parts), **options)
            parts[part.index] = await store.finish(part, generation.data, generation.usage)
            done.append(generation)
        merged = merge(video.template.schema, parts)
        problems = video.template.validate_answer(merged)
        if problems:
            raise AnswerError(
                f"the parts' answers do not merge into a valid lesson: {problems[0]}",
                reason="SCHEMA_MISMATCH",
            )
        usage = Usage()
        for part in parts:
            usage = usage + (part.usage or Usage())
        last = done[-1] if done else None
        return Generation(
            data=merged,
            usage=usage,
            finish_reason="STOP",
            model=last.model if last else self.model,
            model_version=last.model_version if last else None,
            latency_s=sum(g.latency_s for g in done),
            notes=tuple(n for g in done for n in g.notes),
        )

    async def delete_quietly(self, name: str) -> None:
        """Uploads expire in 48 h anyway; a failed delete must not fail the lesson."""
        try:
            await self.service.delete_file(name)
        except ApiError as exc:
            logger.info("could not delete %s (%s); it expires within 48 hours", name, exc)


@dataclass(frozen=True)
class LessonWriter:
    """Writes a video's lesson: the answer (the JSON sidecar) first, then the Markdown.
    The sidecar carries the work's done key, so a lesson on disk is recognised as done
    even by a run that lost its state database (``read_sidecar``)."""

    clock: Clock
    simulated: bool = False
    formats: tuple[LessonFormat, ...] = (LessonFormat.MD,)

    def _meta(self, video: PreparedVideo, generation: Generation) -> LessonMeta:
        return LessonMeta(
            source=video.source,
            duration_s=video.duration_s,
            template=video.template,
            model=generation.model,
            created=datetime.fromtimestamp(self.clock.time(), UTC),
            usage=generation.usage,
            simulated=self.simulated,
            parameters=video.params,
        )

    def answer(
        self, video: PreparedVideo, generation: Generation, calls: list[CallRecord], done_key: str
    ) -> None:
        """The paid answer on disk, before anything else is recorded about it."""
        formatter = LessonFormatter(video.template)
        document = {
            "source": video.source.identity,
            # the video from the sidecar's folder: found again after both were moved
            "video": relative_video(video.source, video.files.answer_json),
            "done_key": done_key,
            "meta": formatter.front_matter(generation.data, self._meta(video, generation)),
            "finish_reason": generation.finish_reason,
            "model_version": generation.model_version,
            "prompt_evolution": list(generation.notes),
            "calls": [_call_json(c) for c in calls],
            "answer": generation.data,
        }
        write_answer(video.files, document)

    def lesson(self, video: PreparedVideo, generation: Generation) -> None:
        """The lesson in every format, from what its sidecar holds (``render`` later
        writes the same bytes from the sidecar alone)."""
        meta = self._meta(video, generation)
        rendered = render_lesson(generation.data, meta, video.files, self.formats)
        for note in rendered.notes:
            logger.info("%s: %s", video.source.display_name, note)
        write_rendered(rendered)


def write_rendered(rendered: RenderedLesson) -> None:
    for file in rendered.files:
        atomic_write_text(file.path, file.text)


def read_sidecar(path: Path) -> dict[str, Any] | None:
    """A lesson's JSON sidecar, or None when there is none (or it is unreadable)."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(document, dict) or not isinstance(document.get("answer"), dict):
        return None
    return document


def _call_json(call: CallRecord) -> dict[str, Any]:
    return {
        "stage": call.stage,
        "model": call.model,
        "latency_s": round(call.latency_s, 3),
        "ok": call.ok,
        "tokens": call.usage.as_dict() if call.usage else None,
        "finish_reason": call.finish_reason,
        "error": call.error_kind,
    }
