"""The one exception root of gs_videoreport and its exit codes.

Hierarchy (each class carries its ``exit_code``; API errors also carry the
retry decision as data, so callers never parse messages)::

    GsVideoReportError
    ├── UsageError                  exit 2   conflicting or malformed options
    ├── ConfigError                 exit 3   config file, settings, parameters
    │   └── TemplateError           exit 3   unknown/broken template, missing parameter
    ├── InputError                  exit 3   a video or URL we refuse before any API call
    ├── OutputError                 exit 1   the lesson could not be written
    ├── StorageError                exit 1   the state database failed (or stayed locked)
    │   ├── NewerDatabaseError      exit 3   written by a newer gs_videoreport: upgrade
    └── ApiError                    exit 1   anything Gemini (or the way to it) answered
        ├── AuthError               exit 4   invalid key, permission denied, no key
        ├── FileAccessError         exit 1   403 on an uploaded file: upload again
        ├── FileProcessingError     exit 1   the uploaded file ended FAILED
        ├── TransientError          exit 1   5xx, unreadable bodies
        │   ├── NetworkError        exit 6   the connection failed (refused, reset, DNS,
        │   │                                no route, connect timeout)
        │   ├── ApiTimeoutError     exit 1   no answer within the request timeout
        │   └── RateLimitError      exit 5   429; ``quota`` says per-minute or per-day
        ├── PermanentError          exit 1   400-class answers that will not change on retry
        └── AnswerError             exit 1   the model answered, but not a usable lesson
                                             (finish_reason != STOP, blocked, invalid JSON)

Only ``services/gemini`` creates ``ApiError`` subclasses from SDK exceptions.
"""

from __future__ import annotations

from enum import IntEnum, StrEnum


class ExitCode(IntEnum):
    """Process exit statuses (documented in the README and ``--help``)."""

    OK = 0
    PARTIAL = 1  # some (or the only) video failed, or a batch input was rejected
    USAGE = 2
    INPUT = 3  # bad input or configuration
    AUTH = 4
    QUOTA = 5  # quota or budget exhausted; the work is resumable
    OFFLINE = 6  # the API could not be reached (a batch: for api.offline_wait); resumable
    INTERRUPTED = 130
    # stdout went away while we wrote to it (``| head`` read what it wanted): the status
    # a shell gives a tool that SIGPIPE ends, and nothing more is written
    OUTPUT_CLOSED = 141


class QuotaScope(StrEnum):
    PER_MINUTE = "per_minute"
    PER_DAY = "per_day"
    UNKNOWN = "unknown"


class GsVideoReportError(Exception):
    exit_code: ExitCode = ExitCode.PARTIAL
    # A stable name for reports and the task table (``last_error_kind``): stored, so it
    # never follows a class rename. Every class below names its own.
    kind: str = "Error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class UsageError(GsVideoReportError):
    kind = "UsageError"
    exit_code = ExitCode.USAGE


class ConfigError(GsVideoReportError):
    kind = "ConfigError"
    exit_code = ExitCode.INPUT


class TemplateError(ConfigError):
    kind = "TemplateError"


class InputError(GsVideoReportError):
    kind = "InputError"
    exit_code = ExitCode.INPUT


class OutputError(GsVideoReportError):
    kind = "OutputError"


class OutputFolderError(OutputError):
    """The output folder cannot be written at all: found before anything runs or is
    paid for, so it is bad input (3), not a batch that partly failed (1)."""

    kind = "OutputFolderError"
    exit_code = ExitCode.INPUT


class StorageError(GsVideoReportError):
    kind = "StorageError"


class NewerDatabaseError(StorageError):
    """The state database has a migration or a task stage this version does not know.
    Exit 3 like a bad configuration: nothing is wrong with the videos, and running again
    cannot help until the user upgrades (or points GS_VIDEOREPORT_HOME elsewhere)."""

    exit_code = ExitCode.INPUT

    def __init__(self, path: object, found: str) -> None:
        super().__init__(
            f"the state database {path} was written by a newer gs_videoreport ({found}); "
            "upgrade gs_videoreport (pip install -U gs-videoreport) to use it, or set "
            "GS_VIDEOREPORT_HOME to another folder"
        )


class UnknownBatchError(StorageError):
    kind = "UnknownBatchError"
    exit_code = ExitCode.INPUT

    def __init__(self, batch_id: str) -> None:
        super().__init__(f"no batch {batch_id} (see gs_videoreport list-batches)")


class BatchBusyError(StorageError):
    """Another live process runs this batch."""

    kind = "BatchBusyError"
    exit_code = ExitCode.USAGE


class ApiError(GsVideoReportError):
    """An error from the Gemini API or the transport to it.

    ``retryable`` is the retry decision; ``retry_after`` the server's own delay
    (RetryInfo) in seconds when it gave one; ``status`` the HTTP code when known.
    """

    kind = "ApiError"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retry_after = retry_after


class AuthError(ApiError):
    kind = "AuthError"
    exit_code = ExitCode.AUTH


class FileAccessError(ApiError):
    """403 on an uploaded file: expired, deleted, or owned by another key's project.

    Retrying the same call cannot help; uploading again (with the key that will
    generate) can, so it is retryable *with a re-upload*.
    """

    kind = "FileAccessError"
    retryable = True


class FileProcessingError(ApiError):
    """Gemini could not process the uploaded video (state FAILED)."""

    kind = "FileProcessingError"


class TransientError(ApiError):
    kind = "TransientError"
    retryable = True


class NetworkError(TransientError):
    """The connection to the endpoint failed (refused, reset, DNS failure, no route,
    connect timeout): not a server's answer, and not a request that was accepted and then
    ran out of time. Losing the network is not the video's fault; the batch pauses
    every worker and probes until it is back (``batch.network``)."""

    kind = "NetworkError"
    exit_code = ExitCode.OFFLINE


class ApiTimeoutError(TransientError):
    """The call did not answer within its timeout; retry with a longer one."""

    kind = "ApiTimeoutError"


class RateLimitError(TransientError):
    """429 RESOURCE_EXHAUSTED.

    ``quota`` is read from the QuotaFailure details (quotaId), never from the
    message wording. A per-day quota is not worth retrying before the reset.
    """

    kind = "RateLimitError"
    exit_code = ExitCode.QUOTA

    def __init__(
        self,
        message: str,
        *,
        status: int | None = 429,
        retry_after: float | None = None,
        quota: QuotaScope = QuotaScope.UNKNOWN,
        quota_id: str | None = None,
    ) -> None:
        super().__init__(message, status=status, retry_after=retry_after)
        self.quota = quota
        self.quota_id = quota_id

    @property
    def retryable(self) -> bool:  # type: ignore[override]
        return self.quota is not QuotaScope.PER_DAY


class PermanentError(ApiError):
    kind = "PermanentError"


class AnswerError(ApiError):
    """The model answered but the answer is not a complete lesson.

    ``reason`` is the finish reason (MAX_TOKENS, SAFETY, RECITATION...), the
    block reason, ``EMPTY`` or ``INVALID_JSON``.
    """

    kind = "AnswerError"

    def __init__(self, message: str, *, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


class InternalError(GsVideoReportError):
    """An exception the code did not expect, inside one task: that task fails with this
    one line (the traceback goes to the log file), the batch goes on."""

    kind = "InternalError"


def exit_code_of(kind: str | None) -> ExitCode:
    """The exit code of the error class stored as ``kind`` (a task's last error)."""
    pending: list[type[GsVideoReportError]] = [GsVideoReportError]
    while pending:
        cls = pending.pop()
        if cls.kind == kind:
            return cls.exit_code
        pending.extend(cls.__subclasses__())
    return ExitCode.PARTIAL
