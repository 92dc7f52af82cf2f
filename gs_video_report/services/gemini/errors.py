"""SDK and transport exceptions -> our ``ApiError`` classes, with the retry decision as data.

The decision reads structure, not wording: the HTTP code, the google.rpc status,
``ErrorInfo.reason``, ``RetryInfo.retryDelay`` and ``QuotaFailure`` quota ids. The
one exception is the "Please retry in Ns" hint in a 429 message, used only when
no RetryInfo came with it. The SDK puts the whole body in ``e.details``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

import httpx2
from google.genai import errors as genai_errors

from gs_video_report.errors import (
    ApiError,
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    NetworkError,
    PermanentError,
    QuotaScope,
    RateLimitError,
    TransientError,
)

_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
_QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"
_ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
_AUTH_REASONS = {
    "API_KEY_INVALID",
    "API_KEY_EXPIRED",
    "API_KEY_SERVICE_BLOCKED",
    "SERVICE_DISABLED",
}
# Anything longer than a day is not a wait, it is "not until something changes"
# (FileStorageBytesPerProject answers with int64-max seconds).
_MAX_SENSIBLE_DELAY_S = 86_400.0
_MAX_MESSAGE = 300
# The connection itself failed: refused, reset, DNS failure, no route (httpx2's
# NetworkError family: ConnectError, ReadError, WriteError, CloseError), a connect that
# timed out (nothing was sent), or a server gone without a complete answer. Not a read
# timeout of a request the server accepted (ApiTimeoutError), nor a pool timeout (local).
_CONNECTION_FAILED = (
    httpx2.NetworkError,
    httpx2.ConnectTimeout,
    httpx2.RemoteProtocolError,
    ConnectionError,
)


def parse_duration(value: Any) -> float | None:
    """A protobuf Duration (``"53s"``, ``"1.5s"``, or ``{"seconds": 3, "nanos": 5e8}``)."""
    if isinstance(value, str):
        match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)s\s*", value)
        return float(match.group(1)) if match else None
    if isinstance(value, Mapping):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def _detail_list(body: Any) -> list[Mapping[str, Any]]:
    if not isinstance(body, Mapping):
        return []
    error = body.get("error", body)
    details = error.get("details") if isinstance(error, Mapping) else None
    return [d for d in details if isinstance(d, Mapping)] if isinstance(details, list) else []


def _one_line(text: str | None, secret: str | None) -> str:
    text = " ".join((text or "").split())
    if secret:
        text = text.replace(secret, "[key]")
    return text if len(text) <= _MAX_MESSAGE else text[: _MAX_MESSAGE - 1] + "…"


def _quota(details: list[Mapping[str, Any]]) -> tuple[QuotaScope, str | None]:
    for detail in details:
        if detail.get("@type") != _QUOTA_FAILURE:
            continue
        for violation in detail.get("violations") or []:
            quota_id = str(violation.get("quotaId") or "")
            if "PerDay" in quota_id:
                return QuotaScope.PER_DAY, quota_id
            if "PerMinute" in quota_id:
                return QuotaScope.PER_MINUTE, quota_id
            if quota_id:
                return QuotaScope.UNKNOWN, quota_id
    return QuotaScope.UNKNOWN, None


def _retry_delay(details: list[Mapping[str, Any]], message: str) -> float | None:
    for detail in details:
        if detail.get("@type") == _RETRY_INFO:
            delay = parse_duration(detail.get("retryDelay"))
            if delay is not None:
                return delay
    hint = re.search(r"retry in (\d+(?:\.\d+)?)\s*s", message, flags=re.IGNORECASE)
    return float(hint.group(1)) if hint else None


def _error_reason(details: list[Mapping[str, Any]]) -> str | None:
    for detail in details:
        if detail.get("@type") == _ERROR_INFO:
            return str(detail.get("reason") or "") or None
    return None


def _cause(exc: BaseException, secret: str | None) -> str:
    """The first non-empty message down the chain: httpx2 often wraps the OS error
    (``[Errno 104] Connection reset by peer``) in exceptions that say nothing."""
    seen: BaseException | None = exc
    for _ in range(6):
        if seen is None:
            break
        if str(seen).strip():
            return _one_line(str(seen), secret)
        seen = seen.__cause__ or seen.__context__
    return "no details"


def translate_api_error(
    exc: genai_errors.APIError, *, touches_file: bool = False, secret: str | None = None
) -> ApiError:
    code = int(exc.code or 0)
    status = _one_line(str(exc.status or ""), secret)
    message = _one_line(exc.message if isinstance(exc.message, str) else None, secret)
    details = _detail_list(exc.details)
    text = (
        f"{code} {status}: {message}".strip().rstrip(":") if message else f"{code} {status}".strip()
    )
    if code == 429:
        scope, quota_id = _quota(details)
        delay = _retry_delay(details, message)
        if delay is not None and delay > _MAX_SENSIBLE_DELAY_S:
            scope, delay = QuotaScope.PER_DAY, None
        return RateLimitError(text, retry_after=delay, quota=scope, quota_id=quota_id)
    if code == 401 or _error_reason(details) in _AUTH_REASONS:
        return AuthError(text, status=code)
    if code == 403:
        # A 403 on a call about an uploaded file means the file is gone or belongs to
        # another project; the key itself may be fine. So does one about a context cache
        # of it ("CachedContent not found (or permission denied)": expired or deleted).
        if touches_file and any(w in message.lower() for w in ("file", "cachedcontent")):
            return FileAccessError(text, status=code)
        return AuthError(text, status=code)
    if code in (408, 504):
        return ApiTimeoutError(text, status=code)
    if code == 400 and status == "FAILED_PRECONDITION" and "ACTIVE" in message:
        return TransientError(text, status=code)  # file not ready yet: wait and retry
    if code == 404 and touches_file and "model" not in message.lower():
        return FileAccessError(text, status=code)  # the uploaded file is gone
    if code == 404 and "model" in message.lower():
        return PermanentError(
            f"{text} (check the model name: gs_videoreport list-models)", status=code
        )
    if 500 <= code < 600 or code in (409, 425):
        return TransientError(text, status=code, retry_after=_retry_delay(details, message))
    return PermanentError(text, status=code)


def translate(
    exc: BaseException, *, stage: str, touches_file: bool = False, secret: str | None = None
) -> ApiError | None:
    """Classify what the SDK or its transport raised during a call at ``stage``
    (upload, poll, generate, delete, list). ``None``: not an API problem; re-raise it.
    ``secret`` (the key) is scrubbed from every message, before any shortening."""
    error = _classify(exc, stage=stage, touches_file=touches_file, secret=secret)
    if error is not None and secret and secret in error.message:
        # a safety net: each message is built from scrubbed parts already
        error.message = error.message.replace(secret, "[key]")
        error.args = (error.message,)
    return error


def _classify(
    exc: BaseException, *, stage: str, touches_file: bool, secret: str | None
) -> ApiError | None:
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        return translate_api_error(exc, touches_file=touches_file, secret=secret)
    name = type(exc).__name__
    if isinstance(exc, _CONNECTION_FAILED):
        return NetworkError(f"{stage}: connection failed ({name}: {_cause(exc, secret)})")
    if isinstance(exc, httpx2.TimeoutException | TimeoutError):
        return ApiTimeoutError(f"{stage}: no answer within the timeout ({name})")
    if isinstance(exc, httpx2.TransportError | ConnectionError):
        return TransientError(
            f"{stage}: connection problem ({name}: {_one_line(str(exc), secret)})"
        )
    if isinstance(exc, json.JSONDecodeError):
        return TransientError(f"{stage}: the server's answer was cut off or not JSON")
    if stage == "upload" and isinstance(
        exc, genai_errors.UnknownApiResponseError | KeyError | TypeError | ValueError
    ):
        # The upload's final answer was unreadable or the protocol stalled: the file may
        # exist server-side under a name we never learned. Upload again.
        return TransientError(f"upload did not complete ({name}: {_one_line(str(exc), secret)})")
    return None
