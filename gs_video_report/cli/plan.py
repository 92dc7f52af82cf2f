"""Showing a batch's plan: what is rejected, skipped and run, and with ``--dry-run`` the
estimate (tokens, cost, the least time the rate limits allow)."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import PlannedBatch
from gs_video_report.batch.cost import usd
from gs_video_report.batch.planner import estimate_plan
from gs_video_report.config import Settings
from gs_video_report.models import mmss


def print_plan(console: Console, planned: PlannedBatch, settings: Settings, dry_run: bool) -> None:
    plan = planned.plan
    for problem in plan.problems:
        console.print(f"[yellow]skipped[/] {problem.origin}: {problem.message}", highlight=False)
    for task in plan.skipped:
        console.print(f"[dim]skip[/] {task.entry.text}: {task.skip_reason}", highlight=False)
    if not dry_run:
        return
    estimate = estimate_plan(plan, settings)
    table = Table(title=f"Would run {len(plan.to_run)} video(s)")
    for col in ("Video", "Template", "Duration", "Parts", "Est. tokens", "Output"):
        table.add_column(col, overflow="fold")
    for row in estimate.rows:
        split = ", ".join(f"{mmss(a)}-{mmss(b)}" for a, b in row.parts) if row.parts else "1"
        duration = mmss(row.duration_s) if row.duration_s else "?"
        table.add_row(
            row.video, row.template, duration, split, f"{row.input_tokens:,}", str(row.output)
        )
    console.print(table)
    cost = estimate.cost_usd
    cost_text = usd(cost) if cost is not None else "unknown (no price for this model)"
    console.print(
        f"Total video {mmss(plan.total_duration_s)} · ~{estimate.input_tokens:,} input tokens · "
        f"estimated cost {cost_text} with {estimate.model}",
        highlight=False,
    )
    if estimate.min_minutes:
        console.print(
            f"Rate limits (rpm {estimate.rpm or '-'}, tpm {estimate.tpm or '-'}) allow this in no "
            f"less than {mmss(estimate.min_minutes * 60)}",
            highlight=False,
        )
    else:
        console.print(
            "No rate limits configured for this model: the batch paces itself by the 429s it "
            "meets (set 'limits' in the config to pace up front)",
            highlight=False,
        )
