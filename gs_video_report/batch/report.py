"""End-of-run reports in ``OUTPUT/_reports/BATCH_ID/``: summary.md, summary.json and
failures.json, rewritten atomically after every run or resume of the batch.

failures.json lists the failed videos and the inputs rejected when the batch was
planned (``"status": "rejected"`` with the ``reason``): the batch's status is then
``partial``, as its exit code is 1."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from gs_video_report.models import mmss
from gs_video_report.services.writer import atomic_write_text
from gs_video_report.storage.checkpoint import CheckpointManager, TaskStage
from gs_video_report.storage.jobs import JobStore


async def write_reports(store: CheckpointManager, batch_id: str) -> Path | None:
    batch = await store.batch(batch_id)
    if batch is None:
        return None
    tasks = await store.tasks(batch_id)
    videos: list[dict[str, Any]] = []
    for task in tasks:
        calls = await store.attempts(task.id)
        videos.append(
            {
                "video": task.display_name,
                "source": task.source,
                "template": task.template,
                "status": task.stage.value,
                "output": task.output_md if task.stage is TaskStage.DONE else None,
                # the lesson came from an answer already paid for (no call): which one
                "same_content_as": task.same_as,
                "attempts": task.attempts,
                "api_calls": len(calls),
                # what was changed between attempts and why (keys moved, budgets, prompts)
                "prompt_evolution": [c["note"] for c in calls if c["note"]],
                "duration_s": task.duration_s,
                "tokens": {
                    "prompt": task.prompt_tokens,
                    "output": task.output_tokens,
                    "thoughts": task.thoughts_tokens,
                    "total": task.total_tokens,
                    "cached": task.cached_tokens,  # billed at the cached rate
                },
                # against the same calls with no context cache (its own cost included)
                "cache_saving_usd": task.saving_usd,
                "cost_usd": task.cost_usd,
                "error": {"kind": task.last_error_kind, "message": task.last_error}
                if task.last_error
                else None,
            }
        )
    counts = {stage.value: n for stage, n in (await store.counts(batch_id)).items()}
    costs = [v["cost_usd"] for v in videos if v["cost_usd"] is not None]
    planned = json.loads(batch["settings_json"])  # what planning turned away or skipped
    rejected = [
        {"input": r["input"], "status": "rejected", "reason": r["reason"]}
        for r in planned.get("rejected", [])
    ]
    summary = {
        "batch_id": batch_id,
        "status": batch["status"],
        "source": batch["source_desc"],
        "counts": counts,
        "skipped": planned.get("skipped", 0),
        "rejected": rejected,
        "total_tokens": sum(v["tokens"]["total"] or 0 for v in videos),
        "total_cost_usd": round(sum(costs), 6) if costs else None,
        "cached_tokens": sum(v["tokens"]["cached"] or 0 for v in videos),
        "cache_saving_usd": round(sum(v["cache_saving_usd"] or 0.0 for v in videos), 6),
        "uploads": len({t.content_fingerprint for t in tasks if t.source_kind != "youtube"}),
        "mode": planned.get("mode", "live"),
        # --mode batch: each Gemini Batch job, its state and requests
        "batch_jobs": [
            {k: j[k] for k in ("display_name", "name", "state", "requests", "submitted_at")}
            for j in await JobStore(store).summary(batch_id)
        ],
        "videos": videos,
    }
    folder = Path(batch["output_dir"]) / "_reports" / batch_id
    failures = [v for v in videos if v["status"] == "failed"] + rejected
    atomic_write_text(
        folder / "summary.json", json.dumps(summary, ensure_ascii=False, indent=2) + "\n"
    )
    atomic_write_text(
        folder / "failures.json", json.dumps(failures, ensure_ascii=False, indent=2) + "\n"
    )
    atomic_write_text(folder / "summary.md", _markdown(summary))
    return folder


def _markdown(summary: dict[str, Any]) -> str:
    counts = " · ".join(f"{n} {stage}" for stage, n in sorted(summary["counts"].items()))
    cost = summary["total_cost_usd"]
    cost_text = f"${cost:.4f}" if cost is not None else "unknown"
    lines = [
        f"# Batch {summary['batch_id']}",
        "",
        f"- Status: {summary['status']} ({counts})",
        f"- Source: {summary['source']}",
        f"- Skipped (already done): {summary['skipped']}",
        f"- Rejected inputs: {len(summary['rejected'])}",
        f"- Tokens: {summary['total_tokens']:,}",
        f"- Cost: {cost_text}",
        *_caching_lines(summary),
        "",
        "| Video | Status | Length | Retries | Tokens | Cost | Output / error |",
        "|---|---|---|---|---|---|---|",
    ]
    for v in summary["videos"]:
        length = mmss(v["duration_s"]) if v["duration_s"] else "?"
        cost_v = f"${v['cost_usd']:.4f}" if v["cost_usd"] is not None else "-"
        detail = v["output"] or (v["error"]["message"] if v["error"] else "")
        if v["same_content_as"]:
            detail = f"{detail} (same content as {v['same_content_as']}: no call)"
        detail = str(detail).replace("|", "\\|")
        tokens = v["tokens"]["total"] or 0
        lines.append(
            f"| {v['video']} | {v['status']} | {length} | {v['attempts']} | {tokens:,} "
            f"| {cost_v} | {detail} |"
        )
    if summary["rejected"]:
        lines += ["", "## Rejected inputs", ""]
        lines += [f"- {r['input']}: {r['reason']}" for r in summary["rejected"]]
    adapted = [v for v in summary["videos"] if v["prompt_evolution"]]
    if adapted:
        lines += ["", "## Adjustments", ""]
        for v in adapted:
            lines.append(f"- **{v['video']}**")
            lines += [f"  {n}. {note}" for n, note in enumerate(v["prompt_evolution"], 1)]
    return "\n".join(lines) + "\n"


def _caching_lines(summary: dict[str, Any]) -> list[str]:
    if not summary["cached_tokens"]:
        return []
    return [
        f"- Cached tokens: {summary['cached_tokens']:,} "
        f"(context caching saved ${summary['cache_saving_usd']:.4f})"
    ]
