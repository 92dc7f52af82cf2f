"""``batch``, ``resume``, ``status``, ``list-batches``."""

from __future__ import annotations

import asyncio
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.cost import EXPECTED_OUTPUT_TOKENS, estimate_input_tokens, price_usd
from gs_video_report.batch.inputs import Inputs, read_file_list, read_url_list, scan_folder
from gs_video_report.batch.planner import Plan, build_plan
from gs_video_report.batch.runner import (
    BatchOutcome,
    RunOptions,
    cancel_batch,
    new_batch_id,
    record_plan,
    run_batch,
)
from gs_video_report.cli.common import (
    api_target,
    fail,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.progress import ProgressMonitor
from gs_video_report.config import Settings, home_dir
from gs_video_report.errors import ExitCode, StorageError
from gs_video_report.services.formatter import mmss
from gs_video_report.services.templates import TemplateRegistry, parse_params
from gs_video_report.services.writer import FileWriter
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from gs_video_report.storage.db import DB_NAME

Opt = typer.Option

# Options shared by batch, resume and retry-failed (one declaration, one help text).
ParallelOpt = Annotated[int, Opt("--parallel", "-p", min=1, max=32, help="Workers")]
MaxUploadsOpt = Annotated[int, Opt("--max-uploads", min=1, max=16, help="Concurrent uploads")]
MaxRetriesOpt = Annotated[int, Opt("--max-retries", min=0, max=10, help="Retries per video")]
ModelOpt = Annotated[str | None, Opt("--model", "-m", help="Gemini model")]
ApiKeyOpt = Annotated[
    str | None, Opt("--api-key", "-k", help="Gemini API key (prefer $GEMINI_API_KEY)")
]
ConfigOpt = Annotated[Path | None, Opt("--config", "-c", help="Config file")]
VerboseOpt = Annotated[bool, Opt("--verbose", "-v", help="Debug logs and tracebacks")]
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="No progress bars")]
JsonOpt = Annotated[bool, Opt("--json", help="Machine-readable summary on stdout")]
SimulateOpt = Annotated[bool, Opt("--simulate", help="Use the built-in Gemini simulator")]


def _db_path() -> Path:
    return home_dir() / DB_NAME


def _inputs(
    input_dir: Path | None, file_list: Path | None, url_list: Path | None, output: Path
) -> Inputs:
    if input_dir is not None:
        return scan_folder(input_dir, skip=output)
    if file_list is not None:
        return read_file_list(file_list)
    assert url_list is not None
    return read_url_list(url_list)


def _print_plan(console: Console, plan: Plan, settings: Settings, dry_run: bool) -> None:
    for problem in plan.problems:
        console.print(f"[yellow]skipped[/] {problem.origin}: {problem.message}", highlight=False)
    for task in plan.skipped:
        console.print(f"[dim]skip[/] {task.entry.text}: {task.skip_reason}", highlight=False)
    if not dry_run:
        return
    table = Table(title=f"Would run {len(plan.to_run)} video(s)")
    for col in ("Video", "Template", "Duration", "Est. tokens", "Output"):
        table.add_column(col, overflow="fold")
    tokens_total = 0
    for task in plan.to_run:
        video = task.video
        tokens = estimate_input_tokens(video.duration_s, video.template.generation, video.prompt)
        tokens_total += tokens
        duration = mmss(video.duration_s) if video.duration_s else "?"
        table.add_row(
            video.source.display_name,
            video.template.name,
            duration,
            f"{tokens:,}",
            str(video.files.markdown),
        )
    console.print(table)
    cost = price_usd(
        settings.model,
        tokens_total,
        EXPECTED_OUTPUT_TOKENS * len(plan.to_run),
        datetime.now(UTC).date(),
    )
    cost_text = f"${cost:.2f}" if cost is not None else "unknown (no price for this model)"
    console.print(
        f"Total video {mmss(plan.total_duration_s)} · ~{tokens_total:,} input tokens · "
        f"estimated cost {cost_text} with {settings.model}",
        highlight=False,
    )


def _summary(console: Console, outcome: BatchOutcome, as_json: bool) -> None:
    counts = {stage.value: n for stage, n in outcome.counts.items()}
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "batch_id": outcome.batch_id,
                    "report": str(outcome.report_dir) if outcome.report_dir else None,
                    "counts": counts,
                    "stop_reason": outcome.stop_reason,
                    "exit_code": int(outcome.exit_code),
                }
            )
        )
        return
    parts = " · ".join(f"{n} {stage}" for stage, n in sorted(counts.items()))
    console.print(f"Batch {outcome.batch_id}: {parts or 'nothing to do'}", highlight=False)
    if outcome.report_dir is not None:
        console.print(f"Report: {outcome.report_dir / 'summary.md'}", highlight=False)
    if outcome.stop_reason:
        console.print(
            f"[yellow]Stopped ({outcome.stop_reason})[/]: {outcome.stop_message or ''}",
            highlight=False,
        )
        console.print(f"Resume with: gs_videoreport resume {outcome.batch_id}", highlight=False)


async def _run(
    ctx: typer.Context,
    settings: Settings,
    batch_id: str,
    plan: Plan | None,
    options: RunOptions,
    *,
    simulate: bool,
    api_key: str | None,
    quiet: bool,
    source_desc: str,
    output: Path,
) -> BatchOutcome:
    rt = runtime(ctx)
    registry = TemplateRegistry.with_builtins(settings.templates.dirs)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    async with open_db(_db_path()) as conn:
        store = CheckpointManager(conn)
        with api_target(rt, settings, simulate=simulate, api_key=api_key) as (target, key):
            if plan is not None:
                snapshot: dict[str, Any] = {
                    "model": target.model,
                    "parallel": options.parallel,
                    "max_uploads": options.max_uploads,
                    "max_retries": options.max_retries,
                    "simulated": simulate,
                    "source": source_desc,
                }
                await record_plan(
                    store,
                    plan,
                    batch_id=batch_id,
                    source_desc=source_desc,
                    output_dir=str(output),
                    snapshot=snapshot,
                )
            tasks = [t for t in await store.tasks(batch_id) if not t.stage.finished]
            total_s = sum(t.duration_s or 0.0 for t in tasks)
            live = console.is_terminal and not quiet
            with ProgressMonitor(
                console, total_tasks=len(tasks), total_video_s=total_s, live=live
            ) as monitor:
                return await run_batch(
                    store,
                    batch_id,
                    settings=target,
                    key=key,
                    options=options,
                    registry=registry,
                    sleep=rt.sleep,
                    on_stage=monitor.on_stage,
                )


def _execute(
    ctx: typer.Context,
    settings: Settings,
    batch_id: str,
    plan: Plan | None,
    options: RunOptions,
    *,
    simulate: bool,
    api_key: str | None,
    quiet: bool,
    as_json: bool,
    source_desc: str,
    output: Path,
) -> None:
    """Run or resume, report, and exit with the batch's code (resume command on any stop)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    try:
        outcome = asyncio.run(
            _run(
                ctx,
                settings,
                batch_id,
                plan,
                options,
                simulate=simulate,
                api_key=api_key,
                quiet=quiet,
                source_desc=source_desc,
                output=output,
            )
        )
    except KeyboardInterrupt:
        console.print(f"Interrupted. Resume with: gs_videoreport resume {batch_id}")
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    _summary(console, outcome, as_json)
    if plan is not None and plan.problems and outcome.exit_code == ExitCode.OK:
        raise typer.Exit(int(ExitCode.PARTIAL))  # some inputs could not be used
    raise typer.Exit(int(outcome.exit_code))


def batch_command(
    ctx: typer.Context,
    input_dir: Annotated[
        Path | None, Opt("--input-dir", "-d", help="Folder of videos (recursive)")
    ] = None,
    file_list: Annotated[
        Path | None, Opt("--file-list", "-f", help="Text file: one path or URL per line")
    ] = None,
    url_list: Annotated[
        Path | None, Opt("--url-list", "-u", help="CSV: url|path[,template,output_name,params...]")
    ] = None,
    template: Annotated[
        str | None, Opt("--template", "-t", help="Template for rows without one")
    ] = None,
    param: Annotated[list[str] | None, Opt("--param", help="Template parameter key=value")] = None,
    output: Annotated[Path, Opt("--output", "-o", help="Output folder")] = Path("batch_output"),
    parallel: ParallelOpt = 4,
    max_uploads: MaxUploadsOpt = 2,
    resume_from: Annotated[
        str | None, Opt("--resume-from", help="Resume this batch instead")
    ] = None,
    dry_run: Annotated[
        bool, Opt("--dry-run", help="Show the plan; call and write nothing")
    ] = False,
    skip_existing: Annotated[
        bool, Opt("--skip-existing/--no-skip-existing", help="Skip videos already done")
    ] = True,
    force: Annotated[bool, Opt("--force", help="Redo videos even if already done")] = False,
    max_retries: MaxRetriesOpt = 3,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
) -> None:
    """Turn a folder, list or CSV of videos into lessons; resumable at any point."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=not dry_run)
    if resume_from:
        _resume(
            ctx,
            resume_from,
            config=config,
            model=model,
            api_key=api_key,
            parallel=parallel,
            max_uploads=max_uploads,
            max_retries=max_retries,
            simulate=simulate,
            verbose=verbose,
            quiet=quiet,
            as_json=as_json,
        )
        return
    sources = [s for s in (input_dir, file_list, url_list) if s is not None]
    if len(sources) != 1:
        raise fail(
            "give exactly one of --input-dir, --file-list, --url-list (or --resume-from)",
            ExitCode.USAGE,
        )
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    with handle_errors(verbose):
        settings = settings_from(config, model=model)
        registry = TemplateRegistry.with_builtins(settings.templates.dirs)
        inputs = _inputs(input_dir, file_list, url_list, output)
        ledger = None
        if skip_existing and not force and _db_path().exists():

            async def read_ledger() -> Any:
                async with open_db(_db_path()) as conn:
                    return await CheckpointManager(conn).done_ledger()

            ledger = asyncio.run(read_ledger())
        plan = build_plan(
            inputs,
            settings=settings,
            registry=registry,
            writer=FileWriter(output),
            template=template,
            params=parse_params(param or []),
            ledger=ledger,
            force=force,
        )
        _print_plan(console, plan, settings, dry_run)
        if dry_run:
            return
        if not plan.to_run:
            console.print("Nothing to run.")
            if plan.problems and not plan.skipped:
                raise fail("no usable video in the input", ExitCode.INPUT)
            return
        batch_id = new_batch_id()
        length = mmss(plan.total_duration_s)
        console.print(f"Batch {batch_id}: {len(plan.to_run)} video(s), {length} of video")
        options = RunOptions(parallel, max_uploads, max_retries, simulate)
        desc = (
            f"--input-dir {input_dir}"
            if input_dir
            else f"--file-list {file_list}"
            if file_list
            else f"--url-list {url_list}"
        )
        _execute(
            ctx,
            settings,
            batch_id,
            plan,
            options,
            simulate=simulate,
            api_key=api_key,
            quiet=quiet,
            as_json=as_json,
            source_desc=desc,
            output=output,
        )


def _resume(
    ctx: typer.Context,
    batch_id: str,
    *,
    config: Path | None,
    model: str | None,
    api_key: str | None,
    parallel: int,
    max_uploads: int,
    max_retries: int,
    simulate: bool,
    verbose: bool,
    quiet: bool,
    as_json: bool,
) -> None:
    with handle_errors(verbose):
        settings = settings_from(config, model=model)
        options = RunOptions(parallel, max_uploads, max_retries, simulate)
        _execute(
            ctx,
            settings,
            batch_id,
            None,
            options,
            simulate=simulate,
            api_key=api_key,
            quiet=quiet,
            as_json=as_json,
            source_desc="",
            output=Path(),
        )


def resume_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch to resume (see list-batches)")],
    parallel: ParallelOpt = 4,
    max_uploads: MaxUploadsOpt = 2,
    max_retries: MaxRetriesOpt = 3,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
) -> None:
    """Resume an interrupted, parked or failed-midway batch exactly where it stopped."""
    rt = runtime(ctx)
    setup_logging(rt, verbose=verbose, to_file=True)
    _resume(
        ctx,
        batch_id,
        config=config,
        model=model,
        api_key=api_key,
        parallel=parallel,
        max_uploads=max_uploads,
        max_retries=max_retries,
        simulate=simulate,
        verbose=verbose,
        quiet=quiet,
        as_json=as_json,
    )


def status_command(
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    as_json: JsonOpt = False,
) -> None:
    """Per video: stage, attempts, last error, tokens, cost, output."""
    with handle_errors(False):

        async def read() -> tuple[dict[str, Any] | None, list[Any]]:
            async with open_db(_db_path()) as conn:
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
        for col in ("Video", "Stage", "Tries", "Tokens", "Cost", "Last error / output"):
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


def list_batches_command(limit: Annotated[int, Opt("--limit", "-l", min=1)] = 10) -> None:
    """Recent batches, newest first."""
    with handle_errors(False):

        async def read() -> list[tuple[dict[str, Any], dict[TaskStage, int]]]:
            async with open_db(_db_path()) as conn:
                store = CheckpointManager(conn)
                return [(b, await store.counts(b["id"])) for b in await store.batches(limit)]

        table = Table(title="Batches")
        table.add_column("Batch", no_wrap=True)  # users copy it into `resume`
        for col in ("Status", "Videos", "Done", "Failed", "Source"):
            table.add_column(col, overflow="fold")
        for batch, counts in asyncio.run(read()):
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
            async with open_db(_db_path()) as conn:
                return await cancel_batch(CheckpointManager(conn), batch_id)

        typer.echo(
            f"{batch_id}: {asyncio.run(cancel())} (resume with: gs_videoreport resume {batch_id})"
        )


def retry_failed_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    parallel: ParallelOpt = 4,
    max_uploads: MaxUploadsOpt = 2,
    max_retries: MaxRetriesOpt = 3,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
) -> None:
    """Put a batch's failed videos back in the queue and run them."""
    rt = runtime(ctx)
    setup_logging(rt, verbose=verbose, to_file=True)
    with handle_errors(verbose):

        async def requeue() -> int:
            async with open_db(_db_path()) as conn:
                store = CheckpointManager(conn)
                if await store.batch(batch_id) is None:
                    raise StorageError(f"no batch {batch_id} (see gs_videoreport list-batches)")
                return await store.requeue_failed(batch_id, time.time())

        typer.echo(f"{batch_id}: {asyncio.run(requeue())} failed video(s) queued again", err=True)
    _resume(
        ctx,
        batch_id,
        config=config,
        model=model,
        api_key=api_key,
        parallel=parallel,
        max_uploads=max_uploads,
        max_retries=max_retries,
        simulate=simulate,
        verbose=verbose,
        quiet=quiet,
        as_json=as_json,
    )
