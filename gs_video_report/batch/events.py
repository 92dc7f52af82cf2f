"""What the engine tells its front-ends while it runs: typed events to a ``Reporter``.

The engine never formats progress for people. It emits these values; the Rich display,
the plain log lines and the ``--progress-file`` snapshot (``cli/progress.py``) — and
next the dashboard — are reporters. Events carry a small ``TaskView``, not the storage
row, so a reporter needs nothing from storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from gs_video_report.models import CallRecord, StopReason


@dataclass(frozen=True)
class TaskView:
    id: int
    seq: int
    display_name: str
    duration_s: float | None


class Activity(StrEnum):
    """What a claimed task is doing (or waiting for) right now."""

    WAITING_FOR_UPLOAD = "waiting to upload"
    UPLOADING = "uploading"
    PROCESSING = "processing"
    WAITING_FOR_GENERATE = "waiting to generate"
    GENERATING = "generating"
    WRITING = "writing"
    WAITING_FOR_KEY = "waiting for a key"
    WAITING_FOR_BUDGET = "waiting to fit the cost limit"
    IN_BATCH_JOB = "in a Gemini batch job"  # --mode batch: uploaded, its request queued

    @property
    def queued(self) -> bool:
        """Waiting for a slot (shown as a count, not a line per video)."""
        return self in (
            Activity.IN_BATCH_JOB,
            Activity.WAITING_FOR_UPLOAD,
            Activity.WAITING_FOR_GENERATE,
            Activity.WAITING_FOR_KEY,
            Activity.WAITING_FOR_BUDGET,
        )


@dataclass(frozen=True)
class TaskActivity:
    task: TaskView
    activity: Activity
    fraction: float | None = None  # of an upload, when known


@dataclass(frozen=True)
class TaskRequeued:
    """Back in the queue without using a try: a stop, a quota pause (``until``), a key
    that is gone."""

    task: TaskView
    until: float | None
    reason: str


@dataclass(frozen=True)
class RetryScheduled:
    task: TaskView
    at: float
    delay_s: float
    error: str


@dataclass(frozen=True)
class TaskDone:
    task: TaskView
    cost_usd: float | None
    same_as: str | None = None  # another video's lesson with the same content


@dataclass(frozen=True)
class TaskFailed:
    task: TaskView
    kind: str
    reason: str


@dataclass(frozen=True)
class CallFinished:
    task: TaskView
    call: CallRecord


@dataclass(frozen=True)
class BucketPaused:
    """A per-minute 429: every call of the bucket waits until ``until``."""

    bucket: str
    until: float


@dataclass(frozen=True)
class BucketParked:
    """A per-day 429: nothing more is scheduled on the bucket before ``resets_at``."""

    bucket: str
    resets_at: float


@dataclass(frozen=True)
class BudgetChanged:
    spent_usd: float
    in_flight_usd: float
    limit_usd: float | None


@dataclass(frozen=True)
class NetworkLost:
    """Calls fail at the connection level: no upload or generate call starts until a probe
    gets through. Emitted before each wait: the next probe is at ``retry_at`` (in
    ``delay_s``); ``since`` is when the outage was noticed, ``reason`` its first error."""

    since: float
    retry_at: float
    delay_s: float
    reason: str


@dataclass(frozen=True)
class NetworkBack:
    """A probe got through after ``after_s`` seconds offline; the workers go on."""

    after_s: float


@dataclass(frozen=True)
class JobStatus:
    """A Gemini Batch Mode job (``--mode batch``): its state as last polled, how many
    requests it carries and how long it has waited since it was submitted."""

    display_name: str
    name: str
    state: str
    waited_s: float
    requests: int = 0


@dataclass(frozen=True)
class BatchStopping:
    """No new work starts; what is in flight finishes (or is put back)."""

    reason: StopReason
    message: str


Event = (
    TaskActivity
    | TaskRequeued
    | RetryScheduled
    | TaskDone
    | TaskFailed
    | CallFinished
    | BucketPaused
    | BucketParked
    | BudgetChanged
    | NetworkLost
    | NetworkBack
    | JobStatus
    | BatchStopping
)


class Reporter(Protocol):
    def emit(self, event: Event) -> None: ...


class NullReporter:
    def emit(self, event: Event) -> None:
        pass


class Recorder:
    """Keeps every event (tests, and scripts that want the history)."""

    def __init__(self) -> None:
        self.events: list[Event] = []

    def emit(self, event: Event) -> None:
        self.events.append(event)
