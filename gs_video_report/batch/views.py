"""Typed results of the engine's API (``batch.api``): what a front-end shows, with
nothing of the storage rows or the services behind them."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from gs_video_report.batch.requests import RunOptions
from gs_video_report.errors import ExitCode
from gs_video_report.models import BatchStatus, StopReason
from gs_video_report.storage.checkpoint import TaskRow, TaskStage

_EXIT_BY_STOP = {
    StopReason.QUOTA: ExitCode.QUOTA,
    StopReason.BUDGET: ExitCode.QUOTA,
    StopReason.AUTH: ExitCode.AUTH,
    StopReason.INTERRUPTED: ExitCode.INTERRUPTED,
    StopReason.CANCELLED: ExitCode.INTERRUPTED,
    StopReason.LEASE_LOST: ExitCode.INTERRUPTED,
    StopReason.OFFLINE: ExitCode.OFFLINE,
}


@dataclass
class BatchOutcome:
    """How a run ended (``run_batch``, ``Engine.start``/``resume``)."""

    batch_id: str
    counts: dict[TaskStage, int] = field(default_factory=dict)
    stop_reason: StopReason | None = None
    stop_message: str | None = None
    report_dir: Path | None = None
    spent_usd: float = 0.0
    rest_usd: float | None = None  # estimate for what is left (None: unknown)
    rejected: int = 0  # inputs the plan turned away

    @property
    def partial(self) -> bool:
        """The one rule: a video failed, or an input was rejected."""
        return bool(self.counts.get(TaskStage.FAILED) or self.rejected)

    @property
    def status(self) -> BatchStatus:
        if self.stop_reason is not None:
            return BatchStatus.stopped(self.stop_reason)
        return BatchStatus.PARTIAL if self.partial else BatchStatus.DONE

    @property
    def exit_code(self) -> ExitCode:
        if self.stop_reason is not None:
            return _EXIT_BY_STOP[self.stop_reason]
        return ExitCode.PARTIAL if self.partial else ExitCode.OK


@dataclass(frozen=True)
class TaskStatus:
    id: int
    video: str
    source: str
    template: str
    stage: TaskStage
    attempts: int
    last_error_kind: str | None
    last_error: str | None
    tokens: int | None
    cost_usd: float | None
    output: str
    duration_s: float | None
    cached_tokens: int | None = None  # of its input, billed at the cached rate
    saving_usd: float | None = None  # what context caching saved it

    @classmethod
    def of(cls, row: TaskRow) -> TaskStatus:
        return cls(
            row.id,
            row.display_name,
            row.source,
            row.template,
            row.stage,
            row.attempts,
            row.last_error_kind,
            row.last_error,
            row.total_tokens,
            row.cost_usd,
            row.output_md,
            row.duration_s,
            row.cached_tokens,
            row.saving_usd,
        )


@dataclass(frozen=True)
class Rejected:
    input: str  # where it came from: "list.txt:4", "lectures/"
    reason: str


@dataclass(frozen=True)
class BatchView:
    id: str
    status: BatchStatus
    source: str
    output_dir: str
    created_at: float
    finished_at: float | None
    counts: dict[TaskStage, int]
    running_pid: int | None  # the live process holding the batch, if any
    settings: dict[str, Any] = field(default_factory=dict)
    tasks: list[TaskStatus] = field(default_factory=list)  # filled by ``status`` only
    # --mode batch, by ``status``: each Gemini Batch job (display_name, name, state,
    # requests, submitted_at, ended_at)
    jobs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def rejected(self) -> list[Rejected]:
        """Inputs turned away when the batch was planned, with the reason."""
        return [Rejected(r["input"], r["reason"]) for r in self.settings.get("rejected", [])]

    @property
    def skipped(self) -> int:
        """Videos the plan skipped (already done)."""
        return int(self.settings.get("skipped", 0))

    @property
    def input_dir(self) -> Path | None:
        """The folder a ``--input-dir`` batch read (absolute), if it was one."""
        folder = self.settings.get("input_dir")
        return Path(folder) if folder else None

    @property
    def is_single(self) -> bool:
        """A ``main VIDEO`` run (one video, resumable like any batch)."""
        return bool(self.settings.get("single"))

    @classmethod
    def of(
        cls,
        row: dict[str, Any],
        counts: dict[TaskStage, int],
        now: float,
        tasks: list[TaskRow] | None = None,
        holder_dead: Callable[[str], bool] = lambda owner: False,
    ) -> BatchView:
        owner = row.get("lease_owner") or ""
        live = row["lease_until"] is not None and row["lease_until"] > now
        live = live and not holder_dead(owner)
        status = BatchStatus(row["status"])
        if status is BatchStatus.RUNNING and not live:
            # its process is gone (killed, a closed terminal): what the next resume sees
            status = BatchStatus.INTERRUPTED
        return cls(
            row["id"],
            status,
            row["source_desc"],
            row["output_dir"],
            row["created_at"],
            row["finished_at"],
            counts,
            row["lease_pid"] if live else None,
            json.loads(row["settings_json"]),
            [TaskStatus.of(t) for t in tasks or []],
        )


class CancelResult(StrEnum):
    CANCELLED = "cancelled"  # it was idle: its pending videos are cancelled (resumable)
    REQUESTED = "requested"  # another process runs it and stops within seconds
    ALREADY_FINISHED = "already finished"  # nothing changed


@dataclass(frozen=True)
class Cancelled:
    result: CancelResult
    status: BatchStatus
    pid: int | None = None
    jobs_left: int = 0  # Batch Mode jobs left running at Google (no key given for them)


@dataclass(frozen=True)
class StoredRun:
    """What a batch was started with, for ``resume`` (never a key)."""

    options: RunOptions
    config: Path | None
    progress_file: Path | None
    model: str
    template_files: tuple[Path, ...]


@dataclass(frozen=True)
class OneResult:
    """``run_one``: one video's lesson (or why there is none)."""

    outcome: BatchOutcome | None  # None: skipped, already done
    task: TaskStatus | None
    markdown: Path
    answer_json: Path
    model: str
    skipped_reason: str | None = None

    @property
    def done(self) -> bool:
        return self.skipped_reason is not None or (
            self.task is not None and self.task.stage is TaskStage.DONE
        )


@dataclass(frozen=True)
class KeyView:
    """A key of the pool, by fingerprint (never the key)."""

    fingerprint: str
    label: str
    project: str
    source: str
    state: str
    usable: bool
    cooldown_until: float | None
    successes: int
    failures: dict[str, int]
    last_error: str | None


@dataclass(frozen=True)
class CostSummary:
    """What was billed, per batch and per UTC day of the calls (None: a model without a
    known price was used)."""

    by_batch: dict[str, float | None]
    by_day: dict[str, float | None]


@dataclass(frozen=True)
class PresetView:
    name: str
    template: str | None
    params: dict[str, str]
    origin: str  # "config" (read-only here) or "saved" (the state database)


@dataclass(frozen=True)
class RenderedLessonView:
    sidecar: Path
    written: tuple[Path, ...]
    notes: tuple[str, ...] = ()
    error: str | None = None  # one line: why this lesson was not rendered


@dataclass(frozen=True)
class RenderResult:
    lessons: tuple[RenderedLessonView, ...]
    output: Path  # where the lessons went
    not_done: int = 0  # a batch's tasks with no lesson yet (nothing to render)

    @property
    def failed(self) -> tuple[RenderedLessonView, ...]:
        return tuple(lesson for lesson in self.lessons if lesson.error is not None)

    @property
    def exit_code(self) -> ExitCode:
        return ExitCode.PARTIAL if self.failed else ExitCode.OK
