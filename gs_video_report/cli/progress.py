"""ProgressMonitor: what the batch is doing, and how long it will take.

On a terminal, a live display that stays the same size however big the batch: one
overall bar measured in *video seconds* (so the ETA comes from the video time left and
the measured processing rate, not from task counts) with the ETA on its line, the
done/failed/retrying/waiting counts, video hours done of the total and throughput, and
a line per video in flight with its stage and elapsed time — at most ``max_lines``
(``--parallel`` + ``--max-uploads``), the rest collapsed into counts; videos queued for
a slot are a count. Every line fits the terminal's width. Once a stop is asked for
(the first Ctrl-C), the display says the calls in flight are finishing and how to stop
at once. Log records written meanwhile go through the display's console, above it.
Elsewhere (CI, pipes, ``-q``): a line per finished or failed video and a status line at
a steady pace.
``--progress-file`` keeps a JSON snapshot of the same figures current, written
atomically, for other tools.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from gs_video_report.batch import events as ev
from gs_video_report.batch.api import atomic_write_text
from gs_video_report.cli.common import route_logs
from gs_video_report.cli.text import literal, printable
from gs_video_report.models import StopReason, mmss

PLAIN_STATUS_EVERY_S = 30.0
PROGRESS_FILE_EVERY_S = 1.0
NAME_WIDTH = 48  # of a video's name on its line; the stage and time keep theirs


@dataclass
class _InFlight:
    task: ev.TaskView
    stage: str
    fraction: float | None
    since: float


def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.1f} h" if seconds >= 3600 else mmss(seconds)


def _stopping_text(event: ev.BatchStopping) -> str:
    if event.reason is StopReason.INTERRUPTED:
        return "Stopping: finishing the calls in flight — press Ctrl-C again to stop now"
    return f"Stopping ({event.message}): finishing the calls in flight"


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
        max_lines: int = 6,
    ) -> None:
        self.console = console
        self.batch_id = batch_id
        self.total_tasks = total_tasks
        self.total_video_s = total_video_s
        self.live = live
        self.progress_file = progress_file
        self.clock = clock
        self.max_lines = max(1, max_lines)
        self.done = 0
        self.failed = 0
        self.video_done_s = 0.0
        self.retrying: set[int] = set()
        self.waiting: set[int] = set()
        self.queued: set[int] = set()  # claimed, waiting for an upload or generate slot
        self.in_flight: dict[int, _InFlight] = {}
        self.state = "running"
        self.stopping: str | None = None  # what the display says once a stop is asked for
        self.offline: str | None = None  # while the API cannot be reached: until when
        self.jobs: dict[str, ev.JobStatus] = {}  # --mode batch: each job as last polled
        self._started = clock()
        self._last_plain = self._started
        self._last_file = float("-inf")
        self._display: Live | None = None
        if live:
            self._display = Live(
                console=console,
                auto_refresh=False,  # refreshed on every event and by the CLI's ticker
                get_renderable=self.render,
            )
        self._stack = ExitStack()

    def __enter__(self) -> ProgressMonitor:
        if self._display is not None:
            self._stack.enter_context(self._display)
            # a log record written straight to stderr would tear the display
            self._stack.enter_context(route_logs(self.console))
        self._refresh(force_file=True)
        return self

    def __exit__(self, *exc: object) -> None:
        self.finish("stopped" if exc[0] is not None else self.state)
        self._stack.close()

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
            "offline": self.offline,
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

    def counts_line(self) -> str:
        parts = [f"{self.done} done", f"{self.failed} failed"]
        for count, label in (
            (len(self.retrying), "retrying"),
            (len(self.waiting), "waiting for quota"),
            (len(self.queued), "queued"),
        ):
            if count:
                parts.append(f"{count} {label}")
        return " · ".join(parts)

    def video_line(self) -> str:
        rate = self.rate
        throughput = f" · {rate:.1f}× real time" if rate else ""
        return f"{_hours(self.video_done_s)} of {_hours(self.total_video_s)} video{throughput}"

    def status_line(self) -> str:
        eta = f" · ETA {mmss(self.eta_s)}" if self.eta_s is not None else ""
        return f"{self.counts_line()} · {self.video_line()}{eta}"

    # -- the live display --------------------------------------------------------
    def render(self) -> RenderableType:
        """The display, as wide as the console and at most ``max_lines`` + 5 lines high."""
        finished = self.done + self.failed
        share = self.video_done_s / self.total_video_s if self.total_video_s else 0.0
        eta = mmss(self.eta_s) if self.eta_s is not None else "--:--"
        overall = Table.grid(expand=True, padding=(0, 1))
        overall.add_column(no_wrap=True)
        overall.add_column(ratio=1)
        overall.add_column(no_wrap=True, justify="right")
        bar = ProgressBar(total=max(1.0, self.total_video_s), completed=self.video_done_s)
        headline = f"{finished}/{self.total_tasks} · {share:.0%} · ETA {eta}"
        overall.add_row("batch", bar, headline)
        lines: list[RenderableType] = [
            overall,
            Text(self.counts_line(), no_wrap=True, overflow="ellipsis"),
            Text(self.video_line(), no_wrap=True, overflow="ellipsis"),
        ]
        lines += self._video_lines()
        if self.offline is not None:
            lines.append(Text(self.offline, style="red", no_wrap=True, overflow="ellipsis"))
        if self.jobs:
            lines.append(Text(self._jobs_line(), no_wrap=True, overflow="ellipsis"))
        if self.stopping is not None:
            lines.append(Text(self.stopping, style="yellow"))
        return Group(*lines)

    def _video_lines(self) -> list[RenderableType]:
        now = self.clock()
        ordered = sorted(self.in_flight.values(), key=lambda f: (f.since, f.task.seq))
        shown, rest = ordered[: self.max_lines], ordered[self.max_lines :]
        if not shown:
            return []
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1, no_wrap=True, overflow="ellipsis", max_width=NAME_WIDTH + 2)
        grid.add_column(no_wrap=True, justify="right")
        for entry in shown:
            stage = entry.stage
            if entry.fraction is not None:
                stage += f" {entry.fraction:.0%}"
            name = Text("  " + printable(entry.task.display_name))
            grid.add_row(name, f"{stage} · {mmss(now - entry.since)}")
        lines: list[RenderableType] = [grid]
        if rest:
            stages = Counter(entry.stage for entry in rest)
            by_stage = ", ".join(f"{n} {stage}" for stage, n in sorted(stages.items()))
            more = f"  + {len(rest)} more in flight: {by_stage}"
            lines.append(Text(more, no_wrap=True, overflow="ellipsis"))
        return lines

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
            case ev.NetworkLost() | ev.NetworkBack():
                self._network(event)
            case ev.JobStatus():
                self._job(event)
            case ev.BatchStopping():
                self.state = f"stopping: {event.message}"
                self.stopping = _stopping_text(event)
                if not self.live:
                    self.console.print(literal(self.stopping))
            case _:
                return  # calls, buckets, budget: not shown line by line
        self._refresh()

    def _network(self, event: ev.NetworkLost | ev.NetworkBack) -> None:
        if isinstance(event, ev.NetworkLost):
            reason = printable(event.reason)
            self.offline = f"offline — retrying in {event.delay_s:.0f} s ({reason})"
            if not self.live:
                self.console.print(literal(self.offline))
        else:
            self.offline = None
            if not self.live:
                self.console.print(f"back online after {mmss(event.after_s)}")

    def _job(self, event: ev.JobStatus) -> None:
        known = self.jobs.get(event.display_name)
        self.jobs[event.display_name] = event
        if not self.live and (known is None or known.state != event.state):
            self.console.print(literal(f"Gemini batch job {event.display_name}: {event.state}"))

    def _jobs_line(self) -> str:
        """One line for the batch's Gemini Batch jobs: their states and the longest wait."""
        states = Counter(job.state for job in self.jobs.values())
        waited = max(job.waited_s for job in self.jobs.values())
        text = ", ".join(f"{n} {state}" for state, n in sorted(states.items()))
        return f"Gemini batch jobs: {text} · waited {mmss(waited)}"

    def _settle(self, task: ev.TaskView, *, drop: bool = True) -> None:
        """The task moved on: it is no longer queued, retrying or waiting (until told);
        ``drop``: nor shown as a line."""
        self.queued.discard(task.id)
        self.retrying.discard(task.id)
        self.waiting.discard(task.id)
        if drop:
            self.in_flight.pop(task.id, None)

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

    def _finish_task(self, task: ev.TaskView, stage: str) -> None:
        self._settle(task)
        if stage == "done":
            self.done += 1
        else:
            self.failed += 1
        self.video_done_s += task.duration_s or 0.0
        if not self.live:
            length = f" ({mmss(task.duration_s)})" if task.duration_s else ""
            n = self.done + self.failed
            name = literal(task.display_name)
            self.console.print(f"\\[{n}/{self.total_tasks}] {stage}: {name}{length}")

    def _refresh(self, *, force_file: bool = False) -> None:
        now = self.clock()
        if self._display is not None:
            self._display.refresh()
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
