"""``status``, ``list-batches``, ``cancel`` and ``cleanup``: looking after batches."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import CancelResult, Engine
from gs_video_report.cli.common import (
    ApiKeyOpt,
    ConfigOpt,
    JsonOpt,
    KeysFileOpt,
    VerboseOpt,
    handle_errors,
    run_async,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.options import number
from gs_video_report.cli.text import PLAIN_ROWS, literal, plain_table, printable
from gs_video_report.config import PoolKey
from gs_video_report.errors import AuthError, ConfigError
from gs_video_report.models import BatchStatus, TaskStage, mmss

Opt = typer.Option


def _engine(ctx: typer.Context) -> Engine:
    return Engine(settings_from(None), clock=runtime(ctx).clock)


def status_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    as_json: JsonOpt = False,
) -> None:
    """Per video: stage, attempts, last error, tokens, cost, output."""
    with handle_errors(False):
        view = run_async(_engine(ctx).status(batch_id))
        rows: list[dict[str, Any]] = [
            {
                "video": t.video,
                "stage": t.stage.value,
                "attempts": t.attempts,
                "last_error": t.last_error,
                "tokens": t.tokens,
                "cost_usd": t.cost_usd,
                "output": t.output,
            }
            for t in view.tasks
        ]
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "batch_id": batch_id,
                        "status": view.status.value,
                        "tasks": rows,
                        "batch_jobs": view.jobs,
                    },
                    ensure_ascii=False,
                )
            )
            return
        cells = [
            [
                r["video"],
                r["stage"],
                str(r["attempts"]),
                str(r["tokens"] or "-"),
                f"${r['cost_usd']:.4f}" if r["cost_usd"] is not None else "-",
                r["last_error"] or r["output"] or "",
            ]
            for r in rows
        ]
        title = f"{batch_id} — {view.status.value}"
        headers = ("Video", "Stage", "Retries", "Tokens", "Cost", "Last error / output")
        if len(cells) > PLAIN_ROWS:
            typer.echo(plain_table(title, headers, cells))
            return
        table = Table(title=literal(title))
        for col in headers:
            table.add_column(col, overflow="fold")
        for row in cells:
            table.add_row(*(literal(c) for c in row))
        Console().print(table)
        if view.jobs:  # --mode batch: the Gemini Batch jobs, and how long each has waited
            jobs = Table(title="Gemini Batch jobs")
            for col in ("Job", "State", "Requests", "Waited"):
                jobs.add_column(col, overflow="fold")
            now = time.time()
            for j in view.jobs:
                since = j["submitted_at"]
                waited = mmss((j["ended_at"] or now) - since) if since else "-"
                jobs.add_row(literal(j["name"] or j["display_name"]), j["state"],
                             str(j["requests"]), waited)  # fmt: skip
            Console().print(jobs)


def list_batches_command(
    ctx: typer.Context,
    limit: Annotated[int, Opt("--limit", "-l", min=1)] = 10,
    as_json: JsonOpt = False,
) -> None:
    """Recent batches, newest first (``main`` runs are one-video batches)."""
    with handle_errors(False):
        views = run_async(_engine(ctx).batches(limit))
        if as_json:
            listed = [
                {
                    "id": v.id,
                    "status": v.status.value,
                    "source": v.source,
                    "created_at": v.created_at,
                    "counts": {stage.value: n for stage, n in v.counts.items()},
                }
                for v in views
            ]
            typer.echo(json.dumps(listed))
            return
        table = Table(title="Batches")
        table.add_column("Batch", no_wrap=True)  # users copy it into `resume`
        for col in ("Status", "Videos", "Done", "Failed", "Source"):
            table.add_column(col, overflow="fold")
        for v in views:
            table.add_row(
                v.id,
                v.status.value,
                str(v.total),
                str(v.counts.get(TaskStage.DONE, 0)),
                str(v.counts.get(TaskStage.FAILED, 0)),
                literal(v.source),
            )
        Console().print(table)


def cancel_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
) -> None:
    """Stop a batch, also one running in another terminal (within seconds). Resumable.

    Its Batch Mode jobs are cancelled at Google too (with the batch's key)."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    with handle_errors(False):
        from gs_video_report.config import resolve_keys  # see cli.common

        settings = settings_from(None)
        keys: list[PoolKey] = []
        if run_async(Engine(settings, clock=rt.clock).cancel_needs_keys(batch_id)):
            try:
                keys = resolve_keys(settings, flag=api_key, keys_file=keys_file)
            except (AuthError, ConfigError) as exc:
                typer.echo(f"warning: {literal(exc)}", err=True)
            for pool_key in keys:
                rt.secrets.add(pool_key.key.reveal())
        done = asyncio.run(Engine(settings, keys=keys, clock=rt.clock).cancel(batch_id))
        batch_id = printable(batch_id)
        resume = f"resume with: gs_videoreport resume {batch_id}"
        if done.result is CancelResult.ALREADY_FINISHED:
            typer.echo(f"{batch_id}: already finished ({done.status.value}); nothing to cancel")
        elif done.result is CancelResult.REQUESTED:
            typer.echo(
                f"{batch_id}: cancel requested; the process running it (PID {done.pid}) stops"
                f" within seconds ({resume})"
            )
        else:
            assert done.status is BatchStatus.CANCELLED
            typer.echo(f"{batch_id}: cancelled ({resume})")
            if done.jobs_left:
                typer.echo(
                    f"{done.jobs_left} job(s) keep running at Google (no key for them given:"
                    " --api-key or --keys-file); `resume` collects them",
                    err=True,
                )


def cleanup_command(
    ctx: typer.Context,
    days: Annotated[
        float,
        Opt(
            "--days",
            parser=number("--days", 0, 36_500, "a number of days from 0 to 36500"),
            help="Drop finished batches older than this many days",
        ),
    ] = 30,
    all_uploads: Annotated[
        bool,
        Opt(
            "--all-uploads",
            help="Also delete uploads of batches that could still be resumed "
            "(a resume then uploads those videos again)",
        ),
    ] = False,
    dry_run: Annotated[bool, Opt("--dry-run", help="Say what would go; change nothing")] = False,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Drop old finished batches and delete the uploaded Gemini files the tool still owns.
    Lessons and the skip-existing ledger are kept."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=not dry_run)
    console = Console(stderr=True, highlight=False)
    with handle_errors(verbose):
        from gs_video_report.config import resolve_keys  # see cli.common

        settings = settings_from(config)
        engine = Engine(settings, clock=rt.clock)
        if not engine.db_path.exists():
            console.print("Nothing to clean up (no batches yet).")
            return
        pool: list[PoolKey] = []
        if asyncio.run(engine.uploads_need_keys()):
            try:
                pool = resolve_keys(settings, flag=api_key, keys_file=keys_file)
            except (AuthError, ConfigError) as exc:
                console.print(f"[yellow]warning[/]: {literal(exc)}; uploaded files are left alone")
            for pool_key in pool:
                rt.secrets.add(pool_key.key.reveal())
        engine = Engine(settings, keys=pool, clock=rt.clock)
        report = asyncio.run(
            engine.cleanup(older_than_days=days, all_uploads=all_uploads, dry_run=dry_run)
        )
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "dry_run": dry_run,
                        "batches_dropped": report.batches_dropped,
                        "files_deleted": report.files_deleted,
                        "files_gone": report.files_gone,
                        "files_kept": report.files_kept,
                        "caches_deleted": report.caches_deleted,
                        "other_keys": sorted(report.other_keys),
                    }
                )
            )
            return
        verb = "would drop" if dry_run else "dropped"
        console.print(
            f"{verb} {len(report.batches_dropped)} batch(es) finished more than {days:g} days "
            f"ago; {'would delete' if dry_run else 'deleted'} {report.files_deleted} uploaded "
            f"file(s), {report.files_gone} already gone",
        )
        if report.files_kept:
            keys = literal(", ".join(sorted(report.other_keys)) or "no key given")
            console.print(
                f"{report.files_kept} uploaded file(s) kept: they belong to {keys} (run cleanup "
                "with that key) or could not be deleted now; they expire within 48 hours",
            )
