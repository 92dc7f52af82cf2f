"""ProgressMonitor: what the batch is doing, and how long it will take.

On a terminal: one overall bar measured in *video seconds* (so the ETA comes from the
video time left and the measured processing rate, not from task counts), done/failed/
retrying/waiting counts, and a line per video in flight with its stage. Elsewhere (CI,
pipes, ``-q``): a plain line per finished or failed video.
"""

from __future__ import annotations

from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from gs_video_report.services.formatter import mmss
from gs_video_report.storage.checkpoint import TaskRow


class ProgressMonitor:
    def __init__(
        self, console: Console, *, total_tasks: int, total_video_s: float, live: bool
    ) -> None:
        self.console = console
        self.total_tasks = total_tasks
        self.live = live
        self.done = 0
        self.failed = 0
        self.retrying: set[int] = set()
        self.waiting: set[int] = set()
        self._video_total = max(1.0, total_video_s)
        self._lines: dict[int, TaskID] = {}
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=False,
            disable=not live,
        )
        self._overall = self._progress.add_task("batch", total=self._video_total, detail="")

    def __enter__(self) -> ProgressMonitor:
        self._progress.start()
        self._refresh()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def _refresh(self) -> None:
        detail = (
            f"{self.done}/{self.total_tasks} done · {self.failed} failed · "
            f"{len(self.retrying)} retrying · {len(self.waiting)} waiting for quota"
        )
        self._progress.update(self._overall, detail=detail)

    def on_stage(self, task: TaskRow, stage: str, fraction: float | None) -> None:
        if stage in ("done", "failed"):
            self._finish(task, stage)
        elif stage.startswith("retry"):
            self.retrying.add(task.id)
            self._drop_line(task)
        elif stage == "waiting for quota":
            self.waiting.add(task.id)
            self._drop_line(task)
        else:
            self.retrying.discard(task.id)
            self.waiting.discard(task.id)
            self._show_line(task, stage, fraction)
        self._refresh()

    def _show_line(self, task: TaskRow, stage: str, fraction: float | None) -> None:
        if not self.live:
            return
        label = f"  {task.display_name[:40]}"
        text = f"{stage} {fraction:.0%}" if fraction is not None else stage
        if task.id not in self._lines:
            self._lines[task.id] = self._progress.add_task(label, total=None, detail=text)
        else:
            self._progress.update(self._lines[task.id], detail=text)

    def _drop_line(self, task: TaskRow) -> None:
        line = self._lines.pop(task.id, None)
        if line is not None:
            self._progress.remove_task(line)

    def _finish(self, task: TaskRow, stage: str) -> None:
        self._drop_line(task)
        self.retrying.discard(task.id)
        self.waiting.discard(task.id)
        if stage == "done":
            self.done += 1
        else:
            self.failed += 1
        self._progress.advance(self._overall, task.duration_s or 0.0)
        if not self.live:
            length = f" ({mmss(task.duration_s)})" if task.duration_s else ""
            n = self.done + self.failed
            self.console.print(f"[{n}/{self.total_tasks}] {stage}: {task.display_name}{length}")
