"""Gemini Batch Mode over one key's ``GeminiService``: the JSONL request lines, the
input file, jobs (create, get, find by display name, cancel, delete) and the results.

SDK traps handled here (google-genai 3.6):
- a JSONL line is the raw REST ``GenerateContentRequest``: generation settings nested in
  ``generationConfig``, the system instruction at the top. The line is built by the SDK's
  own converter for inline batch requests (``batches._InlinedRequest_to_mldev``, private:
  pinned by tests/test_batch_mode.py), so it is exactly what a live call sends;
- ``BatchJob.done`` ignores PARTIALLY_SUCCEEDED, and the Gemini API's ``BATCH_STATE_*``
  arrive as ``JOB_STATE_*``: states are read here into one plain word;
- creating a job is not idempotent: the engine commits the name this returns at once,
  and ``find`` looks a job up by its display name before another is created;
- results come in any order: they are returned by line key, never by position.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from google.genai import _common, types
from google.genai import batches as sdk_batches
from google.genai import errors as genai_errors

from gs_video_report.errors import AnswerError, ApiError
from gs_video_report.models import Generation, GenerationSettings, UploadedFile
from gs_video_report.services.gemini.answer import Validator, read_answer
from gs_video_report.services.gemini.errors import translate_api_error
from gs_video_report.services.gemini.service import GeminiService, VideoRef

TERMINAL = frozenset({"SUCCEEDED", "PARTIALLY_SUCCEEDED", "FAILED", "EXPIRED", "CANCELLED"})


@dataclass(frozen=True)
class JobInfo:
    name: str
    display_name: str
    state: str  # PENDING, RUNNING, SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, EXPIRED, ...
    results_file: str | None

    @property
    def ended(self) -> bool:
        return self.state in TERMINAL


def _state(value: Any) -> str:
    text = str(getattr(value, "value", value) or "UNSPECIFIED")
    return text.removeprefix("JOB_STATE_").removeprefix("BATCH_STATE_")


def _info(job: types.BatchJob) -> JobInfo:
    return JobInfo(
        name=job.name or "",
        display_name=job.display_name or "",
        state=_state(job.state),
        results_file=job.dest.file_name if job.dest else None,
    )


class BatchClient:
    """Batch Mode calls on ``service``'s client, timed, translated and recorded like its
    other calls (stages ``batch_upload``, ``batch_create``, ``batch_poll``, ...)."""

    def __init__(self, service: GeminiService) -> None:
        self.service = service
        self._client = service._client

    def request_line(
        self,
        key: str,
        *,
        video: VideoRef,
        prompt: str,
        schema: dict[str, Any],
        settings: GenerationSettings,
        system_instruction: str | None,
    ) -> dict[str, Any]:
        """One JSONL line: ``{"key": ..., "request": <REST GenerateContentRequest>}``."""
        part, config = self.service._request(video, settings, schema, system_instruction, 60.0)
        config.http_options = None
        inlined = types.InlinedRequest(
            contents=[types.Content(role="user", parts=[part, types.Part(text=prompt)])],
            config=config,
        )
        converted = sdk_batches._InlinedRequest_to_mldev(self._client._api_client, inlined)
        request = _common.convert_to_dict(converted)["request"]
        return {"key": key, "request": request}

    async def upload_lines(self, lines: list[dict[str, Any]], display_name: str) -> UploadedFile:
        """The JSONL input file, uploaded and ACTIVE (a job refuses it before)."""
        with tempfile.TemporaryDirectory(prefix="gsvr-batch-") as folder:
            path = Path(folder) / "requests.jsonl"
            data = "".join(json.dumps(line, ensure_ascii=False) + "\n" for line in lines)
            path.write_text(data, encoding="utf-8")
            file = await self.service.upload(path, "jsonl", display_name=display_name)
        return await self.service.wait_until_active(file, size_bytes=len(data.encode()))

    async def create(self, model: str, input_file: str, display_name: str) -> JobInfo:
        timeout = self.service._short_timeout
        async with self.service._call("batch_create", timeout_s=timeout, model=model):
            job = await self._client.aio.batches.create(
                model=model,
                src=input_file,
                config=types.CreateBatchJobConfig(
                    display_name=display_name,
                    http_options=self.service._call_options(timeout),
                ),
            )
        return _info(job)

    async def get(self, name: str) -> JobInfo:
        timeout = self.service._short_timeout
        async with self.service._call("batch_poll", timeout_s=timeout):
            job = await self._client.aio.batches.get(
                name=name,
                config=types.GetBatchJobConfig(http_options=self.service._call_options(timeout)),
            )
        return _info(job)

    async def find(self, display_name: str) -> JobInfo | None:
        """A job of ours that a crash may have left unrecorded, by its display name."""
        timeout = self.service._short_timeout
        async with self.service._call("batch_list", timeout_s=timeout):
            pager = await self._client.aio.batches.list(
                config=types.ListBatchJobsConfig(
                    page_size=100, http_options=self.service._call_options(timeout)
                )
            )
            found = [_info(job) async for job in pager if job.display_name == display_name]
        return found[0] if found else None

    async def cancel(self, name: str) -> None:
        timeout = self.service._short_timeout
        async with self.service._call("batch_cancel", timeout_s=timeout):
            await self._client.aio.batches.cancel(
                name=name,
                config=types.CancelBatchJobConfig(http_options=self.service._call_options(timeout)),
            )

    async def results(self, file_name: str) -> dict[str, dict[str, Any]]:
        """The results file, by line key (the order of lines means nothing)."""
        timeout = self.service._api.request_timeout
        async with self.service._call("batch_download", timeout_s=timeout):
            data = await self._client.aio.files.download(
                file=file_name,
                config=types.DownloadFileConfig(http_options=self.service._call_options(timeout)),
            )
        lines: dict[str, dict[str, Any]] = {}
        for raw in (data or b"").decode("utf-8", "replace").splitlines():
            try:
                line = json.loads(raw)
            except ValueError:
                continue  # a damaged line: its request is missing, and asked again
            if isinstance(line, dict) and isinstance(line.get("key"), str):
                lines[line["key"]] = line
        return lines


def read_line(
    line: Mapping[str, Any], *, model: str, validate: Validator | None
) -> Generation | ApiError | AnswerError:
    """One result line as a live call's outcome: the answer (validated as a live answer
    is), or the error a live call would have raised (``translate_api_error``)."""
    response = line.get("response")
    if not isinstance(response, dict):
        error = line.get("error") or line.get("status") or {}
        if not isinstance(error, dict):
            error = {"code": 500, "message": str(error), "status": "INTERNAL"}
        code = int(error.get("code") or 500)
        return translate_api_error(genai_errors.APIError(code, {"error": error}))
    try:
        parsed = types.GenerateContentResponse._from_response(response=response, kwargs={})
        return read_answer(parsed, model=model, latency=0.0, validate=validate)
    except AnswerError as exc:
        return exc
