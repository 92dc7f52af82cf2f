"""``status``, ``list-batches``, ``cancel`` and ``cleanup``: looking after batches."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.cleanup import (
    CleanupReport,
    cleanup,
    simulated_batches,
    uploads_to_delete,
)
from gs_video_report.batch.runner import cancel_batch
from gs_video_report.cli.common import (
    ApiKeyOpt,
    ConfigOpt,
    JsonOpt,
    KeysFileOpt,
    VerboseOpt,
    db_path,
    fail,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.config import resolve_keys
from gs_video_report.errors import AuthError, ConfigError, ExitCode
from gs_video_report.services.gemini import GeminiService
from gs_video_report.storage import CheckpointManager, TaskStage, open_db

Opt = typer.Option


@asynccontextmanager
async def _store() -> AsyncIterator[CheckpointManager]:
    async with open_db(db_path()) as conn:
        yield CheckpointManager(conn)


def status_command(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    as_json: JsonOpt = False,
) -> None:
    """Per video: stage, attempts, last error, tokens, cost, output."""
    with handle_errors(False):

        async def read() -> tuple[dict[str, Any] | None, list[Any]]:
            async with open_db(db_path()) as conn:
                store = CheckpointManager(conn)
                return await store.batch(batch_id), await store.tasks(batch_id)

        batch, tasks = asyncio.run(read())
        if batch is None:
            raise fail(f"no batch {batch_id} (see gs_videoreport list-batches)", ExitCode.INPUT)
        rows = [
            {
                "video": t.display_name,
                "stage": t.stage.value,
                "attempts": t.attempts,
                "last_error": t.last_error,
                "tokens": t.total_tokens,
                "cost_usd": t.cost_usd,
                "output": t.output_md,
            }
            for t in tasks
        ]
        if as_json:
            typer.echo(
                json.dumps(
                    {"batch_id": batch_id, "status": batch["status"], "tasks": rows},
                    ensure_ascii=False,
                )
            )
            return
        table = Table(title=f"{batch_id} — {batch['status']}")
        for col in ("Video", "Stage", "Retries", "Tokens", "Cost", "Last error / output"):
            table.add_column(col, overflow="fold")
        for r in rows:
            cost = f"${r['cost_usd']:.4f}" if r["cost_usd"] is not None else "-"
            table.add_row(
                r["video"],
                r["stage"],
                str(r["attempts"]),
                str(r["tokens"] or "-"),
                cost,
                r["last_error"] or r["output"],
            )
        Console().print(table)


def list_batches_command(
    limit: Annotated[int, Opt("--limit", "-l", min=1)] = 10, as_json: JsonOpt = False
) -> None:
    """Recent batches, newest first."""
    with handle_errors(False):

        async def read() -> list[tuple[dict[str, Any], dict[TaskStage, int]]]:
            async with open_db(db_path()) as conn:
                store = CheckpointManager(conn)
                return [(b, await store.counts(b["id"])) for b in await store.batches(limit)]

        rows = asyncio.run(read())
        if as_json:
            listed = [
                {
                    "id": batch["id"],
                    "status": batch["status"],
                    "source": batch["source_desc"],
                    "created_at": batch["created_at"],
                    "counts": {stage.value: n for stage, n in counts.items()},
                }
                for batch, counts in rows
            ]
            typer.echo(json.dumps(listed))
            return
        table = Table(title="Batches")
        table.add_column("Batch", no_wrap=True)  # users copy it into `resume`
        for col in ("Status", "Videos", "Done", "Failed", "Source"):
            table.add_column(col, overflow="fold")
        for batch, counts in rows:
            table.add_row(
                batch["id"],
                batch["status"],
                str(sum(counts.values())),
                str(counts.get(TaskStage.DONE, 0)),
                str(counts.get(TaskStage.FAILED, 0)),
                batch["source_desc"],
            )
        Console().print(table)


def cancel_command(batch_id: Annotated[str, typer.Argument(help="Batch id")]) -> None:
    """Stop a batch, also one running in another terminal (within seconds). Resumable."""
    with handle_errors(False):

        async def cancel() -> str:
            async with open_db(db_path()) as conn:
                return await cancel_batch(CheckpointManager(conn), batch_id)

        typer.echo(
            f"{batch_id}: {asyncio.run(cancel())} (resume with: gs_videoreport resume {batch_id})"
        )


def cleanup_command(
    ctx: typer.Context,
    days: Annotated[
        float, Opt("--days", min=0, help="Drop finished batches older than this many days")
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
        settings = settings_from(config)
        if not db_path().exists():
            console.print("Nothing to clean up (no batches yet).")
            return

        async def run() -> CleanupReport:
            async with _store() as store, AsyncExitStack() as stack:
                simulated = await simulated_batches(store)
                uploads = await uploads_to_delete(store, all_uploads=all_uploads)
                services = {}
                if any(t.batch_id not in simulated for t in uploads):
                    try:
                        keys = resolve_keys(settings, flag=api_key, keys_file=keys_file)
                    except (AuthError, ConfigError) as exc:
                        console.print(f"[yellow]warning[/]: {exc}; uploaded files are left alone")
                        keys = []
                    for pool_key in keys:
                        rt.secrets.add(pool_key.key.reveal())
                        services[pool_key.fingerprint] = await stack.enter_async_context(
                            GeminiService(pool_key.key, settings.api, sleep=rt.sleep)
                        )
                return await cleanup(
                    store,
                    older_than_days=days,
                    now=time.time(),
                    all_uploads=all_uploads,
                    services=services,
                    dry_run=dry_run,
                )

        report = asyncio.run(run())
        if as_json:
            typer.echo(
                json.dumps(
                    {
                        "dry_run": dry_run,
                        "batches_dropped": report.batches_dropped,
                        "files_deleted": report.files_deleted,
                        "files_gone": report.files_gone,
                        "files_kept": report.files_kept,
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
            keys = ", ".join(sorted(report.other_keys)) or "no key given"
            console.print(
                f"{report.files_kept} uploaded file(s) kept: they belong to {keys} (run cleanup "
                "with that key) or could not be deleted now; they expire within 48 hours",
            )
