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
from gs_video_report.batch.retry import RetryPolicy
from gs_video_report.config import Settings
from gs_video_report.errors import AnswerError, ApiError, ApiTimeoutError, FileAccessError
from gs_video_report.models import (
    CallRecord,
    Generation,
    LessonFiles,
    LessonResult,
    UploadedFile,
    VideoInfo,
    VideoSource,
)
from gs_video_report.services.formatter import LessonFormatter, LessonMeta, mmss
from gs_video_report.services.gemini import GeminiService, VideoRef
from gs_video_report.services.probe import probe_video
from gs_video_report.services.sources import parse_source
from gs_video_report.services.templates import LessonTemplate
from gs_video_report.services.writer import FileWriter, write_lesson

logger = logging.getLogger(__name__)

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]
StageCallback = Callable[[str, float | None], None]  # stage name, fraction done (or None)

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
                display_name=path.name,
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
    ) -> Generation:
        """``timeout_s`` overrides the configured request timeout for the first try. An
        answer that fails in a fixable way is asked for again with ``adapt``'s adjustments;
        ``on_adjust`` stores them before that call."""
        base_timeout = timeout_s or self.settings.api.request_timeout
        timeouts = 0
        current = adjustments or Adjustments()

        async def once(attempt: int) -> Generation:
            nonlocal timeouts
            self._on_stage("generating", None)
            timeout = base_timeout * min(_MAX_TIMEOUT_GROWTH, 1.5**timeouts)
            try:
                return await self.service.generate(
                    model=self.model,
                    video=ref,
                    prompt=current.prompt(video.prompt),
                    system_instruction=video.system_instruction,
                    schema=video.template.schema,
                    settings=current.settings(video.template.generation),
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
                changed = adapt(exc, current, video.template.generation)
                if changed is None:
                    raise
                current = changed
                logger.warning("%s: %s", video.source.display_name, current.notes[-1])
                if on_adjust is not None:
                    await on_adjust(current)

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
            generation = await self.generate(video, ref)
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
                return await self.generate(video, ref)
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
