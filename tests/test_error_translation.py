"""Every SDK/transport failure maps to one of our classes with the right retry data."""

from __future__ import annotations

import json
from typing import Any

import httpx2
import pytest
from google.genai import errors as genai_errors

from gs_video_report.errors import (
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    NetworkError,
    PermanentError,
    QuotaScope,
    RateLimitError,
    TransientError,
)
from gs_video_report.services.gemini.errors import parse_duration, translate


def api_error(code: int, status: str, message: str, details: list[Any] | None = None) -> Exception:
    body: dict[str, Any] = {"error": {"code": code, "status": status, "message": message}}
    if details is not None:
        body["error"]["details"] = details
    cls = genai_errors.ClientError if code < 500 else genai_errors.ServerError
    return cls(code, body)


def quota(quota_id: str) -> dict[str, Any]:
    return {
        "@type": "type.googleapis.com/google.rpc.QuotaFailure",
        "violations": [{"quotaId": quota_id, "quotaValue": "10"}],
    }


def retry_info(delay: str) -> dict[str, Any]:
    return {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}


def test_per_minute_429_reads_quota_id_and_retry_delay() -> None:
    exc = api_error(
        429,
        "RESOURCE_EXHAUSTED",
        "You exceeded your current quota.",
        [quota("GenerateRequestsPerMinutePerProjectPerModel-FreeTier"), retry_info("53s")],
    )
    err = translate(exc, stage="generate")
    assert isinstance(err, RateLimitError)
    assert err.quota is QuotaScope.PER_MINUTE and err.retry_after == 53.0 and err.retryable


def test_per_day_429_is_not_retryable_and_exits_5() -> None:
    exc = api_error(
        429,
        "RESOURCE_EXHAUSTED",
        "Quota exceeded. Please retry in 3s.",
        [quota("GenerateRequestsPerDayPerProjectPerModel-FreeTier")],
    )
    err = translate(exc, stage="generate")
    assert isinstance(err, RateLimitError) and err.quota is QuotaScope.PER_DAY
    assert not err.retryable and err.exit_code == 5


def test_429_wording_alone_does_not_decide_the_scope_but_gives_the_delay() -> None:
    err = translate(
        api_error(429, "RESOURCE_EXHAUSTED", "per day quota! Please retry in 12.5s."),
        stage="generate",
    )
    assert isinstance(err, RateLimitError)
    assert err.quota is QuotaScope.UNKNOWN and err.retry_after == 12.5 and err.retryable


def test_storage_quota_with_int64_delay_is_not_a_wait() -> None:
    exc = api_error(
        429,
        "RESOURCE_EXHAUSTED",
        "storage",
        [quota("FileStorageBytesPerProject"), retry_info("9223372036854775807s")],
    )
    err = translate(exc, stage="upload")
    assert isinstance(err, RateLimitError) and not err.retryable and err.retry_after is None


@pytest.mark.parametrize(
    ("exc", "cls", "retryable"),
    [
        (
            api_error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid.",
                [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            ),
            AuthError,
            False,
        ),
        (api_error(401, "UNAUTHENTICATED", "bad credentials"), AuthError, False),
        (
            api_error(403, "PERMISSION_DENIED", "Method doesn't allow unregistered callers"),
            AuthError,
            False,
        ),
        (api_error(404, "NOT_FOUND", "models/x is not found"), PermanentError, False),
        (api_error(400, "INVALID_ARGUMENT", "Unsupported MIME type"), PermanentError, False),
        (
            api_error(400, "FAILED_PRECONDITION", "The File abc is not in an ACTIVE state"),
            TransientError,
            True,
        ),
        (api_error(500, "INTERNAL", "An internal error has occurred."), TransientError, True),
        (api_error(503, "UNAVAILABLE", "The model is overloaded."), TransientError, True),
        (api_error(504, "DEADLINE_EXCEEDED", "Deadline expired"), ApiTimeoutError, True),
        (httpx2.ReadTimeout("timed out"), ApiTimeoutError, True),
        (TimeoutError(), ApiTimeoutError, True),
        (httpx2.PoolTimeout("no free connection"), ApiTimeoutError, True),  # ours, local
        (httpx2.ConnectError("All connection attempts failed"), NetworkError, True),  # refused
        (httpx2.ConnectError("[Errno -2] Name or service not known"), NetworkError, True),
        (httpx2.ConnectError("[Errno 101] Network is unreachable"), NetworkError, True),
        (httpx2.ConnectTimeout("timed out"), NetworkError, True),  # nothing was sent
        (httpx2.ReadError("reset"), NetworkError, True),
        (httpx2.WriteError("broken pipe"), NetworkError, True),
        (httpx2.RemoteProtocolError("Server disconnected"), NetworkError, True),
        (ConnectionResetError(104, "Connection reset by peer"), NetworkError, True),
        (httpx2.UnsupportedProtocol("ftp://"), TransientError, True),
        (json.JSONDecodeError("Unterminated string", "{", 1), TransientError, True),
    ],
)
def test_classification(exc: Exception, cls: type, retryable: bool) -> None:
    err = translate(exc, stage="generate")
    assert type(err) is cls
    assert err.retryable is retryable
    assert "\n" not in err.message


def test_a_lost_connection_is_neither_a_server_error_nor_a_timeout_and_names_its_cause() -> None:
    """httpx2 wraps the OS error in exceptions with empty messages: the line shows the OS's."""
    try:
        try:
            raise ConnectionResetError(104, "Connection reset by peer")
        except ConnectionResetError as os_error:
            raise httpx2.ReadError("") from os_error
    except httpx2.ReadError as exc:
        err = translate(exc, stage="generate")
    assert isinstance(err, NetworkError) and err.kind == "NetworkError" and err.exit_code == 6
    assert (
        err.message
        == "generate: connection failed (ReadError: [Errno 104] Connection reset by peer)"
    )
    server = translate(api_error(503, "UNAVAILABLE", "overloaded"), stage="generate")
    slow = translate(httpx2.ReadTimeout("timed out"), stage="generate")
    assert not isinstance(server, NetworkError) and not isinstance(slow, NetworkError)


def test_403_on_a_file_means_upload_again_not_bad_key() -> None:
    exc = api_error(
        403,
        "PERMISSION_DENIED",
        "You do not have permission to access the File abc or it may not exist.",
    )
    assert isinstance(translate(exc, stage="generate", touches_file=True), FileAccessError)
    assert isinstance(translate(exc, stage="generate", touches_file=False), AuthError)


def test_upload_protocol_failures_are_transient_but_only_at_upload() -> None:
    assert isinstance(translate(KeyError("file"), stage="upload"), TransientError)
    assert translate(KeyError("file"), stage="generate") is None  # a bug of ours: re-raise it
    assert translate(RuntimeError("boom"), stage="upload") is None


def test_messages_never_contain_the_key() -> None:
    secret = "AIzaSECRET123"
    exc = api_error(400, "INVALID_ARGUMENT", f"key {secret} is odd")
    err = translate(exc, stage="generate", secret=secret)
    assert err is not None and secret not in err.message and "[key]" in err.message


def test_the_key_is_scrubbed_from_every_part_of_the_message() -> None:
    secret = "AIzaSECRET123-abcdef"
    exc = api_error(400, f"BAD {secret}", f"see ?key={secret} " + "x" * 290)
    err = translate(exc, stage="generate", secret=secret)
    assert err is not None and err.message.startswith("400 BAD [key]: see ?key=[key] x")
    assert secret not in str(err) and secret not in repr(err.args)
    chunked = translate(httpx2.ReadError(f"reset {secret}"), stage="upload", secret=secret)
    assert chunked is not None and secret not in chunked.message


def test_parse_duration_forms() -> None:
    assert parse_duration("53s") == 53.0
    assert parse_duration("0.5s") == 0.5
    assert parse_duration({"seconds": 3, "nanos": 500_000_000}) == 3.5
    assert parse_duration("soon") is None
