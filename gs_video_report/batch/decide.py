"""What a failure means: one pure function, ``decide``, and the outcomes it returns.

Every failure of a task — in a batch or in ``main`` — goes through ``decide``; the worker
applies what it returns and nothing else retries. The outcomes:

- ``RetryAt``: try again at a time, using up one of the task's tries (``reupload``: the
  uploaded file is unusable, upload again first);
- ``Requeue``: back in the queue without using a try (a stop, a moved key);
- ``PauseBucket``: a per-minute 429 — every call of the bucket waits, the task is put
  back for when the pause ends, no try used;
- ``ParkBucket``: a per-day 429 — the bucket takes no more calls before the reset; the
  batch stops when no other key can go on (``stop``);
- ``Adapt``: the answer came back unusable in a fixable way — the next call changes
  (``batch.adapt``);
- ``Offline``: the connection failed — back in the queue without using a try while the
  pool finds the network down (``batch.network``); ``fallback`` (a retry that uses a try,
  or a failure) when a probe gets through at once: then the failure was the call's own;
- ``StopBatch``: nothing more starts (the task goes back to the queue);
- ``Fail``: the task ends failed with a one-line reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from gs_video_report.batch.adapt import Adjustments, adapt
from gs_video_report.batch.cost import BudgetExceeded
from gs_video_report.batch.limiter import QuotaParked
from gs_video_report.errors import (
    AnswerError,
    ApiError,
    ApiTimeoutError,
    AuthError,
    FileAccessError,
    GsVideoReportError,
    NetworkError,
    QuotaScope,
    RateLimitError,
)
from gs_video_report.models import GenerationSettings, StopReason
from gs_video_report.retry import RetryPolicy
from gs_video_report.services.gemini.keypool import NoUsableKey, daily_reset_at

MAX_TIMEOUT_GROWTH = 3.0  # a timed-out call gets up to 3x the timeout on its later tries


@dataclass(frozen=True)
class RetryAt:
    at: float
    delay_s: float
    reupload: bool = False


@dataclass(frozen=True)
class Requeue:
    reason: str
    reupload: bool = False


@dataclass(frozen=True)
class PauseBucket:
    retry_after: float | None


@dataclass(frozen=True)
class StopBatch:
    reason: StopReason
    message: str


@dataclass(frozen=True)
class ParkBucket:
    resets_at: float
    stop: StopBatch | None


@dataclass(frozen=True)
class Adapt:
    adjustments: Adjustments


@dataclass(frozen=True)
class Fail:
    kind: str
    message: str


@dataclass(frozen=True)
class Offline:
    fallback: RetryAt | Fail
    reason: str


Outcome = RetryAt | Requeue | PauseBucket | ParkBucket | Adapt | StopBatch | Fail | Offline


@dataclass(frozen=True)
class Situation:
    """What the decision may depend on besides the error."""

    now: float
    attempts: int  # tries the task has used so far
    model: str
    keys_usable: bool = True  # after the failing key's health was updated
    # For an answer: what was adjusted already, and the template's own settings.
    adjustments: Adjustments | None = None
    base: GenerationSettings | None = None


def decide(error: BaseException, situation: Situation, policy: RetryPolicy) -> Outcome:
    """The one place that says what ``error`` means for the task."""
    if isinstance(error, BudgetExceeded):
        return StopBatch(StopReason.BUDGET, str(error))
    if isinstance(error, NoUsableKey):
        return StopBatch(StopReason.AUTH if error.auth else StopReason.QUOTA, str(error))
    if isinstance(error, RateLimitError) and error.quota is not QuotaScope.PER_DAY:
        return PauseBucket(error.retry_after)
    if isinstance(error, RateLimitError | QuotaParked):
        resets = daily_reset_at(situation.now)
        stop = None
        if not situation.keys_usable:
            when = datetime.fromtimestamp(resets).astimezone()
            stop = StopBatch(
                StopReason.QUOTA,
                f"the daily request quota for {situation.model} is used up on every key; it"
                f" resets at midnight Pacific ({when:%Y-%m-%d %H:%M %Z} here) - resume after"
                " that",
            )
        return ParkBucket(resets, stop)
    if isinstance(error, AuthError):
        if not situation.keys_usable:
            return StopBatch(StopReason.AUTH, str(error))
        return Requeue(f"{error}; moving to another key")
    if isinstance(error, AnswerError) and situation.adjustments is not None:
        changed = adapt(error, situation.adjustments, situation.base or GenerationSettings())
        if changed is not None:
            return Adapt(changed)
    if isinstance(error, NetworkError):
        return Offline(_retry_or_fail(error, situation, policy), one_line(error))
    return _retry_or_fail(error, situation, policy)


def _retry_or_fail(
    error: BaseException, situation: Situation, policy: RetryPolicy
) -> RetryAt | Fail:
    if isinstance(error, ApiError):
        delay = policy.delay(error, situation.attempts + 1)
        if delay is not None:
            reupload = isinstance(error, FileAccessError)
            return RetryAt(situation.now + delay, delay, reupload=reupload)
    kind = error.kind if isinstance(error, GsVideoReportError) else "InternalError"
    return Fail(kind, one_line(error))


def one_line(error: BaseException) -> str:
    """An error as one line for the task table and the display."""
    text = " ".join(str(error).split())
    if not isinstance(error, GsVideoReportError):
        text = f"internal error: {type(error).__name__}: {text}"
    return text[:500]


def call_timeout(base_s: float, attempts: int, last_error_kind: str | None) -> float:
    """A video whose generate call timed out before may just be long: each later try
    gets 1.5x the timeout, up to ``MAX_TIMEOUT_GROWTH`` times it."""
    if last_error_kind != ApiTimeoutError.kind:
        return base_s
    return base_s * min(MAX_TIMEOUT_GROWTH, 1.5**attempts)
