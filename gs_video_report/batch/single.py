"""The legacy ``main`` command's job: one video to one lesson."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

from gs_video_report.batch.pipeline import (
    PreparedVideo,
    Sleep,
    StageCallback,
    VideoPipeline,
    prepare,
)
from gs_video_report.config import ApiKey, Settings
from gs_video_report.models import CallRecord, LessonResult
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini import GeminiService
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.services.writer import FileWriter


def writer_for(settings: Settings) -> FileWriter:
    return FileWriter(settings.output.dir, template_subfolders=settings.output.template_subfolders)


def prepare_single(
    video: str, *, settings: Settings, template: str | None, params: Mapping[str, str]
) -> PreparedVideo:
    """Every local check for one video; raises before anything is spent."""
    registry = TemplateRegistry.with_builtins(settings.templates.dirs)
    chosen = registry.get(template or settings.templates.default)
    return prepare(
        video, template=chosen, params=params, settings=settings, writer=writer_for(settings)
    )


async def run_single(
    prepared: PreparedVideo,
    *,
    settings: Settings,
    key: ApiKey,
    simulated: bool = False,
    on_stage: StageCallback | None = None,
    sleep: Sleep = asyncio.sleep,
) -> LessonResult:
    calls: list[CallRecord] = []
    async with GeminiService(key, settings.api, on_call=calls.append, sleep=sleep) as service:
        pipeline = VideoPipeline(
            service,
            settings,
            model=settings.model,
            retry=RetryPolicy(max_retries=settings.api.max_retries),
            simulated=simulated,
            sleep=sleep,
            on_stage=on_stage,
        )
        return await pipeline.run(prepared, calls)
