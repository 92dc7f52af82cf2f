"""One video, start to finish: check everything locally, then upload, wait for ACTIVE,
generate, delete the upload, and write the lesson atomically.

``prepare`` does every check that costs nothing (source, probe, template, parameters,
prompt rendering, output path) so bad input never reaches the API. ``VideoPipeline``
exposes its stages separately so the batch engine can checkpoint between them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Collection, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

from gs_video_report.batch.adapt import Adjustments, adapt
from gs_video_report.batch.parts import (
    Part,
    PartStore,
    input_limit,
    merge,
    part_instruction,
    spans,
)
from gs_video_report.config import Settings
from gs_video_report.errors import AnswerError, ApiError, ApiTimeoutError, FileAccessError
from gs_video_report.models import (
    CallRecord,
    Generation,
    LessonFiles,
    LessonResult,
    UploadedFile,
    Usage,
    VideoInfo,
    VideoSource,
)
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.formatter import LessonFormatter, LessonMeta, mmss
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.probe import probe_video
from gs_video_report.services.sources import parse_source, printable
from gs_video_report.services.templates import LessonTemplate
from gs_video_report.services.writer import FileWriter, write_lesson

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
StageCallback = Callable[[str, float | None], None]  # stage name, fraction done (or None)
Pace = Callable[[float], Awaitable[None]]  # awaited before each generate call

_MAX_TIMEOUT_GROWTH = 3.0


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
) -> PreparedVideo:
    """Raise ``InputError``/``TemplateError`` for anything wrong, before any API call."""
    source = parse_source(video) if isinstance(video, str) else video
    resolved = template.resolve_parameters(params)
    info = None
    if source.path is not None:
        info = probe_video(source.path, max_bytes=settings.video.max_file_size_mb * 1024 * 1024)
    builtins = prompt_builtins(source, info, now or datetime.now(UTC))
    prompt = template.render_prompt(resolved, builtins)
    system = template.render_system_instruction(resolved, builtins)
    files = writer.plan(source, template.name, subdir=subdir, stem=output_stem, taken=taken)
    return PreparedVideo(source, info, template, resolved, prompt, system, files)


class VideoPipeline:
    """Stages for one video over a ``GeminiService``; retries follow ``RetryPolicy``."""

    def __init__(
        self,
        service: GeminiService,
        settings: Settings,
        *,
        model: str,
        retry: RetryPolicy,
        simulated: bool = False,
        sleep: Sleep = asyncio.sleep,
        on_stage: StageCallback | None = None,
    ) -> None:
        self.service = service
        self.settings = settings
        self.model = model
        self.retry = retry
        self.simulated = simulated
        self._sleep = sleep
        self._on_stage = on_stage or (lambda stage, fraction: None)

    async def _with_retries(self, what: str, call: Callable[[int], Awaitable[T]]) -> T:
        """Run ``call(attempt)`` until it succeeds or the policy gives up."""
        attempt = 0
        while True:
            try:
                return await call(attempt)
            except ApiError as exc:
                if isinstance(exc, FileAccessError):
                    raise  # the same call on the same file cannot succeed: upload again
                attempt += 1
                delay = self.retry.delay(exc, attempt)
                if delay is None:
                    raise
                logger.warning(
                    "%s failed (%s); retry %d/%d in %.1fs",
                    what,
                    exc,
                    attempt,
                    self.retry.max_retries,
                    delay,
                )
                self._on_stage(f"waiting {delay:.0f}s to retry {what}", None)
                await self._sleep(delay)

    async def upload(self, video: PreparedVideo) -> UploadedFile:
        """Upload and wait until ACTIVE (a whole new upload on each retry)."""
        assert video.source.path is not None and video.info is not None
        path, info = video.source.path, video.info

        async def once(attempt: int) -> UploadedFile:
            self._on_stage("uploading", 0.0)
            uploaded = await self.service.upload(
                path,
                info.mime_type,
                display_name=printable(path.name),
                progress=lambda done, total: self._on_stage("uploading", done / max(1, total)),
            )
            self._on_stage("processing", None)
            try:
                return await self.service.wait_until_active(uploaded, size_bytes=info.size_bytes)
            except ApiError:
                await self.delete_quietly(uploaded.name)
                raise

        return await self._with_retries("upload", once)

    async def generate(
        self,
        video: PreparedVideo,
        ref: VideoRef,
        *,
        timeout_s: float | None = None,
        adjustments: Adjustments | None = None,
        on_adjust: Callable[[Adjustments], Awaitable[None]] | None = None,
        pace: Pace | None = None,
        part: Part | None = None,
        parts: int = 1,
    ) -> Generation:
        """``timeout_s`` overrides the configured request timeout for the first try. An
        answer that fails in a fixable way is asked for again with ``adapt``'s adjustments;
        ``on_adjust`` stores them before that call. ``pace(share)`` is awaited before every
        call (``share``: of the video's input). ``part``: only that clip of the video."""
        base_timeout = timeout_s or self.settings.api.request_timeout
        timeouts = 0
        current = adjustments or Adjustments()
        prompt, base = video.prompt, video.template.generation
        share = 1.0
        if part is not None:
            prompt = f"{prompt}\n\n{part_instruction(part.index, parts, part.start_s, part.end_s)}"
            base = replace(base, start_offset_s=part.start_s, end_offset_s=part.end_s)
            share = (part.end_s - part.start_s) / max(1.0, video.duration_s or 1.0)

        async def once(attempt: int) -> Generation:
            nonlocal timeouts
            if pace is not None:
                await pace(share)
            self._on_stage("generating", None)
            timeout = base_timeout * min(_MAX_TIMEOUT_GROWTH, 1.5**timeouts)
            try:
                return await self.service.generate(
                    model=self.model,
                    video=ref,
                    prompt=current.prompt(prompt),
                    system_instruction=video.system_instruction,
                    schema=video.template.schema,
                    settings=current.settings(base),
                    validate=video.template.validate_answer,
                    timeout_s=timeout,
                )
            except ApiTimeoutError:
                timeouts += 1  # a longer timeout next time: the video may just be long
                raise

        while True:
            try:
                generation = await self._with_retries("generate", once)
                return replace(generation, notes=current.notes)
            except AnswerError as exc:
                changed = adapt(exc, current, base)
                if changed is None:
                    raise
                current = changed
                logger.warning("%s: %s", video.source.display_name, current.notes[-1])
                if on_adjust is not None:
                    await on_adjust(current)

    async def lesson(
        self,
        video: PreparedVideo,
        ref: VideoRef,
        *,
        store: PartStore | None = None,
        note: Callable[[str], None] | None = None,
        **options: Any,
    ) -> Generation:
        """The video's answer: in one request, or in parts when the video is too long for
        the model or its answer is cut off even with the largest output budget. Parts in
        ``store`` that are done are not asked for again."""
        store = store or PartStore()
        say = note or (lambda text: logger.warning("%s: %s", video.source.display_name, text))
        parts = await store.load()
        part_s = self.settings.video.part_minutes * 60
        limit = input_limit(self.model)
        if not parts:
            bounds = spans(video.duration_s, part_s, video.template.generation, limit)
            if bounds:
                parts = await store.plan(bounds)
                say(f"too long for one request: processing in {len(parts)} parts")
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
                say(f"MAX_TOKENS with every adjustment: processing in {len(parts)} parts")
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

    def write(self, video: PreparedVideo, generation: Generation, calls: list[CallRecord]) -> None:
        self._on_stage("writing", None)
        formatter = LessonFormatter(video.template)
        meta = LessonMeta(
            source=video.source,
            duration_s=video.duration_s,
            template=video.template,
            model=generation.model,
            created=datetime.now(UTC),
            usage=generation.usage,
            simulated=self.simulated,
            parameters=video.params,
        )
        markdown = formatter.render(generation.data, meta, video.files.markdown)
        document = {
            "source": video.source.identity,
            "meta": formatter.front_matter(generation.data, meta),
            "finish_reason": generation.finish_reason,
            "model_version": generation.model_version,
            "prompt_evolution": list(generation.notes),
            "calls": [_call_json(c) for c in calls],
            "answer": generation.data,
        }
        write_lesson(video.files, markdown, document)

    async def run(self, video: PreparedVideo, calls: list[CallRecord]) -> LessonResult:
        """All stages. A 403 on the uploaded file (expired, another project's) re-uploads once."""
        started = time.monotonic()
        if video.source.is_youtube:
            ref = VideoRef(uri=video.source.identity, mime_type=None)
            generation = await self.lesson(video, ref)
        else:
            generation = await self._generate_from_upload(video)
        self.write(video, generation, calls)
        logger.info("%s done in %.1fs", video.source.display_name, time.monotonic() - started)
        return LessonResult(video.source, video.files, generation, tuple(calls))

    async def _generate_from_upload(self, video: PreparedVideo) -> Generation:
        for reupload in (False, True):
            uploaded = await self.upload(video)
            try:
                ref = VideoRef(uploaded.uri, uploaded.mime_type, uploaded.name)
                return await self.lesson(video, ref)
            except FileAccessError:
                if reupload:
                    raise
                logger.warning(
                    "uploaded file %s is no longer accessible; uploading again", uploaded.name
                )
            finally:
                await self.delete_quietly(uploaded.name)
        raise AssertionError("unreachable")


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
