"""The HTTP face of the simulator: the slice of the Gemini REST API the tool uses,
spoken well enough that the real google-genai SDK cannot tell the difference.

Routes (``v1beta`` and ``v1`` both accepted):
  POST   /upload/{v}/files                     resumable upload: start
  POST   /_upload/{id}                         resumable upload: chunks, finalize
  GET    /{v}/files/{id}                       files.get (PROCESSING -> ACTIVE | FAILED)
  GET    /{v}/files                            files.list (paged)
  DELETE /{v}/files/{id}                       files.delete
  POST   /{v}/models/{model}:generateContent   JSON answer against the requested schema
  POST/GET/DELETE /{v}/cachedContents[/{id}]   context caches (``simulator/caches.py``)
  POST   /{v}/models/{model}:batchGenerateContent, /{v}/batches/...  Batch Mode (batches.py)
  GET    /_sim/stats   POST /_sim/faults   POST /_sim/limits   POST /_sim/reset   (control)
  POST   /_sim/network {"offline": true}      drop every API request until turned off
"""

from __future__ import annotations

import json
import re
import select
import socket
import struct
import time
from collections.abc import Callable
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs, urlparse

from gs_video_report.simulator.answers import fake_answer
from gs_video_report.simulator.batches import BATCH_HANDLERS, BATCH_ROUTES
from gs_video_report.simulator.caches import ROUTES as CACHE_ROUTES
from gs_video_report.simulator.caches import CacheRoutes
from gs_video_report.simulator.state import (
    FILE_TTL_S,
    Fault,
    SimFile,
    SimState,
    fingerprint,
)

_VERSION = r"(?:v1beta|v1|v1alpha)"
_ROUTES = [
    ("POST", re.compile(rf"^/upload/{_VERSION}/files$"), "upload_start"),
    ("POST", re.compile(r"^/_upload/(?P<uid>[0-9a-f]+)$"), "upload_chunk"),
    ("GET", re.compile(rf"^/{_VERSION}/files/(?P<fid>[a-z0-9-]+)$"), "get_file"),
    ("DELETE", re.compile(rf"^/{_VERSION}/files/(?P<fid>[a-z0-9-]+)$"), "delete_file"),
    ("GET", re.compile(rf"^/{_VERSION}/files$"), "list_files"),
    ("POST", re.compile(rf"^/{_VERSION}/models/(?P<model>[^/:]+):generateContent$"), "generate"),
    *CACHE_ROUTES,
    *BATCH_ROUTES,
]
_YOUTUBE_ID = re.compile(r"(?:v=|youtu\.be/|shorts/|live/|embed/)([A-Za-z0-9_-]{11})")
_FRAME_TOKENS = {
    "MEDIA_RESOLUTION_LOW": 66,
    "MEDIA_RESOLUTION_MEDIUM": 66,
    "MEDIA_RESOLUTION_HIGH": 258,
}
_AUDIO_TOKENS_PER_S = 32
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_free_tier_requests"


class _Abort(Exception):
    """Stop handling this request; the connection has been dealt with."""


def _endpoint(method: str, path: str) -> str:
    for verb, pattern, endpoint in _ROUTES:
        if verb == method and pattern.match(path):
            return endpoint
    return "other"


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def _get(d: dict[str, Any], *names: str) -> Any:
    for name in names:
        if name in d:
            return d[name]
    return None


def _seconds(value: Any) -> float | None:
    if isinstance(value, str) and value.endswith("s"):
        try:
            return float(value[:-1])
        except ValueError:
            return None
    return None


def probe_upload(path: str | None, size: int) -> tuple[float, str | None]:
    """Duration of an uploaded video, or why Gemini would fail to process it."""
    if path is None:
        return max(1.0, size / 250_000), None  # the docs' rule of thumb: ~250 kB per second
    import av  # slow to load: every command imports the simulator (--simulate), few probe

    try:
        with av.open(path) as container:
            if not container.streams.video:
                return 0.0, "The file has no video stream."
            duration = (container.duration or 0) / 1_000_000
            return (duration if duration > 0 else max(1.0, size / 250_000)), None
    except (av.FFmpegError, ValueError, UnicodeDecodeError):
        return 0.0, "Video could not be processed: unsupported or corrupt data."


def parse_request(request: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, Any], str]:
    """A GenerateContentRequest's video URI ("" if none), clip, generation config, prompt."""
    contents = request.get("contents") or []
    parts = contents[0].get("parts", []) if contents else []
    file_part = next((p for p in parts if _get(p, "fileData", "file_data")), None)
    prompt = "".join(p.get("text", "") for p in parts if "text" in p)
    file_data = _get(file_part, "fileData", "file_data") if file_part else {}
    uri = _get(file_data, "file_uri", "fileUri") or ""
    clip = (_get(file_part, "videoMetadata", "video_metadata") if file_part else None) or {}
    config = _get(request, "generationConfig", "generation_config") or {}
    return uri, clip, config, prompt


def answer_payload(
    state: SimState,
    model: str,
    subject: str,
    duration: float,
    clip: dict[str, Any],
    config: dict[str, Any],
    prompt: str,
    fault: Fault | None,
    cached: bool = False,
) -> dict[str, Any]:
    """The GenerateContentResponse for a request about ``subject``: a schema-valid answer,
    or what a content ``fault`` makes of it (cut off, blocked, off-schema). ``cached``:
    the video came from a context cache (its tokens are still counted in the prompt)."""
    start = _seconds(_get(clip, "start_offset", "startOffset")) or 0.0
    end = _seconds(_get(clip, "end_offset", "endOffset"))
    fps = float(_get(clip, "fps") or 1.0)
    json_mode = "json" in str(_get(config, "responseMimeType", "response_mime_type") or "")
    # free text (a script asking a question) gets a sentence, JSON mode an object
    default = {"type": "object"} if json_mode else {"type": "string"}
    schema = _get(config, "responseJsonSchema", "response_json_schema") or default
    answer = fake_answer(
        schema, name=subject, duration_s=duration, prompt=prompt, start_s=start, end_s=end
    )
    clip_s = max(1.0, (min(end, duration) if end else duration) - start)
    resolution = _get(config, "mediaResolution", "media_resolution") or "MEDIA_RESOLUTION_LOW"
    frame_tokens = _FRAME_TOKENS.get(str(resolution), 66)
    video_tokens = int(clip_s * (frame_tokens * fps + _AUDIO_TOKENS_PER_S))
    prompt_tokens = video_tokens + len(prompt) // 4 + 8
    text = answer if isinstance(answer, str) else json.dumps(answer, ensure_ascii=False)
    finish = "STOP"
    kind = fault.kind if fault else None
    max_out = _get(config, "maxOutputTokens", "max_output_tokens")
    out_tokens = max(1, len(text) // 3)
    if kind == "max_tokens" or (max_out and out_tokens > int(max_out)):
        cut = max(1, int(max_out) * 3) if max_out and out_tokens > int(max_out) else len(text) // 2
        text, finish = text[:cut], "MAX_TOKENS"
        out_tokens = int(max_out) if max_out else out_tokens // 2
    elif kind in ("safety", "recitation"):
        text, finish = "", kind.upper()
    elif kind == "invalid_answer":
        text = json.dumps({"simulated": "an answer that misses every required field"})
    usage = {
        "promptTokenCount": prompt_tokens,
        "candidatesTokenCount": out_tokens,
        "totalTokenCount": prompt_tokens + out_tokens + state.limits.thoughts_tokens,
        "thoughtsTokenCount": state.limits.thoughts_tokens,
        "promptTokensDetails": [{"modality": "VIDEO", "tokenCount": prompt_tokens}],
    }
    if cached:
        usage["cachedContentTokenCount"] = video_tokens
    if kind == "blocked":
        return {
            "promptFeedback": {"blockReason": "SAFETY"},
            "usageMetadata": usage,
            "modelVersion": model,
        }
    candidate: dict[str, Any] = {"finishReason": finish, "index": 0}
    if text:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    return {
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": f"sim-{abs(hash(text)) % 10**12}",
    }


class Handler(CacheRoutes, BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "gs-videoreport-simulator"
    disable_nagle_algorithm = True  # headers and body go out in two writes; no 40 ms stalls
    state: SimState  # set on the subclass built per server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the counters are the log

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass  # the client or a reset fault already closed the socket

    # -- plumbing ------------------------------------------------------------
    def _body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    _land: Callable[[], None] = staticmethod(lambda: None)  # ends the request's flight
    _trickle: Fault | None = None  # this request's answer is to be trickled

    def send_response(self, code: int, message: str | None = None) -> None:
        self._land()
        super().send_response(code, message)

    def _send(self, code: int, payload: Any, headers: dict[str, str] | None = None) -> None:
        body = b"" if payload is None else json.dumps(payload, indent=1).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with self.state.lock:
            self.state.statuses[code] += 1
        if self._trickle is not None:
            self._drip(body, self._trickle)
        else:
            self.wfile.write(body)

    def _drip(self, body: bytes, fault: Fault) -> None:
        """Send ``body`` a few bytes per ``fault.interval`` so that all of it takes
        ``fault.delay`` seconds: every read succeeds, so only a deadline on the whole call
        ends it. Stops as soon as the client has gone."""
        step = max(1, -(-len(body) // max(1, int(fault.delay / fault.interval))))
        for start in range(0, len(body), step):
            try:
                gone = bool(start) and not self._hold(fault.interval)
                if not gone:
                    self.wfile.write(body[start : start + step])
            except OSError:
                gone = True
            if gone:
                with self.state.lock:
                    self.state.trickles_cut += 1
                self.close_connection = True
                raise _Abort

    def _error(
        self, code: int, status: str, message: str, details: list[Any] | None = None
    ) -> None:
        error: dict[str, Any] = {"code": code, "message": message, "status": status}
        if details:
            error["details"] = details
        self._send(code, {"error": error})

    def _reset(self) -> None:
        self._land()
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
        except OSError:
            pass
        raise _Abort

    def _hold(self, seconds: float) -> bool:
        """Hold the call for ``seconds``, or until the client gives up (closes the
        connection): a request nobody waits for is no longer in flight. False when the
        client went away (or the simulator stops) first."""
        deadline = time.monotonic() + seconds
        while not self.state.stop_event.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            readable, _, _ = select.select([self.connection], [], [], min(0.05, left))
            if readable:
                try:
                    # drain what the client still sends (an unread body); nothing means
                    # it closed the connection
                    if not self.connection.recv(65536):
                        return False
                except OSError:
                    return False
        return False

    def _held(self) -> bool:
        """Hold the call until the next ``Simulator.release()``: a test acts while the
        call is surely in flight, with no timing to guess. False when the client went away
        (or the simulator stops) first."""
        with self.state.lock:
            ticket = self.state.releases
        while True:
            with self.state.lock:
                if self.state.releases > ticket:
                    return True
            if not self._hold(0.05):
                return False

    def _owner(self) -> str:
        key = self.headers.get("x-goog-api-key")
        if not key:
            self._error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers "
                "(callers without established identity). Please use API Key or other "
                "form of API consumer identity to call this API.",
            )
            raise _Abort
        owner = fingerprint(key)
        with self.state.lock:
            self.state.keys_seen.add(owner)
        if owner in self.state.invalid_keys:
            self._error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                        "metadata": {"service": "generativelanguage.googleapis.com"},
                    }
                ],
            )
            raise _Abort
        if owner in self.state.denied_keys:
            self._error(
                403,
                "PERMISSION_DENIED",
                "Permission denied: Consumer has been suspended.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "CONSUMER_SUSPENDED",
                        "domain": "googleapis.com",
                    }
                ],
            )
            raise _Abort
        return owner

    def _inject(self, fault: Fault, model: str | None) -> None:
        """Apply a transport- or status-level fault; content faults are left to the caller."""
        kind = fault.kind
        if kind == "rate_limit_minute":
            self._rate_limited(
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, fault.retry_after
            )
        elif kind == "rate_limit_day":
            self._rate_limited("GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, None)
        elif kind == "server_error":
            self._error(
                500,
                "INTERNAL",
                "An internal error has occurred. Please retry or report "
                "in https://developers.generativeai.google/guide/troubleshooting",
            )
        elif kind == "unavailable":
            self._error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        elif kind == "permission_denied":
            self._error(
                403,
                "PERMISSION_DENIED",
                "You do not have permission to access the File or it may not exist.",
            )
        elif kind == "echo_key":
            self._echo_key()
        elif kind == "hang":
            self._hold(fault.delay)
            self._reset()
        elif kind == "hold":
            if self._held():
                return  # released: the normal answer
            self.close_connection = True  # nobody waits for it: no answer at all
        elif kind == "reset":
            self._reset()
        elif kind == "trickle":
            self._trickle = fault  # the real answer, slowly (see _drip)
            return
        elif kind == "truncated":
            body = b'{"candidates": [{"content": {"parts": [{"text": "{\\"tit'
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            return
        raise _Abort

    def _echo_key(self) -> None:
        """A 400 that repeats the credential, as an error quoting the request URL in its
        ``?key=`` form does: the client must keep it out of everything it shows or stores."""
        key = self.headers.get("x-goog-api-key") or ""
        url = f"https://generativelanguage.googleapis.com{urlparse(self.path).path}?key={key}"
        self._error(
            400,
            "INVALID_ARGUMENT",
            f"Request contains an invalid argument. Request URL: {url} (API key {key})",
            [
                {
                    "@type": "type.googleapis.com/google.rpc.BadRequest",
                    "fieldViolations": [{"field": "key", "description": f"Invalid key {key}"}],
                },
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": "BAD_REQUEST",
                    "domain": "googleapis.com",
                    "metadata": {"key": key, "url": url},
                },
            ],
        )

    def _rate_limited(self, quota_id: str, model: str | None, retry_after: float | None) -> None:
        details: list[Any] = [
            {
                "@type": "type.googleapis.com/google.rpc.QuotaFailure",
                "violations": [
                    {
                        "quotaMetric": _QUOTA_METRIC,
                        "quotaId": quota_id,
                        "quotaDimensions": {"location": "global", "model": model or "gemini"},
                        "quotaValue": "10",
                    }
                ],
            },
            {
                "@type": "type.googleapis.com/google.rpc.Help",
                "links": [
                    {
                        "description": "Learn more about Gemini API quotas",
                        "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
                    }
                ],
            },
        ]
        message = "You exceeded your current quota, please check your plan and billing details."
        if retry_after is not None:
            details.append(
                {
                    "@type": "type.googleapis.com/google.rpc.RetryInfo",
                    "retryDelay": f"{retry_after:g}s",
                }
            )
            message += f" Please retry in {retry_after:g}s."
        self._error(429, "RESOURCE_EXHAUSTED", message, details)

    # -- dispatch --------------------------------------------------------------
    def _dispatch(self, method: str) -> None:
        self._trickle = None  # a handler serves every request of its connection
        parsed = urlparse(self.path)
        if parsed.path.startswith("/_sim/"):
            self._control(method, parsed.path, self._body())
            return
        if self.state.dropping(_endpoint(method, parsed.path)):
            self._reset()  # the network is down: the request never reaches the API
        for verb, pattern, endpoint in _ROUTES:
            match = pattern.match(parsed.path)
            if verb == method and match:
                with self.state.flight(endpoint) as self._land:
                    in_flight = self.state.in_flight
                    with self.state.lock:
                        self.state.calls[endpoint] += 1
                    latency = self.state.limits.latency.get(endpoint, 0.0)
                    if latency:
                        self.state.stop_event.wait(latency)
                    cap = self.state.limits.max_concurrency
                    if cap and in_flight > cap and endpoint != "upload_chunk":
                        self._body()
                        self._rate_limited("ConcurrentRequestsPerProject", None, 1.0)
                        return
                    batch = BATCH_HANDLERS.get(endpoint)
                    if batch is not None:
                        batch(self, match, parsed)
                    else:
                        getattr(self, f"_{endpoint}")(match, parsed)
                return
        self._body()
        self._error(404, "NOT_FOUND", f"Method not found: {method} {parsed.path}")

    def _handle(self, method: str) -> None:
        try:
            self._dispatch(method)
        except _Abort:
            pass
        finally:
            with self.state.handled:
                self.state.handled.notify_all()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    # -- control ---------------------------------------------------------------
    def _control(self, method: str, path: str, body: bytes) -> None:
        data = json.loads(body or b"{}")
        state = self.state
        if path == "/_sim/stats" and method == "GET":
            self._send(200, state.snapshot())
        elif path == "/_sim/faults" and method == "POST":
            with state.lock:
                state.faults.extend(Fault(**f) for f in data.get("faults", []))
                if "chaos_rate" in data:
                    state.chaos_rate = float(data["chaos_rate"])
                    state.chaos_kinds = tuple(data.get("chaos_kinds", ()))
            self._send(200, {})
        elif path == "/_sim/limits" and method == "POST":
            with state.lock:
                for key, value in data.items():
                    setattr(state.limits, key, value)
            self._send(200, {})
        elif path == "/_sim/network" and method == "POST":
            with state.lock:
                state.offline = bool(data.get("offline", False))
            self._send(200, {})
        elif path == "/_sim/reset" and method == "POST":
            state.reset_stats()
            self._send(200, {})
        else:
            self._error(404, "NOT_FOUND", f"unknown control path {path}")

    # -- files -----------------------------------------------------------------
    def _file_json(self, file: SimFile) -> dict[str, Any]:
        host = self.headers.get("Host", "127.0.0.1")
        data: dict[str, Any] = {
            "name": file.name,
            "displayName": file.display_name,
            "mimeType": file.mime_type,
            "sizeBytes": str(file.size),
            "createTime": _iso(file.created),
            "updateTime": _iso(file.created),
            "expirationTime": _iso(file.created + FILE_TTL_S),
            "sha256Hash": file.sha256,
            "uri": f"http://{host}/v1beta/files/{file.id}",
            "state": "PROCESSING",
            "source": "UPLOADED",
        }
        if file.generated:
            data["source"] = "GENERATED"
            data["downloadUri"] = f"http://{host}/download/v1beta/{file.name}:download?alt=media"
        processed = file.processed(self.state.clock())
        if file.failed_reason and processed:
            data["state"] = "FAILED"
            data["error"] = {"code": 3, "message": file.failed_reason}
        elif processed:
            data["state"] = "ACTIVE"
            data["videoMetadata"] = {"videoDuration": f"{file.duration_s:.0f}s"}
        return data

    def _upload_start(self, match: re.Match[str], parsed: Any) -> None:
        body = json.loads(self._body() or b"{}")
        owner = self._owner()
        meta = body.get("file") or {}
        name = (
            _get(meta, "display_name", "displayName")
            or self.headers.get("X-Goog-Upload-File-Name")
            or ""
        )
        fault = self.state.take_fault("upload_start", name)
        if fault:
            self._inject(fault, None)
        size = int(self.headers.get("X-Goog-Upload-Header-Content-Length") or 0)
        mime = self.headers.get("X-Goog-Upload-Header-Content-Type") or ""
        upload = self.state.new_upload(owner, name, mime, size)
        upload.fail_processing = bool(fault and fault.kind == "processing_failed")
        host = self.state.upload_host or f"http://{self.headers.get('Host', '127.0.0.1')}"
        url = f"{host}/_upload/{upload.id}?upload_id={upload.id}&upload_protocol=resumable"
        self._send(
            200,
            {},
            {
                "X-Goog-Upload-URL": url,
                "X-Goog-Upload-Status": "active",
                "X-Goog-Upload-Chunk-Granularity": "8388608",
            },
        )

    def _upload_chunk(self, match: re.Match[str], parsed: Any) -> None:
        data = self._body()
        upload = self.state.uploads.get(match.group("uid"))
        if upload is None:
            self._error(404, "NOT_FOUND", "Upload session not found or expired.")
            return
        command = (self.headers.get("X-Goog-Upload-Command") or "").lower()
        offset = int(self.headers.get("X-Goog-Upload-Offset") or 0)
        if offset != upload.received:
            self._error(
                400, "INVALID_ARGUMENT", f"Offset {offset} does not match {upload.received}."
            )
            return
        fault = self.state.take_fault("upload_chunk", upload.display_name)
        if fault and fault.kind == "processing_failed":
            upload.fail_processing = True
        elif fault:
            self._inject(fault, None)
        upload.received += len(data)
        upload.hasher.update(data)
        if upload.spool is not None:
            upload.spool.write(data)
        with self.state.lock:
            self.state.bytes_received += len(data)
        if "finalize" not in command:
            self._send(200, {}, {"X-Goog-Upload-Status": "active"})
            return
        file = self.state.finish_upload(upload, probe_upload)
        if upload.fail_processing:
            file.failed_reason = "Video processing failed (simulated fault)."
        with self.state.lock:
            self.state.calls_by_file[file.id]["upload"] += 1
        self._send(200, {"file": self._file_json(file)}, {"X-Goog-Upload-Status": "final"})

    def _no_such_file(self, file_id: str) -> None:
        self._error(
            403,
            "PERMISSION_DENIED",
            f"You do not have permission to access the File {file_id} or it may not exist.",
        )

    def _owned_file(self, match: re.Match[str], endpoint: str) -> SimFile | None:
        """The caller's live file, after any injected fault; answers 403 and returns None
        for a missing, expired, deleted or foreign file (as the real API does)."""
        owner = self._owner()
        file_id = match.group("fid")
        file = self.state.live_file(file_id, owner)
        fault = self.state.take_fault(endpoint, file.display_name if file else file_id)
        if fault:
            self._inject(fault, None)
        if file is None:
            self._no_such_file(file_id)
        return file

    def _get_file(self, match: re.Match[str], parsed: Any) -> None:
        file = self._owned_file(match, "get_file")
        if file is None:
            return
        with self.state.lock:
            self.state.calls_by_file[file.id]["get"] += 1
            payload = self._file_json(file)
            file.polls_left -= 1
        self._send(200, payload)

    def _delete_file(self, match: re.Match[str], parsed: Any) -> None:
        file = self._owned_file(match, "delete_file")
        if file is None:
            return
        with self.state.lock:
            file.deleted = True
            self.state.files_deleted += 1
            self.state.calls_by_file[file.id]["delete"] += 1
        self._send(200, {})

    def _list_files(self, match: re.Match[str], parsed: Any) -> None:
        owner = self._owner()
        fault = self.state.take_fault("list_files", "")
        if fault:
            self._inject(fault, None)
        query = parse_qs(parsed.query)
        size = int((query.get("pageSize") or ["100"])[0])
        start = int((query.get("pageToken") or ["0"])[0] or 0)
        with self.state.lock:
            mine = [f for f in self.state.files.values() if f.owner == owner and not f.deleted]
            page = [self._file_json(f) for f in mine[start : start + size]]
        payload: dict[str, Any] = {}
        if page:
            payload["files"] = page
        if start + size < len(mine):
            payload["nextPageToken"] = str(start + size)
        self._send(200, payload)

    # -- generate --------------------------------------------------------------
    def _generate(self, match: re.Match[str], parsed: Any) -> None:
        request = json.loads(self._body() or b"{}")
        owner = self._owner()
        model = match.group("model")
        if not model.startswith("gemini"):
            self._error(
                404,
                "NOT_FOUND",
                f"models/{model} is not found for API version v1beta, "
                "or is not supported for generateContent. Call ListModels to see the list "
                "of available models and their supported methods.",
            )
            return
        request = self._with_cache(request, owner, model)
        if request is None:
            return  # answered: a cache missing, or set with a system instruction
        uri, clip, config, prompt = parse_request(request)
        if not uri:
            self._error(400, "INVALID_ARGUMENT", "The request has no video part.")
            return
        tier = _get(request, "serviceTier", "service_tier")
        if self.state.limits.refuse_flex and str(tier).lower() == "flex":
            self._error(
                400,
                "INVALID_ARGUMENT",
                f"The Flex service tier is not available for models/{model}.",
            )
            return
        subject, duration = self._video_subject(uri, owner)
        if subject is None:
            return
        fault = self.state.take_fault("generate", subject)
        if fault:
            self._inject(fault, model)
        project = self.state.project_of(owner)
        if project in self.state.daily_exhausted:
            self._rate_limited("GenerateRequestsPerDayPerProjectPerModel-FreeTier", model, None)
            return
        retry = self.state.over_rpm(project)
        if retry is not None:
            self._rate_limited(
                "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", model, round(retry, 1)
            )
            return
        with self.state.lock:
            self.state.generate_by_subject[subject] += 1
            if uri.rsplit("/", 1)[-1] in self.state.files:
                self.state.calls_by_file[uri.rsplit("/", 1)[-1]]["generate"] += 1
            self.state.generate_requests.append(
                {
                    "at": self.state.clock(),
                    "model": model,
                    "subject": subject,
                    "uri": uri,
                    "prompt": prompt,
                    "system_instruction": bool(
                        _get(request, "systemInstruction", "system_instruction")
                    ),
                    "generation_config": config,
                    "video_metadata": clip,
                    "cached": bool(request.get("_cached")),
                    "service_tier": tier,
                    "key": owner,
                }
            )
        self._send(
            200,
            answer_payload(
                self.state,
                model,
                subject,
                duration,
                clip,
                config,
                prompt,
                fault,
                cached=bool(request.get("_cached")),
            ),
        )

    def _video_subject(self, uri: str, owner: str) -> tuple[str | None, float]:
        youtube = _YOUTUBE_ID.search(uri) if "youtu" in uri else None
        if youtube:
            video_id = youtube.group(1)
            return uri, 120.0 + int.from_bytes(video_id.encode(), "big") % 1680
        file_id = uri.rstrip("/").rsplit("/", 1)[-1]
        file = self.state.live_file(file_id, owner)
        if file is None:
            self._no_such_file(file_id)
            return None, 0.0
        if file.failed_reason or not file.processed(self.state.clock()):
            self._error(
                400,
                "FAILED_PRECONDITION",
                f"The File {file_id} is not in an ACTIVE state and usage is not allowed.",
            )
            return None, 0.0
        return file.display_name, file.duration_s
