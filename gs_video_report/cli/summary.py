"""The end of a run: counts, cost and the report; on a resumable stop, why and the exact
command that resumes it."""

from __future__ import annotations

import json
import shlex

import typer
from rich.console import Console

from gs_video_report.batch.cost import usd
from gs_video_report.batch.runner import BatchOutcome
from gs_video_report.cli.options import RunFlags
from gs_video_report.models import StopReason


def resume_hint(batch_id: str, flags: RunFlags) -> str:
    """The exact command that resumes ``batch_id``, with the keys and config it ran with
    (its other settings are stored with the batch)."""
    command = ["gs_videoreport", "resume", batch_id]
    if flags.keys_file is not None:
        command += ["--keys-file", str(flags.keys_file)]
    if flags.config is not None:
        command += ["-c", str(flags.config)]
    return shlex.join(command)


def print_summary(console: Console, outcome: BatchOutcome, flags: RunFlags) -> None:
    """The end of a run: counts and report (stdout JSON with --json); on any resumable
    stop, why and the exact command that resumes it (always on stderr)."""
    as_json = flags.as_json
    counts = {stage.value: n for stage, n in outcome.counts.items()}
    resume = resume_hint(outcome.batch_id, flags) if outcome.stop_reason else None
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "batch_id": outcome.batch_id,
                    "report": str(outcome.report_dir) if outcome.report_dir else None,
                    "counts": counts,
                    "stop_reason": outcome.stop_reason,
                    "stop_message": outcome.stop_message,
                    "spent_usd": round(outcome.spent_usd, 6),
                    "rest_estimate_usd": outcome.rest_usd,
                    "resume_command": resume,
                    "exit_code": int(outcome.exit_code),
                }
            )
        )
    else:
        parts = " · ".join(f"{n} {stage}" for stage, n in sorted(counts.items()))
        console.print(f"Batch {outcome.batch_id}: {parts or 'nothing to do'}")
        if outcome.spent_usd:
            console.print(f"Spent {usd(outcome.spent_usd)}")
        if outcome.report_dir is not None:
            console.print(f"Report: {outcome.report_dir / 'summary.md'}")
    if resume is None or outcome.stop_reason is None:
        return
    console.print(f"[yellow]Stopped ({outcome.stop_reason.value})[/]: {outcome.stop_message or ''}")
    if outcome.stop_reason is StopReason.BUDGET:
        rest = f"~{usd(outcome.rest_usd)}" if outcome.rest_usd is not None else "unknown"
        console.print(
            f"Spent {usd(outcome.spent_usd)}; the rest would cost {rest}. Raise the limit with: "
            f"{resume} --cost-limit USD"
        )
    console.print(f"Resume with: {resume}")
