"""The end of a run: a table of what became of the batch (done, failed, skipped, rejected,
cost, time), one line per failed video and rejected input with the reason, the report,
and the exact commands that retry the failed videos or resume a stopped batch. With
``--json`` the same figures are one document on stdout."""

from __future__ import annotations

import json
import re
import shlex
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import BatchOutcome, BatchView
from gs_video_report.batch.cost import usd
from gs_video_report.cli.options import RunFlags
from gs_video_report.cli.text import literal
from gs_video_report.models import StopReason, TaskStage, mmss

SHOWN = 20  # failed videos (and rejected inputs) named one per line; the rest in the report


def command_hint(command: str, batch_id: str, flags: RunFlags) -> str:
    """The exact ``resume`` / ``retry-failed`` command for ``batch_id``, with the keys and
    config it ran with (its other settings are stored with the batch)."""
    words = ["gs_videoreport", command, batch_id]
    if flags.keys_file is not None:
        words += ["--keys-file", str(flags.keys_file)]
    if flags.config is not None:
        words += ["-c", str(flags.config)]
    return shlex.join(words)


def resume_hint(batch_id: str, flags: RunFlags) -> str:
    return command_hint("resume", batch_id, flags)


def _one_line(text: str | None, limit: int = 200) -> str:
    # only line breaks become spaces: any other control character is shown, not lost
    flat = re.sub(r"\s*\n\s*", " ", (text or "no reason recorded").strip())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _cost(outcome: BatchOutcome, view: BatchView, simulated: bool) -> tuple[str, bool]:
    """The spend as text, and whether it is known: a model without a price leaves its
    videos' cost unknown, never $0."""
    known = all(t.cost_usd is not None for t in view.tasks if t.tokens)
    text = usd(outcome.spent_usd) if known else "unknown (no price for the model)"
    return (f"{text} (simulated)" if simulated else text), known


def summary_json(
    outcome: BatchOutcome, view: BatchView, flags: RunFlags, elapsed_s: float, simulated: bool
) -> dict[str, Any]:
    failed = [t for t in view.tasks if t.stage is TaskStage.FAILED]
    stopped = outcome.stop_reason is not None
    return {
        "batch_id": outcome.batch_id,
        "status": outcome.status.value,
        "report": str(outcome.report_dir) if outcome.report_dir else None,
        "counts": {stage.value: n for stage, n in outcome.counts.items()},
        "done": outcome.counts.get(TaskStage.DONE, 0),
        "failed": len(failed),
        "skipped": view.skipped,
        "rejected": [{"input": r.input, "reason": r.reason} for r in view.rejected],
        "failures": [
            {"video": t.video, "kind": t.last_error_kind, "reason": t.last_error} for t in failed
        ],
        "stop_reason": outcome.stop_reason,
        "stop_message": outcome.stop_message,
        "spent_usd": round(outcome.spent_usd, 6),
        "cost_known": _cost(outcome, view, simulated)[1],
        "cached_tokens": sum(t.cached_tokens or 0 for t in view.tasks),
        "cache_saving_usd": round(sum(t.saving_usd or 0.0 for t in view.tasks), 6),
        "simulated": simulated,
        "elapsed_s": round(elapsed_s, 1),
        "rest_estimate_usd": outcome.rest_usd,
        "resume_command": resume_hint(outcome.batch_id, flags) if stopped else None,
        "retry_command": command_hint("retry-failed", outcome.batch_id, flags) if failed else None,
        "exit_code": int(outcome.exit_code),
    }


def _table(outcome: BatchOutcome, view: BatchView, elapsed_s: float, simulated: bool) -> Table:
    counts = outcome.counts
    done, failed = counts.get(TaskStage.DONE, 0), counts.get(TaskStage.FAILED, 0)
    left = sum(counts.values()) - done - failed
    columns = ["Done", "Failed", "Skipped", "Rejected"] + (["Not done"] if left else [])
    values = [done, failed, view.skipped, len(view.rejected)] + ([left] if left else [])
    table = Table(title=f"Batch {outcome.batch_id}: {outcome.status.value}", title_justify="left")
    for column in columns:
        table.add_column(column, justify="right")
    table.add_column("Cost")
    table.add_column("Time", justify="right")
    table.add_row(*(str(v) for v in values), _cost(outcome, view, simulated)[0], mmss(elapsed_s))
    return table


def print_summary(
    console: Console,
    outcome: BatchOutcome,
    view: BatchView,
    flags: RunFlags,
    *,
    elapsed_s: float,
    simulated: bool,
) -> None:
    """Stdout gets the JSON document with --json; everything else goes to ``console``
    (stderr). A resumable stop always says why and how to resume."""
    failed = [t for t in view.tasks if t.stage is TaskStage.FAILED]
    if flags.as_json:
        doc = summary_json(outcome, view, flags, elapsed_s, simulated)
        typer.echo(json.dumps(doc))
    else:
        console.print(_table(outcome, view, elapsed_s, simulated))
        cached = sum(t.cached_tokens or 0 for t in view.tasks)
        if cached:
            saved = usd(sum(t.saving_usd or 0.0 for t in view.tasks))
            console.print(f"Cached tokens: {cached:,} (context caching saved {saved})")
        _name_them(console, "Failed", [(t.video, t.last_error) for t in failed])
        _name_them(console, "Rejected", [(r.input, r.reason) for r in view.rejected])
        if outcome.report_dir is not None:
            console.print(f"Report: {literal(outcome.report_dir / 'summary.md')}")
        if failed:
            hint = command_hint("retry-failed", outcome.batch_id, flags)
            console.print(f"Retry the failed videos with: {literal(hint)}")
    if outcome.stop_reason is not None:
        _print_stop(console, outcome, flags)


def _name_them(console: Console, title: str, rows: list[tuple[str, str | None]]) -> None:
    if not rows:
        return
    console.print(f"{title}:")
    for name, reason in rows[:SHOWN]:
        console.print(f"  {literal(name)}: {literal(_one_line(reason))}")
    if len(rows) > SHOWN:
        console.print(f"  … and {len(rows) - SHOWN} more (failures.json in the report)")


def _print_stop(console: Console, outcome: BatchOutcome, flags: RunFlags) -> None:
    assert outcome.stop_reason is not None
    resume = literal(resume_hint(outcome.batch_id, flags))
    reason = f"[yellow]Stopped ({outcome.stop_reason.value})[/]"
    console.print(f"{reason}: {literal(outcome.stop_message or '')}")
    if outcome.stop_reason is StopReason.BUDGET:
        rest = f"~{usd(outcome.rest_usd)}" if outcome.rest_usd is not None else "unknown"
        console.print(
            f"Spent {usd(outcome.spent_usd)}; the rest would cost {rest}. Raise the limit with: "
            f"{resume} --cost-limit USD"
        )
    console.print(f"Resume with: {resume}")
