"""GeminiService: the only code that talks to Gemini (google-genai, async client).

It uploads (streamed, 8 MiB chunks by the SDK), waits for ACTIVE, generates a JSON
answer against the template's schema, and deletes. It never retries: every failure
leaves here as one of our ``ApiError`` classes and the caller decides. The SDK's
own HTTP retries stay off (its default) so attempts are never multiplied.

Two SDK surprises handled here:
- the upload URL the server hands back is used as-is by the SDK, even when the
  client has a ``base_url``; a *per-call* ``base_url`` rewrites its host, so uploads
  pass it explicitly and really reach the configured endpoint;
- with aiohttp installed the SDK's async path re-sends a request once, 1-10 s after a
  connection error, which can bill a generation twice; the client is built by
  ``client.build_client``, which pins the httpx2 transport (no hidden re-send).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from google.genai import types

from gs_video_report.config import ApiKey, ApiSettings
from gs_video_report.errors import (
    AnswerError,
    ApiError,
    ApiTimeoutError,
    FileProcessingError,
    InputError,
    NetworkError,
)
from gs_video_report.models import (
    CallRecord,
    Generation,
    GenerationSettings,
    UploadedFile,
)
from gs_video_report.services.gemini.answer import Validator, enum_name, read_answer, usage_of
from gs_video_report.services.gemini.caches import CacheCalls
from gs_video_report.services.gemini.client import build_client, ms
from gs_video_report.services.gemini.errors import translate
from gs_video_report.services.gemini.files import VideoReader, uploaded

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int], None]
Sleep = Callable[[float], Awaitable[None]]

_SHORT_CALL_TIMEOUT_S = 60.0  # polls, deletes, lists: capped by api.request_timeout too
_PROBE_TIMEOUT_S = 10.0  # a one-file list that takes longer: the network is not back
# Short first: a small video is often ACTIVE within a fraction of a second, and the first
# generate call of a batch waits for it; then backing off to 10 s, so a long processing
# (minutes for an hour of video) costs about the same handful of polls a minute as before.
_POLL_DELAYS_S = (0.1, 0.2, 0.4, 0.8, 1.5, 3.0, 5.0, 8.0, 10.0)
_CHUNK_BYTES = 8 * 1024 * 1024  # the SDK uploads in chunks of this size
_RESOLUTIONS = {
    "low": types.MediaResolution.MEDIA_RESOLUTION_LOW,
    "medium": types.MediaResolution.MEDIA_RESOLUTION_MEDIUM,
    "high": types.MediaResolution.MEDIA_RESOLUTION_HIGH,
}


@dataclass(frozen=True)
class VideoRef:
    """What a generate call points at: an uploaded file's URI or a YouTube URL."""

    uri: str
    mime_type: str | None
    file_name: str | None = None  # files/<id> when uploaded
    cache: str | None = None  # cachedContents/<id>: the video is in this context cache


class GeminiService(CacheCalls):
    """One client for the service's lifetime (a dropped ``genai.Client`` closes itself)."""

    def __init__(
        self,
        key: ApiKey,
        api: ApiSettings,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        on_call: Callable[[CallRecord], None] | None = None,
    ) -> None:
        self.key_fingerprint = key.fingerprint
        self._gate: Callable[[], Awaitable[None]] | None = None  # see ``gated``
        self._tier: str | None = None  # see ``tiered``
        self._secret = key.reveal()
        self._api = api
        self._sleep = sleep
        self._clock = clock
        self._on_call = on_call
        self._client = build_client(key, api)

    def recording(self, on_call: Callable[[CallRecord], None]) -> GeminiService:
        """The same client, reporting its calls to ``on_call`` (one task's log) instead.
        The copy shares the connection pool; only the original is closed."""
        view = copy.copy(self)
        view._on_call = on_call
        return view

    def gated(self, gate: Callable[[], Awaitable[None]]) -> GeminiService:
        """The same client, awaiting ``gate`` before every call (the batch's
        ``Network.ready``: no call starts while the network is down). What the gate raises
        leaves the call unmade and unrecorded. The probe (``reachable``) is never gated."""
        view = copy.copy(self)
        view._gate = gate
        return view

    def tiered(self, tier: str | None) -> GeminiService:
        """The same client, asking for ``tier`` (``"flex"``: half price, best effort) on
        every generate call."""
        view = copy.copy(self)
        view._tier = tier
        return view

    async def __aenter__(self) -> GeminiService:
        return self

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._client.aio.aclose()
        self._client.close()

    @property
    def _short_timeout(self) -> float:
        return min(_SHORT_CALL_TIMEOUT_S, self._api.request_timeout)

    def _call_options(self, timeout_s: float) -> types.HttpOptions:
        """Per-call options. The base_url is repeated here because only a per-call
        base_url rewrites the host of the upload URL the server hands back."""
        return types.HttpOptions(timeout=ms(timeout_s), base_url=self._api.base_url or None)

    @asynccontextmanager
    async def _call(
        self,
        stage: str,
        *,
        timeout_s: float,
        model: str | None = None,
        touches_file: bool = False,
        record_success: bool = True,
    ) -> AsyncIterator[None]:
        """Time the call, hold it to ``timeout_s`` overall, translate its failure, and
        report it to ``on_call``. The SDK's timeout is httpx's, which is per read: a server
        that trickles its answer would hold the call forever without this deadline."""
        if self._gate is not None:
            await self._gate()  # before the clock starts: waiting offline is not the call's time
        started = self._clock()
        deadline = asyncio.timeout(timeout_s)
        try:
            async with deadline:
                yield
        except BaseException as exc:
            mapped: ApiError | None
            if deadline.expired() and isinstance(exc, TimeoutError):
                mapped = ApiTimeoutError(f"{stage}: no complete answer within {timeout_s:g}s")
            else:
                mapped = translate(exc, stage=stage, touches_file=touches_file, secret=self._secret)
            if mapped is None:
                raise
            self._record(
                CallRecord(
                    stage,
                    model,
                    self._clock() - started,
                    False,
                    error_kind=mapped.kind,
                    error_message=mapped.message,
                )
            )
            if mapped is exc:
                raise
            raise mapped from exc
        if record_success:
            self._record(CallRecord(stage, model, self._clock() - started, True))

    def _record(self, record: CallRecord) -> None:
        level = logging.DEBUG if record.ok else logging.INFO
        logger.log(
            level,
            "%s %s in %.2fs%s",
            record.stage,
            "ok" if record.ok else "failed",
            record.latency_s,
            f": {record.error_message}" if record.error_message else "",
        )
        if self._on_call is not None:
            self._on_call(record)

    async def upload(
        self,
        path: Path,
        mime_type: str,
        *,
        display_name: str,
        progress: ProgressCallback | None = None,
    ) -> UploadedFile:
        try:
            # The SDK reads an IOBase synchronously in 8 MiB chunks anyway; opening is instant.
            raw = open(path, "rb")  # noqa: ASYNC230, SIM115 - closed by the with below
        except OSError as exc:
            # gone or locked since the caller looked: the video's problem, not the API's
            raise InputError(f"cannot open the video: {path} ({exc.strerror or exc})") from exc
        with raw:
            size = os.fstat(raw.fileno()).st_size  # what this handle reads, not the path's
            config = types.UploadFileConfig(
                display_name=display_name[:500],
                mime_type=mime_type,
                http_options=self._call_options(self._api.upload_timeout),
            )
            # upload_timeout is per request: the start, then each 8 MiB chunk
            requests = 1 + max(1, -(-size // _CHUNK_BYTES))
            async with self._call("upload", timeout_s=self._api.upload_timeout * requests):
                source = VideoReader(raw, path, size, progress)
                file = await self._client.aio.files.upload(file=source, config=config)
        return uploaded(file)

    async def get_file(self, name: str) -> UploadedFile:
        timeout = self._short_timeout
        async with self._call("poll", timeout_s=timeout, touches_file=True):
            file = await self._client.aio.files.get(
                name=name, config=types.GetFileConfig(http_options=self._call_options(timeout))
            )
        return uploaded(file)

    def processing_deadline_s(self, size_bytes: int) -> float:
        return self._api.processing_timeout + self._api.processing_timeout_per_gb * size_bytes / 1e9

    async def wait_until_active(self, file: UploadedFile, *, size_bytes: int) -> UploadedFile:
        """Poll with growing pauses until ACTIVE; FAILED and the deadline are errors."""
        deadline = self._clock() + self.processing_deadline_s(size_bytes)
        attempt = 0
        while True:
            if file.state == "ACTIVE":
                return file
            if file.state == "FAILED":
                reason = file.error or "no reason given"
                raise FileProcessingError(f"Gemini could not process the video: {reason}")
            if self._clock() >= deadline:
                raise ApiTimeoutError(
                    f"uploaded file {file.name} was still {file.state} after "
                    f"{self.processing_deadline_s(size_bytes):.0f}s"
                )
            await self._sleep(_POLL_DELAYS_S[min(attempt, len(_POLL_DELAYS_S) - 1)])
            attempt += 1
            file = await self.get_file(file.name)

    async def delete_file(self, name: str) -> None:
        timeout = self._short_timeout
        async with self._call("delete", timeout_s=timeout, touches_file=True):
            await self._client.aio.files.delete(
                name=name, config=types.DeleteFileConfig(http_options=self._call_options(timeout))
            )

    async def list_files(self) -> list[UploadedFile]:
        timeout = self._short_timeout
        # one deadline for every page: listings are short (files live 48 h)
        async with self._call("list", timeout_s=timeout):
            pager = await self._client.aio.files.list(
                config=types.ListFilesConfig(
                    page_size=100, http_options=self._call_options(timeout)
                )
            )
            files = [uploaded(f) async for f in pager]
        return files

    async def reachable(self, timeout_s: float = _PROBE_TIMEOUT_S) -> bool:
        """Whether the endpoint answers at all: one cheap call (a one-file list), past the
        gate and unrecorded. Any HTTP answer, an error status too, means the network
        works; a failed connection, or no answer within ``timeout_s``, means it does not."""
        timeout_s = min(timeout_s, self._short_timeout)
        try:
            async with asyncio.timeout(timeout_s):
                config = types.ListFilesConfig(
                    page_size=1, http_options=self._call_options(timeout_s)
                )
                await self._client.aio.files.list(config=config)
        except Exception as exc:
            error = translate(exc, stage="probe", secret=self._secret)
            if error is None:
                # not the network's doing: let the real calls meet it and be judged there
                logger.warning("probe: unexpected %s", type(exc).__name__)
                return True
            logger.debug("probe failed: %s", error.message)
            return not isinstance(error, NetworkError | ApiTimeoutError)
        return True

    def _request(
        self,
        video: VideoRef,
        settings: GenerationSettings,
        schema: dict[str, Any],
        system_instruction: str | None,
        timeout: float,
    ) -> tuple[types.Part, types.GenerateContentConfig]:
        """The video part (with its clip, if any) and the JSON-mode config of a generate."""
        part = types.Part(file_data=types.FileData(file_uri=video.uri, mime_type=video.mime_type))
        clip: dict[str, Any] = {}
        if settings.fps is not None:
            clip["fps"] = settings.fps
        if settings.start_offset_s is not None:
            clip["start_offset"] = f"{settings.start_offset_s:g}s"
        if settings.end_offset_s is not None:
            clip["end_offset"] = f"{settings.end_offset_s:g}s"
        if clip:
            part.video_metadata = types.VideoMetadata(**clip)
        config = types.GenerateContentConfig(
            system_instruction=system_instruction,
            temperature=settings.temperature,
            max_output_tokens=settings.max_output_tokens,
            response_mime_type="application/json",
            response_json_schema=schema,
            media_resolution=_RESOLUTIONS.get(settings.media_resolution or ""),
            thinking_config=(
                types.ThinkingConfig(
                    thinking_level=types.ThinkingLevel(settings.thinking_level.upper())
                )
                if settings.thinking_level
                else None
            ),
            service_tier=types.ServiceTier(self._tier) if self._tier else None,
            http_options=self._call_options(timeout),
        )
        return part, config

    async def generate(
        self,
        *,
        model: str,
        video: VideoRef,
        prompt: str,
        schema: dict[str, Any],
        settings: GenerationSettings,
        system_instruction: str | None = None,
        validate: Validator | None = None,
        timeout_s: float | None = None,
    ) -> Generation:
        """One generateContent call in JSON mode; anything short of a complete, valid
        answer is an ``AnswerError`` (never half a lesson). A video in a context cache
        (``video.cache``) is not sent again, and the system instruction goes at the head
        of the prompt: the API refuses a cached request that sets one."""
        timeout = timeout_s or self._api.request_timeout
        part, config = self._request(video, settings, schema, system_instruction, timeout)
        parts = [part, types.Part(text=prompt)]  # the video first: implicit caching helps
        if video.cache is not None:
            config.cached_content, config.system_instruction = video.cache, None
            text = f"{system_instruction}\n\n{prompt}" if system_instruction else prompt
            parts = [types.Part(text=text)]
        contents = [types.Content(role="user", parts=parts)]
        started = self._clock()
        touches_file = video.file_name is not None
        async with self._call(
            "generate",
            timeout_s=timeout,
            model=model,
            touches_file=touches_file,
            record_success=False,
        ):
            response = await self._client.aio.models.generate_content(
                model=model, contents=contents, config=config
            )
        latency = self._clock() - started
        usage = usage_of(response.usage_metadata)
        candidate = response.candidates[0] if response.candidates else None
        finish = (
            enum_name(candidate.finish_reason) if candidate and candidate.finish_reason else None
        )
        try:
            generation = read_answer(response, model=model, latency=latency, validate=validate)
        except AnswerError as exc:
            self._record(
                CallRecord("generate", model, latency, False, usage, finish, exc.kind, exc.message)
            )
            raise
        self._record(CallRecord("generate", model, latency, True, usage, finish))
        return generation


__all__ = ["ApiError", "GeminiService", "VideoRef"]
