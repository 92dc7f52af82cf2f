"""Explicit context caches (``cachedContents``) of an uploaded video, for the templates
that share it: create, look up, delete. Mixed into ``GeminiService`` (it has the client,
the deadlines and the call log); kept apart so the service stays readable.

The cache holds the video part alone. A request using it may not set a system
instruction (the API answers 400), so the caller moves the instruction into its prompt.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from google.genai import types

from gs_video_report.models import CallRecord, Usage

if TYPE_CHECKING:
    from google import genai

    from gs_video_report.services.gemini.service import VideoRef


@dataclass(frozen=True)
class CachedVideo:
    name: str  # cachedContents/<id>
    tokens: int  # what the cache holds (billed as input once, then at the cached rate)
    expires_at: datetime | None


def _cached(cache: types.CachedContent) -> CachedVideo:
    meta = cache.usage_metadata
    return CachedVideo(
        cache.name or "", (meta.total_token_count or 0) if meta else 0, cache.expire_time
    )


class CacheCalls:
    """The cache half of ``GeminiService``."""

    if TYPE_CHECKING:  # provided by GeminiService
        _client: genai.Client
        _clock: Callable[[], float]

        def _call_options(self, timeout_s: float) -> types.HttpOptions: ...

        @property
        def _short_timeout(self) -> float: ...

        def _call(
            self,
            stage: str,
            *,
            timeout_s: float,
            model: str | None = None,
            touches_file: bool = False,
            record_success: bool = True,
        ) -> AbstractAsyncContextManager[None]: ...

        def _record(self, record: CallRecord) -> None: ...

    async def create_cache(
        self, *, model: str, video: VideoRef, fps: float | None, ttl_s: float, display_name: str
    ) -> CachedVideo:
        """One cache of the video for ``ttl_s``; its call is recorded with the tokens it
        holds as input (writing a cache is billed)."""
        timeout = self._short_timeout
        part = types.Part(file_data=types.FileData(file_uri=video.uri, mime_type=video.mime_type))
        if fps is not None:
            part.video_metadata = types.VideoMetadata(fps=fps)
        config = types.CreateCachedContentConfig(
            contents=[types.Content(role="user", parts=[part])],
            ttl=f"{ttl_s:.0f}s",
            display_name=display_name[:120],
            http_options=self._call_options(timeout),
        )
        started = self._clock()
        async with self._call(
            "cache", timeout_s=timeout, model=model, touches_file=True, record_success=False
        ):
            created = await self._client.aio.caches.create(model=model, config=config)
        cache = _cached(created)
        usage = Usage(prompt_tokens=cache.tokens, total_tokens=cache.tokens)
        self._record(CallRecord("cache", model, self._clock() - started, True, usage))
        return cache

    async def get_cache(self, name: str) -> CachedVideo:
        timeout = self._short_timeout
        async with self._call("cache_get", timeout_s=timeout, touches_file=True):
            found = await self._client.aio.caches.get(
                name=name,
                config=types.GetCachedContentConfig(http_options=self._call_options(timeout)),
            )
        return _cached(found)

    async def delete_cache(self, name: str) -> None:
        timeout = self._short_timeout
        async with self._call("cache_delete", timeout_s=timeout, touches_file=True):
            await self._client.aio.caches.delete(
                name=name,
                config=types.DeleteCachedContentConfig(http_options=self._call_options(timeout)),
            )
