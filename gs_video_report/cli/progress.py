"""ProgressMonitor: what the batch is doing, and how long it will take.

On a terminal: one overall bar measured in *video seconds* (so the ETA comes from the
video time left and the measured processing rate, not from task counts), with done/
failed/retrying/waiting counts, video hours done of the total and throughput, and a
line per video being uploaded, processed or generated with its stage and elapsed time
(videos queued ahead, waiting for an upload or a generate slot, are a count).
Elsewhere (CI, pipes, ``-q``): a line per finished or failed video and a status line at
a steady pace.
``--progress-file`` keeps a JSON snapshot of the same figures current, written
atomically, for other tools.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn

from gs_video_report.batch import events as ev
from gs_video_report.batch.api import atomic_write_text
from gs_video_report.cli.text import literal
from gs_video_report.models import mmss

PLAIN_STATUS_EVERY_S = 30.0
PROGRESS_FILE_EVERY_S = 1.0


@dataclass
class _InFlight:
    task: ev.TaskView
    stage: str
    fraction: float | None
    since: float
    line: TaskID | None = None


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else mmss(seconds)


class ProgressMonitor:
    def __init__(
        self,
        console: Console,
        *,
        batch_id: str,
        total_tasks: int,
        total_video_s: float,
        live: bool,
        progress_file: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.console = console
        self.batch_id = batch_id
        self.total_tasks = total_tasks
        self.total_video_s = total_video_s
        self.live = live
        self.progress_file = progress_file
        self.clock = clock
        self.done = 0
        self.failed = 0
        self.video_done_s = 0.0
        self.retrying: set[int] = set()
        self.waiting: set[int] = set()
        self.queued: set[int] = set()  # claimed, waiting for an upload or generate slot
        self.in_flight: dict[int, _InFlight] = {}
        self.state = "running"
        self._started = clock()
        self._last_plain = self._started
        self._last_file = float("-inf")
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            console=console,
            transient=False,
            disable=not live,
        )
        self._overall = self._progress.add_task("batch", total=max(1.0, total_video_s), detail="")

    def __enter__(self) -> ProgressMonitor:
        self._progress.start()
        self._refresh(force_file=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish("stopped" if exc[0] is not None else self.state)
        self._progress.stop()

    # -- figures -----------------------------------------------------------------
    @property
    def rate(self) -> float | None:
        """Video seconds processed per wall second so far (None until a video finished)."""
        elapsed = self.clock() - self._started
        if self.video_done_s <= 0 or elapsed <= 0:
            return None
        return self.video_done_s / elapsed

    @property
    def eta_s(self) -> float | None:
        rate = self.rate
        if rate is None:
            return None
        return max(0.0, self.total_video_s - self.video_done_s) / rate

    def snapshot(self) -> dict[str, Any]:
        now = self.clock()
        return {
            "batch_id": self.batch_id,
            "state": self.state,
            "updated_at": time.time(),
            "elapsed_s": round(now - self._started, 1),
            "videos": {
                "total": self.total_tasks,
                "done": self.done,
                "failed": self.failed,
                "retrying": len(self.retrying),
                "waiting_for_quota": len(self.waiting),
                "queued": len(self.queued),
                "in_flight": len(self.in_flight),
            },
            "video_seconds": {
                "total": round(self.total_video_s, 1),
                "done": round(self.video_done_s, 1),
            },
            "rate_video_s_per_s": round(self.rate, 3) if self.rate else None,
            "eta_s": round(self.eta_s) if self.eta_s is not None else None,
            "in_flight": [
                {
                    "video": f.task.display_name,
                    "stage": f.stage,
                    "fraction": round(f.fraction, 3) if f.fraction is not None else None,
                    "elapsed_s": round(now - f.since, 1),
                }
                for f in self.in_flight.values()
            ],
        }

    def status_line(self) -> str:
        rate = self.rate
        throughput = f" · {rate:.1f}× real time" if rate else ""
        eta = f" · ETA {mmss(self.eta_s)}" if self.eta_s is not None else ""
        queued = f" · {len(self.queued)} queued" if self.queued else ""
        return (
            f"{self.done}/{self.total_tasks} done · {self.failed} failed · "
            f"{len(self.retrying)} retrying · {len(self.waiting)} waiting for quota · "
            f"{_hours(self.video_done_s)} of {_hours(self.total_video_s)} video"
            f"{queued}{throughput}{eta}"
        )

    # -- events ------------------------------------------------------------------
    def emit(self, event: ev.Event) -> None:
        """The engine's events (``batch.events``); the display is refreshed after each."""
        match event:
            case ev.TaskDone(task=task):
                self._finish_task(task, "done")
            case ev.TaskFailed(task=task):
                self._finish_task(task, "failed")
            case ev.TaskRequeued(task=task, until=until):
                self._settle(task)
                if until is not None:  # a quota pause
                    self.waiting.add(task.id)
            case ev.RetryScheduled(task=task):
                self._settle(task)
                self.retrying.add(task.id)
            case ev.TaskActivity(task=task, activity=activity, fraction=fraction):
                self._settle(task, drop=activity.queued)
                if activity.queued:
                    self.queued.add(task.id)
                else:
                    self._show(task, activity.value, fraction)
            case ev.BatchStopping(message=message) if self.live:
                self.state = f"stopping: {message}"
            case _:
                return  # calls, buckets, budget: not shown line by line
        self._refresh()

    def _settle(self, task: ev.TaskView, *, drop: bool = True) -> None:
        """The task moved on: it is no longer queued, retrying or waiting (until told);
        ``drop``: nor shown as a line."""
        self.queued.discard(task.id)
        self.retrying.discard(task.id)
        self.waiting.discard(task.id)
        if drop:
            self._drop(task)

    def tick(self) -> None:
        """Called on a timer: elapsed times and the steady status line move on their own."""
        self._refresh()

    def finish(self, state: str) -> None:
        self.state = state
        self._refresh(force_file=True)

    def _show(self, task: ev.TaskView, stage: str, fraction: float | None) -> None:
        entry = self.in_flight.get(task.id)
        if entry is None:
            entry = self.in_flight[task.id] = _InFlight(task, stage, fraction, self.clock())
        entry.stage, entry.fraction = stage, fraction
        if not self.live:
            return
        text = f"{stage} {fraction:.0%}" if fraction is not None else stage
        if entry.line is None:
            entry.line = self._progress.add_task(
                f"  {task.display_name[:40]}", total=None, detail=text
            )
        else:
            self._progress.update(entry.line, detail=text)

    def _drop(self, task: ev.TaskView) -> None:
        entry = self.in_flight.pop(task.id, None)
        if entry is not None and entry.line is not None:
            self._progress.remove_task(entry.line)

    def _finish_task(self, task: ev.TaskView, stage: str) -> None:
        self._settle(task)
        if stage == "done":
            self.done += 1
        else:
            self.failed += 1
        self.video_done_s += task.duration_s or 0.0
        self._progress.advance(self._overall, task.duration_s or 0.0)
        if not self.live:
            length = f" ({mmss(task.duration_s)})" if task.duration_s else ""
            n = self.done + self.failed
            name = literal(task.display_name)
            self.console.print(f"\\[{n}/{self.total_tasks}] {stage}: {name}{length}")

    def _refresh(self, *, force_file: bool = False) -> None:
        now = self.clock()
        self._progress.update(self._overall, detail=self.status_line())
        if self.live:
            for entry in self.in_flight.values():
                if entry.line is not None:
                    text = entry.stage
                    if entry.fraction is not None:
                        text += f" {entry.fraction:.0%}"
                    self._progress.update(entry.line, detail=f"{text} · {mmss(now - entry.since)}")
        elif now - self._last_plain >= PLAIN_STATUS_EVERY_S:
            self._last_plain = now
            self.console.print(self.status_line())
        if self.progress_file is not None and (
            force_file or now - self._last_file >= PROGRESS_FILE_EVERY_S
        ):
            self._last_file = now
            atomic_write_text(
                self.progress_file, json.dumps(self.snapshot(), ensure_ascii=False, indent=2)
            )
