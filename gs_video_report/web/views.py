"""What the pages show, as plain JSON-ready values built from the engine's views: the
batch list, one batch's live snapshot (tasks, progress, ETA, cost), the key pool."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from gs_video_report.batch.api import BatchView, CostSummary, KeyView
from gs_video_report.models import TaskStage
from gs_video_report.web.files import BatchFiles
from gs_video_report.web.runs import Runs


def when(ts: float | None) -> str:
    if ts is None:
        return ""
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _finished(view: BatchView) -> int:
    return sum(n for stage, n in view.counts.items() if TaskStage(stage).finished)


def batch_row(view: BatchView, costs: CostSummary) -> dict[str, Any]:
    total, finished = view.total, _finished(view)
    return {
        "id": view.id,
        "created": when(view.created_at),
        "source": view.source,
        "template": view.settings.get("template")
        or ", ".join(sorted({t.template for t in view.tasks})),
        "status": view.status.value,
        "done": view.counts.get(TaskStage.DONE, 0),
        "failed": view.counts.get(TaskStage.FAILED, 0),
        "finished": finished,
        "total": total,
        "progress": finished / total if total else 1.0,
        "cost_usd": costs.by_batch.get(view.id, 0.0),
        "running": view.running_pid is not None,
    }


def _eta(view: BatchView, runs: Runs, now: float) -> float | None:
    """Time left at the pace of this run so far (of the batch, when another process
    runs it); None before the first video finishes."""
    run = runs.running.get(view.id)
    finished = _finished(view)
    started, before = (run.started_at, run.done_before) if run else (view.created_at, 0)
    if run is None and view.running_pid is None:
        return None
    went = finished - before
    left = view.total - finished
    if went <= 0 or left <= 0:
        return None if left > 0 else 0.0
    return (now - started) / went * left


def batch_snapshot(
    view: BatchView, runs: Runs, costs: CostSummary, files: BatchFiles, now: float
) -> dict[str, Any]:
    doing = runs.live.activity.get(view.id, {})
    tasks = []
    for t in view.tasks:
        lesson = files.lesson(t.output) if t.stage is TaskStage.DONE else None
        tasks.append(
            {
                "id": t.id,
                "video": t.video,
                "template": t.template,
                "stage": t.stage.value,
                "activity": doing.get(t.id, ""),
                "attempts": t.attempts,
                "error_kind": t.last_error_kind or "",
                "error": runs.redact(t.last_error or "") if t.stage is TaskStage.FAILED else "",
                "cost_usd": t.cost_usd,
                "lesson_url": f"/batches/{view.id}/lessons/{t.id}" if lesson else None,
            }
        )
    row = batch_row(view, costs)
    eta = _eta(view, runs, now)
    run = runs.running.get(view.id)
    if run is not None and run.stopping:
        row["status"] = "stopping"  # Cancel pressed: the calls in flight are finishing
    return {
        **row,
        "output_dir": view.output_dir,
        "here": view.id in runs.running,
        "finished_at": when(view.finished_at),
        "eta_s": round(eta) if eta is not None else None,
        "error": runs.error_for(view),
        "tasks": tasks,
    }


def key_rows(keys: list[KeyView], runs: Runs) -> list[dict[str, Any]]:
    """By fingerprint; the key itself is never part of a view."""
    return [
        {
            "fingerprint": k.fingerprint,
            "label": k.label,
            "project": k.project,
            "state": k.state,
            "usable": k.usable,
            "successes": k.successes,
            "failures": sum(k.failures.values()),
            "last_error": runs.redact(k.last_error or ""),
        }
        for k in keys
    ]
