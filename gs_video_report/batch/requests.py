"""What callers hand the engine: what to plan (``PlanRequest``), how to run it
(``RunOptions``) and what to change on a resume (``RunChanges``), and a running batch's
remote control (``RunControl``). Light on purpose: front-ends import these at start-up,
before (and often without) running anything, so nothing here loads the SDK or PyAV."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gs_video_report.batch.inputs import Inputs, read_file_list, read_url_list, scan_folder
from gs_video_report.errors import UsageError
from gs_video_report.models import LessonFormat, StopReason, parse_formats

if TYPE_CHECKING:
    from gs_video_report.batch.planner import Plan
    from gs_video_report.batch.workers import WorkerPool


def new_batch_id(now: datetime | None = None) -> str:
    now = now or datetime.now(UTC)
    return f"batch_{now:%Y%m%d_%H%M%S}_{secrets.token_hex(4)}"


@dataclass(frozen=True)
class RunOptions:
    parallel: int = 4
    max_uploads: int = 2
    max_retries: int = 3
    simulated: bool = False
    timeout_s: float | None = None  # per video generate call
    cost_limit_usd: float | None = None  # for the whole batch, earlier runs included
    reports: bool = True  # OUTPUT/_reports/BATCH_ID/ (``main`` writes none)
    reuse: bool = True  # reuse lessons already paid for (False: --force)
    mode: str = "live"  # RunMode: live | flex | batch (stored with the batch)
    # what each lesson is written as; stored with the batch (a resume keeps it) and no
    # part of the done key: every format comes from the sidecar
    formats: tuple[LessonFormat, ...] = (LessonFormat.MD,)

    def __post_init__(self) -> None:
        # read back from the batch's JSON snapshot as a list of names
        object.__setattr__(self, "formats", parse_formats(self.formats))


@dataclass(frozen=True)
class PlanRequest:
    """What to run: exactly one of ``input_dir``, ``file_list``, ``url_list``."""

    output: Path
    input_dir: Path | None = None
    file_list: Path | None = None
    url_list: Path | None = None
    template: str | None = None
    params: Mapping[str, str] | None = None
    # -t A -t B: each video without its own template runs with each (one upload shared)
    templates: tuple[str, ...] = ()
    force: bool = False
    skip_existing: bool = True

    @property
    def source_desc(self) -> str:
        for flag, value in (
            ("--input-dir", self.input_dir),
            ("--file-list", self.file_list),
            ("--url-list", self.url_list),
        ):
            if value is not None:
                return f"{flag} {value}"
        return ""


@dataclass(frozen=True)
class PlannedBatch:
    request: PlanRequest
    output: Path  # absolute: skip and resume never depend on the working directory
    plan: Plan


@dataclass(frozen=True)
class RunChanges:
    """Options given to ``resume``/``retry_failed``; ``None`` keeps the batch's own."""

    parallel: int | None = None
    max_uploads: int | None = None
    max_retries: int | None = None
    timeout_s: float | None = None
    cost_limit_usd: float | None = None

    @property
    def given(self) -> dict[str, Any]:
        """The options this change sets (the rest stay the batch's own)."""
        values = {f.name: getattr(self, f.name) for f in fields(self)}
        return {k: v for k, v in values.items() if v is not None}

    def apply(self, base: RunOptions) -> RunOptions:
        return replace(base, **self.given)


class RunControl:
    """A running batch's remote control (signal handlers, a dashboard button). A stop
    asked for before the pool exists is applied when it starts."""

    def __init__(self) -> None:
        self._pool: WorkerPool | None = None
        self._pending: tuple[StopReason, str] | None = None

    def attach(self, pool: WorkerPool) -> None:
        self._pool = pool
        if self._pending is not None:
            pool.request_stop(*self._pending)

    @property
    def running(self) -> bool:
        return self._pool is not None

    def request_stop(self, reason: StopReason, message: str) -> None:
        """No new work; the calls in flight finish and are saved."""
        if self._pool is not None:
            self._pool.request_stop(reason, message)
        else:
            self._pending = self._pending or (reason, message)


def read_inputs(request: PlanRequest, output: Path) -> Inputs:
    given = [p for p in (request.input_dir, request.file_list, request.url_list) if p]
    if len(given) != 1:
        raise UsageError("give exactly one of --input-dir, --file-list, --url-list")
    if request.input_dir is not None:
        return scan_folder(request.input_dir, skip=output)
    if request.file_list is not None:
        return read_file_list(request.file_list)
    assert request.url_list is not None
    return read_url_list(request.url_list)


class SyncEngine:
    """``engine.sync.status(batch_id)``: the coroutine method, run to completion."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._engine, name)

        def run(*args: Any, **kwargs: Any) -> Any:
            return asyncio.run(method(*args, **kwargs))

        return run
