"""Showing a batch's plan: the inputs rejected and why, the videos skipped (a count by
reason; one line each with -v), and with ``--dry-run`` what would run with its estimate
(tokens, cost, the least time the rate limits allow) — on stdout, or as one JSON
document with ``--json``."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import PlannedBatch
from gs_video_report.batch.caching import SharingEstimate, estimate_sharing
from gs_video_report.batch.cost import usd
from gs_video_report.batch.planner import Plan, PlanEstimate, estimate_plan
from gs_video_report.cli.text import PLAIN_ROWS, literal, plain_table
from gs_video_report.config import Settings
from gs_video_report.errors import ExitCode
from gs_video_report.models import mmss


def plan_exit_code(plan: Plan) -> ExitCode:
    """A plan that is not run (``--dry-run``, nothing left to do) exits as its run would:
    1 when an input was rejected, 3 when not one input was usable."""
    if plan.problems and not plan.tasks:
        return ExitCode.INPUT
    return ExitCode.PARTIAL if plan.problems else ExitCode.OK


def print_plan(console: Console, plan: Plan, *, verbose: bool) -> None:
    """What planning turned away and skipped."""
    for problem in plan.problems:
        console.print(f"[yellow]rejected[/] {literal(problem.origin)}: {literal(problem.message)}")
    if verbose:
        for task in plan.skipped:
            console.print(f"[dim]skip[/] {literal(task.entry.text)}: {literal(task.skip_reason)}")
    counts = plan.skip_counts()
    if counts:
        why = ", ".join(f"{n} {kind}" for kind, n in counts.items())
        more = "" if verbose else " (-v lists them)"
        console.print(f"[dim]skipped {len(plan.skipped)}[/]: {literal(why)}{more}")


def print_estimate(
    console: Console, planned: PlannedBatch, settings: Settings, mode: str = "live"
) -> None:
    """``--dry-run``: every video that would run, and the totals (the headline cost at
    ``mode``'s prices)."""
    plan = planned.plan
    estimate = estimate_plan(plan, settings)
    sharing = _sharing(planned, settings, estimate.calls, mode)
    title = f"Would run {len(plan.to_run)} video(s)"
    headers = ("Video", "Template", "Duration", "Parts", "Est. tokens", "Output")
    cells = [
        [
            row.video,
            row.template,
            mmss(row.duration_s) if row.duration_s else "?",
            ", ".join(f"{mmss(a)}-{mmss(b)}" for a, b in row.parts) if row.parts else "1",
            f"{row.input_tokens:,}",
            str(row.output),
        ]
        for row in estimate.rows
    ]
    if len(cells) > PLAIN_ROWS:
        console.file.write(plain_table(title, headers, cells) + "\n")
    else:
        table = Table(title=literal(title))
        for col in headers:
            table.add_column(col, overflow="fold")
        for cell in cells:
            table.add_row(*(literal(c) for c in cell))
        console.print(table)
    cost = _mode_cost(estimate, mode)
    cost_text = usd(cost) if cost is not None else "unknown (no price for this model)"
    prices = "" if mode == "live" else f" at --mode {mode} prices"
    console.print(
        f"Total video {mmss(plan.total_duration_s)} · ~{estimate.input_tokens:,} input tokens · "
        f"{estimate.calls} call(s) · estimated cost {cost_text}{prices} with "
        f"{literal(estimate.model)}"
    )
    console.print(_sharing_line(sharing, mode))
    _print_modes(console, estimate, sharing.uploads)
    if estimate.min_minutes:
        console.print(
            f"Rate limits (rpm {estimate.rpm or '-'}, tpm {estimate.tpm or '-'}) allow this in no "
            f"less than {mmss(estimate.min_minutes * 60)}"
        )
    else:
        console.print(
            "No rate limits configured for this model: the batch paces itself by the 429s it "
            "meets (set 'limits' in the config to pace up front)"
        )


def _sharing(planned: PlannedBatch, settings: Settings, calls: int, mode: str) -> SharingEstimate:
    sharing = estimate_sharing(planned.plan.to_run, settings, calls)
    if mode != "live":  # batch prices have no cache rates: flex and batch never cache
        return replace(sharing, cached_videos=0, saving_usd=0.0)
    return sharing


def _sharing_line(sharing: SharingEstimate, mode: str) -> str:
    line = f"{sharing.uploads} upload(s), {sharing.calls} call(s)"
    if mode != "live":
        return f"{line} · no context caching in --mode {mode} (only live calls are cached)"
    if sharing.cached_videos:
        return (
            f"{line} · context caching for {sharing.cached_videos} video(s) saves "
            f"~{usd(sharing.saving_usd)}"
        )
    return f"{line} · no context caching (it pays only for a video with 2+ templates)"


_MODE_TIME = {
    "live": "as the rate limits allow",
    "flex": "slower: each answer in minutes (best effort)",
    "batch": "within 24 h (Gemini's target); `resume` collects",
}


def _mode_cost(estimate: PlanEstimate, mode: str) -> float | None:
    return estimate.cost_usd if mode == "live" else estimate.discounted_usd


def mode_rows(estimate: PlanEstimate, uploads: int) -> list[dict[str, Any]]:
    """Live, Flex and Batch Mode side by side: the same uploads (one a video, however
    many templates), calls and tokens; the price and the wait differ."""
    rows = []
    for mode in ("live", "flex", "batch"):
        cost = _mode_cost(estimate, mode)
        rows.append(
            {
                "mode": mode,
                "uploads": uploads,
                "calls": estimate.calls if mode != "batch" else 0,
                "batch_requests": estimate.calls if mode == "batch" else 0,
                "input_tokens": estimate.input_tokens,
                "cost_usd": None if cost is None else round(cost, 6),
                "time": _MODE_TIME[mode],
            }
        )
    return rows


def _print_modes(console: Console, estimate: PlanEstimate, uploads: int) -> None:
    table = Table(title="By mode (--mode)")
    for col in ("Mode", "Uploads", "Calls", "Input tokens", "Est. cost", "Time"):
        table.add_column(col, overflow="fold")
    for row in mode_rows(estimate, uploads):
        cost = row["cost_usd"]
        calls = row["calls"] or f"{row['batch_requests']} in jobs"
        table.add_row(
            row["mode"],
            str(row["uploads"]),
            str(calls),
            f"{row['input_tokens']:,}",
            usd(cost) if cost is not None else "unknown",
            row["time"],
        )
    console.print(table)


def plan_json(
    planned: PlannedBatch, settings: Settings, *, dry_run: bool, mode: str = "live"
) -> dict[str, Any]:
    """``--dry-run --json`` (and ``--json`` with nothing to run): the same figures as one
    document."""
    plan = planned.plan
    estimate = estimate_plan(plan, settings)
    sharing = _sharing(planned, settings, estimate.calls, mode)
    return {
        "dry_run": dry_run,
        "batch_id": None,
        "entries": [
            {
                "video": row.video,
                "source": row.source,
                "template": row.template,
                "duration_s": row.duration_s,
                "parts": max(1, len(row.parts)),
                "part_spans_s": [list(span) for span in row.parts],
                "estimated_input_tokens": row.input_tokens,
                "output": str(row.output),
            }
            for row in estimate.rows
        ],
        "skipped": {
            "count": len(plan.skipped),
            "reasons": plan.skip_counts(),
            "videos": [
                {
                    "video": t.video.source.display_name,
                    "source": t.entry.text,
                    "reason": t.skip_reason,
                }
                for t in plan.skipped
            ],
        },
        "rejected": [{"input": p.origin, "reason": p.message} for p in plan.problems],
        "totals": _totals(plan, estimate, sharing.uploads, mode),
        "sharing": _sharing_json(sharing),
        "exit_code": int(plan_exit_code(plan)),
    }


def _totals(plan: Plan, estimate: PlanEstimate, uploads: int, mode: str) -> dict[str, Any]:
    cost = _mode_cost(estimate, mode)  # None: no price for the model
    return {
        "videos": len(plan.to_run),
        "duration_s": round(float(plan.total_duration_s), 1),
        "estimated_input_tokens": estimate.input_tokens,
        "calls": estimate.calls,
        "estimated_cost_usd": None if cost is None else round(cost, 6),  # at mode's prices
        "mode": mode,
        "model": estimate.model,
        "rpm": estimate.rpm,
        "tpm": estimate.tpm,
        # None: no rate limit configured, nothing to bound the time by
        "min_time_s": round(estimate.min_minutes * 60, 1) if estimate.min_minutes else None,
        "modes": mode_rows(estimate, uploads),
    }


def _sharing_json(sharing: SharingEstimate) -> dict[str, Any]:
    return {
        "uploads": sharing.uploads,
        "calls": sharing.calls,
        "cached_videos": sharing.cached_videos,
        "cache_saving_usd": round(sharing.saving_usd, 6),
    }
