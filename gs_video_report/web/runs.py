"""The batches this server process runs, and the live pages' wake-ups.

A batch started, resumed or retried from the page runs here, in the server's event loop,
through the engine (``Engine.start``/``resume``) with a ``RunControl`` for its cancel
button and a reporter that records what each video is doing and wakes the pages that
watch it. Nothing here is the state of record: that is the database, so a second tab or
a restarted server shows the same batches (one that ran here when the server stopped is
``interrupted``, and its Resume button carries on).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

from gs_video_report.batch.api import (
    BatchOutcome,
    BatchView,
    Engine,
    PlanRequest,
    RunControl,
    RunOptions,
    read_stored_run,
)
from gs_video_report.batch.events import Event, TaskActivity, TaskDone, TaskFailed, TaskRequeued
from gs_video_report.errors import GsVideoReportError, UsageError
from gs_video_report.models import LessonFormat, StopReason, TaskStage

logger = logging.getLogger(__name__)

STOP_WAIT_S = 10.0  # at shutdown, for the calls in flight
RENDER_FAILED = "Render HTML pages failed for "


class Live:
    """One wake-up per batch: an event the engine emitted, or a button pressed. Each
    change bumps the batch's version, so a change made while a stream was busy reading
    the database is not missed."""

    def __init__(self) -> None:
        self._waiters: dict[str, asyncio.Event] = {}
        self._versions: dict[str, int] = {}
        self.activity: dict[str, dict[int, str]] = {}  # batch -> task id -> what it does

    def version(self, batch_id: str) -> int:
        return self._versions.get(batch_id, 0)

    def changed(self, batch_id: str) -> None:
        self._versions[batch_id] = self.version(batch_id) + 1
        waiter = self._waiters.pop(batch_id, None)
        if waiter is not None:
            waiter.set()

    async def wait(self, batch_id: str, seen: int, seconds: float) -> None:
        """Until the batch changed since version ``seen``, or ``seconds`` (a batch another
        process runs changes only in the database)."""
        if self.version(batch_id) != seen:
            return
        waiter = self._waiters.setdefault(batch_id, asyncio.Event())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await waiter.wait()


class LiveReporter:
    """The engine's events for one batch, kept as each video's current activity."""

    def __init__(self, live: Live, batch_id: str) -> None:
        self.live = live
        self.batch_id = batch_id

    def emit(self, event: Event) -> None:
        doing = self.live.activity.setdefault(self.batch_id, {})
        if isinstance(event, TaskActivity):
            doing[event.task.id] = event.activity.value
        elif isinstance(event, TaskDone | TaskFailed | TaskRequeued):
            doing.pop(event.task.id, None)
        self.live.changed(self.batch_id)


@dataclass
class Run:
    task: asyncio.Task[BatchOutcome]
    control: RunControl
    started_at: float
    done_before: int  # videos finished when this run started (for the ETA)
    stopping: bool = False  # its Cancel was pressed: the calls in flight are finishing


@dataclass
class Runs:
    engine: Engine
    simulated: bool
    parallel: int = 4
    live: Live = field(default_factory=Live)
    running: dict[str, Run] = field(default_factory=dict)
    errors: dict[str, str] = field(default_factory=dict)  # the last run's error, one line
    # the batch's state when its error was first shown: once it changes (resumed and
    # finished in a terminal), the message is stale and goes
    _error_state: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def error_for(self, view: BatchView) -> str:
        """The error of the batch's last run here, while the batch is as it left it."""
        message = self.errors.get(view.id)
        if message is None:
            return ""
        state = (view.status, view.finished_at, tuple(sorted(view.counts.items())))
        if self._error_state.setdefault(view.id, state) != state:
            self.errors.pop(view.id, None)
            self._error_state.pop(view.id, None)
            return ""
        return message

    async def start(self, request: PlanRequest, parallel: int | None = None) -> str:
        """Plan (every local check; a bad folder or template raises here, nothing is
        recorded), record the batch, and run it in the background."""
        planned = await self.engine.plan(request)
        formats = self.engine.settings.output.formats
        options = RunOptions(
            parallel=parallel or self.parallel,
            max_retries=self.engine.settings.api.max_retries,
            simulated=self.simulated,
            # the page opens a lesson as its HTML render
            formats=tuple(dict.fromkeys((*formats, LessonFormat.HTML))),
        )
        batch_id = await self.engine.record(planned, options)
        await self.resume(batch_id)
        return batch_id

    async def resume(self, batch_id: str) -> bool:
        """Carry on with the batch here; False when it runs here already."""
        if batch_id in self.running:
            return False
        # one that another process runs is refused by the engine's lease (the page shows
        # why); one whose holder was killed is taken over at once, as by ``resume``
        view = await self.engine.status(batch_id)
        stored = await read_stored_run(batch_id, self.engine.db_path.parent)
        if stored.options.simulated != self.simulated:
            ran = "the simulator" if stored.options.simulated else "the real API"
            raise UsageError(f"batch {batch_id} ran against {ran}; this server cannot resume it")
        control = RunControl()
        done = view.counts.get(TaskStage.DONE, 0) + view.counts.get(TaskStage.FAILED, 0)
        coro = self.engine.resume(
            batch_id, reporter=LiveReporter(self.live, batch_id), control=control
        )
        self._launch(batch_id, coro, control, done)
        return True

    async def retry(self, batch_id: str, task_id: int) -> bool:
        """One failed video back in the queue, and the batch run here if it is idle."""
        queued = await self.engine.retry_task(batch_id, task_id)
        if queued and batch_id not in self.running:
            await self.resume(batch_id)
        self.live.changed(batch_id)
        return queued

    async def render_html(self, batch_id: str) -> int:
        """HTML pages for a batch's lessons from their sidecars (a batch run with
        Markdown only), with no API call; how many were written."""
        result = await self.engine.render(batch_id, formats=[LessonFormat.HTML])
        failed = result.failed
        if failed:  # one line on the page, naming the first lesson that failed
            first = failed[0]
            more = f" (and {len(failed) - 1} more)" if len(failed) > 1 else ""
            self.errors[batch_id] = self.redact(
                f"{RENDER_FAILED}{len(failed)} of {len(result.lessons)} lessons:"
                f" {first.sidecar.stem}: {first.error}{more}"
            )
            self._error_state.pop(batch_id, None)
        elif self.errors.get(batch_id, "").startswith(RENDER_FAILED):
            self.errors.pop(batch_id)  # rendered now: the last attempt's message is stale
        self.live.changed(batch_id)
        return len(result.lessons) - len(failed)

    async def cancel(self, batch_id: str) -> str:
        run = self.running.get(batch_id)
        if run is not None:
            run.control.request_stop(StopReason.CANCELLED, "cancelled from the dashboard")
            run.stopping = True  # the page says so at once, not when the last call ends
            self.live.changed(batch_id)
            return "stopping"
        cancelled = await self.engine.cancel(batch_id)
        self.live.changed(batch_id)
        return cancelled.result.value

    async def close(self) -> None:
        """Server shutdown: every batch running here stops, resumable."""
        for run in self.running.values():
            run.control.request_stop(StopReason.INTERRUPTED, "the dashboard stopped")
        tasks = [run.task for run in self.running.values()]
        if not tasks:
            return
        # the calls in flight may finish and be saved; a slow one is not waited for
        # (cancelled, the batch is left interrupted and its upload kept for the resume)
        _, slow = await asyncio.wait(tasks, timeout=STOP_WAIT_S)
        for task in slow:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _launch(
        self,
        batch_id: str,
        coro: Coroutine[Any, Any, BatchOutcome],
        control: RunControl,
        done_before: int,
    ) -> Run:
        self.errors.pop(batch_id, None)
        self._error_state.pop(batch_id, None)
        task = asyncio.create_task(coro, name=f"batch {batch_id}")
        run = Run(task, control, self.engine.clock.time(), done_before)
        self.running[batch_id] = run
        task.add_done_callback(lambda t: self._finished(batch_id, t))
        return run

    def _finished(self, batch_id: str, task: asyncio.Task[BatchOutcome]) -> None:
        self.running.pop(batch_id, None)
        self.live.activity.pop(batch_id, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            if isinstance(exc, GsVideoReportError):
                self.errors[batch_id] = self.redact(str(exc))
            else:
                logger.error("batch %s: internal error", batch_id, exc_info=exc)
                self.errors[batch_id] = self.redact(f"internal error: {type(exc).__name__}: {exc}")
        self.live.changed(batch_id)

    def redact(self, text: str) -> str:
        """No key in a message the page shows (an API error's text may quote one)."""
        for key in self.engine.keys:
            secret = key.key.reveal()
            if secret:
                text = text.replace(secret, "[key]")
        return text
