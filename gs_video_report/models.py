"""Frozen value types that cross layers. No behaviour beyond small derived properties."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from pathlib import Path
from typing import Any


def mmss(seconds: float | int) -> str:
    """``MM:SS``, or ``H:MM:SS`` from one hour on."""
    total = max(0, int(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes:02d}:{secs:02d}"


class StopReason(StrEnum):
    """Why a run stopped before every task finished (stored as the batch's status)."""

    INTERRUPTED = "interrupted"  # Ctrl-C, SIGTERM, SIGHUP
    CANCELLED = "cancelled"  # `cancel`, also from another terminal
    QUOTA = "quota"  # every key's daily quota is used up
    BUDGET = "budget"  # --cost-limit
    AUTH = "auth"  # every key of the pool is disabled
    LEASE_LOST = "lease_lost"  # another process took the batch over
    OFFLINE = "offline"  # the API stayed unreachable for api.offline_wait


class BatchStatus(StrEnum):
    CREATED = "created"
    RUNNING = "running"
    DONE = "done"
    PARTIAL = "partial"  # finished; some videos failed or some inputs were rejected
    INTERRUPTED = "interrupted"
    CANCELLED = "cancelled"
    QUOTA = "quota"
    BUDGET = "budget"
    AUTH = "auth"
    LEASE_LOST = "lease_lost"
    OFFLINE = "offline"

    @property
    def final(self) -> bool:
        """Nothing is left to do without the user (a resumable stop is not final)."""
        return self in (BatchStatus.DONE, BatchStatus.PARTIAL, BatchStatus.CANCELLED)

    @classmethod
    def stopped(cls, reason: StopReason) -> BatchStatus:
        return cls(reason.value)


class TaskStage(StrEnum):
    PENDING = "pending"
    UPLOADING = "uploading"
    PROCESSING = "processing"
    GENERATING = "generating"
    QUEUED = "queued"  # uploaded, its request in (or waiting for) a Gemini batch job
    WRITING = "writing"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def in_flight(self) -> bool:
        return self in _IN_FLIGHT

    @property
    def finished(self) -> bool:
        return self in (TaskStage.DONE, TaskStage.FAILED, TaskStage.CANCELLED)


_IN_FLIGHT = frozenset(
    {TaskStage.UPLOADING, TaskStage.PROCESSING, TaskStage.GENERATING, TaskStage.WRITING}
)


class RunMode(StrEnum):
    """How a batch's generate requests go: one call each at standard price (live), the
    same calls on the Flex tier (half price, slower, best effort), or Gemini Batch Mode
    jobs (half price, answers within 24 h; ``resume`` collects them)."""

    LIVE = "live"
    FLEX = "flex"
    BATCH = "batch"


class SourceKind(StrEnum):
    FILE = "file"
    YOUTUBE = "youtube"


@dataclass(frozen=True)
class VideoSource:
    """What the user pointed at: a local file or a public YouTube video."""

    kind: SourceKind
    # For files the resolved absolute path; for YouTube the canonical watch URL.
    identity: str
    display_name: str
    path: Path | None = None
    youtube_id: str | None = None

    @property
    def is_youtube(self) -> bool:
        return self.kind is SourceKind.YOUTUBE


@dataclass(frozen=True)
class VideoInfo:
    """What the probe learned about a local video before anything was spent."""

    duration_s: float
    size_bytes: int
    mime_type: str
    width: int | None = None
    height: int | None = None
    has_audio: bool = False
    mtime_ns: int | None = None  # when probed: a later change means it is not this video


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    candidates_tokens: int = 0
    thoughts_tokens: int = 0
    cached_tokens: int = 0
    total_tokens: int = 0

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.prompt_tokens + other.prompt_tokens,
            self.candidates_tokens + other.candidates_tokens,
            self.thoughts_tokens + other.thoughts_tokens,
            self.cached_tokens + other.cached_tokens,
            self.total_tokens + other.total_tokens,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt": self.prompt_tokens,
            "candidates": self.candidates_tokens,
            "thoughts": self.thoughts_tokens,
            "cached": self.cached_tokens,
            "total": self.total_tokens,
        }


@dataclass(frozen=True)
class UploadedFile:
    name: str  # files/<id>
    uri: str
    mime_type: str
    state: str  # PROCESSING | ACTIVE | FAILED
    size_bytes: int | None = None
    expires_at: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class CallRecord:
    """One API call, as recorded for reports and the attempts table."""

    stage: str  # upload | poll | generate | delete
    model: str | None
    latency_s: float
    ok: bool
    usage: Usage | None = None
    finish_reason: str | None = None
    error_kind: str | None = None
    error_message: str | None = None
    note: str | None = None  # what was changed for this attempt, and why


@dataclass(frozen=True)
class Generation:
    """A validated structured answer."""

    data: dict[str, Any]
    usage: Usage
    finish_reason: str
    model: str
    model_version: str | None
    latency_s: float
    notes: tuple[str, ...] = ()  # what was adjusted to get it (the prompt's evolution)


@dataclass(frozen=True)
class GenerationSettings:
    """The knobs of one generate call, from the template and the user."""

    temperature: float | None = None
    max_output_tokens: int | None = None
    media_resolution: str | None = None  # low | medium | high
    fps: float | None = None
    thinking_level: str | None = None
    start_offset_s: float | None = None
    end_offset_s: float | None = None


class LessonFormat(StrEnum):
    """What a lesson is written as; every format comes from the answer in the sidecar."""

    MD = "md"
    HTML = "html"
    SRT = "srt"
    VTT = "vtt"


def parse_formats(text: str | list[str] | tuple[str, ...]) -> tuple[LessonFormat, ...]:
    """``"md,html"`` (or a list of names) to formats, in the order given, duplicates
    dropped; ``ValueError`` names an unknown one."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[LessonFormat] = []
    for name in (n.strip().lower() for n in names):
        if not name:
            continue
        try:
            fmt = LessonFormat(name)
        except ValueError:
            known = ", ".join(f.value for f in LessonFormat)
            raise ValueError(f"unknown format '{name}' (formats: {known})") from None
        if fmt not in out:
            out.append(fmt)
    if not out:
        raise ValueError("no format given (formats: md, html, srt, vtt)")
    return tuple(out)


@dataclass(frozen=True)
class LessonFiles:
    markdown: Path
    answer_json: Path

    def path(self, fmt: LessonFormat) -> Path:
        """The file of ``fmt``: beside the Markdown, with the same stem."""
        return self.markdown.with_suffix(f".{fmt.value}")


@dataclass(frozen=True)
class LessonResult:
    source: VideoSource
    files: LessonFiles
    generation: Generation
    calls: tuple[CallRecord, ...] = field(default_factory=tuple)
