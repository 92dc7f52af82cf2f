"""``batch``, ``resume`` and ``retry-failed``: running batches (with Ctrl-C handling)."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from gs_video_report.batch.api import (
    BatchOutcome,
    BatchView,
    Engine,
    PlannedBatch,
    PlanRequest,
    RunOptions,
    new_batch_id,
    parse_params,
    read_stored_run,
)
from gs_video_report.cli.common import (
    ApiKeyOpt,
    ConfigOpt,
    JsonOpt,
    KeysFileOpt,
    ModelOpt,
    QuietOpt,
    SimulateOpt,
    VerboseOpt,
    api_target,
    fail,
    handle_errors,
    run_async,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.options import (
    CostLimitOpt,
    FormatOpt,
    MaxRetriesOpt,
    MaxUploadsOpt,
    ModeOpt,
    ParallelOpt,
    ProgressFileOpt,
    RunFlags,
    TimeoutOpt,
    formats_of,
)
from gs_video_report.cli.plan import plan_exit_code, plan_json, print_estimate, print_plan
from gs_video_report.cli.progress import ProgressMonitor
from gs_video_report.cli.signals import Interrupts
from gs_video_report.cli.summary import print_summary, resume_hint
from gs_video_report.cli.text import literal, printable
from gs_video_report.config import Settings
from gs_video_report.errors import ExitCode, UsageError
from gs_video_report.models import mmss

Opt = typer.Option


async def _ticker(monitor: ProgressMonitor) -> None:
    while True:
        await asyncio.sleep(1.0)  # display refresh: real time on purpose
        monitor.tick()


async def _run(
    engine: Engine,
    planned: PlannedBatch | None,
    batch_id: str,
    options: RunOptions,
    flags: RunFlags,
    interrupts: Interrupts,
) -> tuple[BatchOutcome, BatchView]:
    interrupts.install()
    try:
        console = Console(stderr=True, soft_wrap=True, highlight=False)
        if planned is not None:
            tasks, seconds = len(planned.plan.to_run), planned.plan.total_duration_s
        else:
            view = await engine.status(batch_id)
            todo = [t for t in view.tasks if not t.stage.finished]
            tasks, seconds = len(todo), sum(t.duration_s or 0.0 for t in todo)
        with ProgressMonitor(
            console,
            batch_id=batch_id,
            total_tasks=tasks,
            total_video_s=seconds,
            live=console.is_terminal and not flags.quiet,
            progress_file=flags.progress_file,
            max_lines=options.parallel + options.max_uploads,
        ) as monitor:
            ticker = asyncio.create_task(_ticker(monitor))
            control = interrupts.control
            try:
                if planned is not None:
                    outcome = await engine.start(
                        planned, options, reporter=monitor, control=control, batch_id=batch_id
                    )
                else:
                    outcome = await engine.resume(
                        batch_id, flags.changes, reporter=monitor, control=control
                    )
            finally:
                ticker.cancel()
            monitor.finish(outcome.stop_reason.value if outcome.stop_reason else "finished")
        return outcome, await engine.status(batch_id)
    finally:
        interrupts.uninstall()


def _execute(
    ctx: typer.Context,
    settings: Settings,
    batch_id: str,
    planned: PlannedBatch | None,
    options: RunOptions,
    flags: RunFlags,
) -> None:
    """Run or resume, report, and exit with the batch's code (resume command on any stop)."""
    rt = runtime(ctx)
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    interrupts = Interrupts()
    with api_target(
        rt, settings, simulate=options.simulated, api_key=flags.api_key, keys_file=flags.keys_file
    ) as (target, keys):
        engine = Engine(
            target,
            keys=keys,
            clock=rt.clock,
            config_file=flags.config,
            progress_file=flags.progress_file,
        )
        run = _run(engine, planned, batch_id, options, flags, interrupts)
        started = rt.clock.time()
        try:
            outcome, view = run_async(run)
        except (KeyboardInterrupt, asyncio.CancelledError):
            hint = literal(resume_hint(batch_id, flags))
            console.print(f"Stopped at once. Resume with: {hint}")
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    elapsed = rt.clock.time() - started
    print_summary(console, outcome, view, flags, elapsed_s=elapsed, simulated=options.simulated)
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
        list[str] | None,
        Opt("--template", "-t", help="Template for rows without one; repeat for several"),
    ] = None,
    param: Annotated[list[str] | None, Opt("--param", help="Template parameter key=value")] = None,
    output: Annotated[Path, Opt("--output", "-o", help="Output folder")] = Path("batch_output"),
    parallel: ParallelOpt = None,
    max_uploads: MaxUploadsOpt = None,
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
    max_retries: MaxRetriesOpt = None,
    timeout: TimeoutOpt = None,
    cost_limit: CostLimitOpt = None,
    progress_file: ProgressFileOpt = None,
    formats: FormatOpt = None,
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
    mode: ModeOpt = None,
) -> None:
    """Turn a folder, list or CSV of videos into lessons; resumable at any point."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=not dry_run)
    flags = RunFlags.of(locals())
    if resume_from:
        _resume(ctx, resume_from, flags)
        return
    sources = [s for s in (input_dir, file_list, url_list) if s is not None]
    if len(sources) != 1:
        raise fail(
            "give exactly one of --input-dir, --file-list, --url-list (or --resume-from)",
            ExitCode.USAGE,
        )
    with handle_errors(verbose):
        settings = settings_from(config, model=model)
        request = PlanRequest(
            output=output,
            input_dir=input_dir,
            file_list=file_list,
            url_list=url_list,
            templates=tuple(template or ()),
            params=parse_params(param or []),
            force=force,
            skip_existing=skip_existing,
        )
        _start(ctx, settings, request, flags, dry_run=dry_run)


def _start(
    ctx: typer.Context, settings: Settings, request: PlanRequest, flags: RunFlags, *, dry_run: bool
) -> None:
    """Plan, show the plan, and run it as a new batch (unless that was all)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    planned = run_async(Engine(settings, clock=runtime(ctx).clock).plan(request))
    _show_plan(console, planned, settings, flags, dry_run=dry_run)
    plan = planned.plan
    if flags.cost_limit is not None and not Engine(settings).priced(settings.model):
        raise UsageError(
            f"--cost-limit needs a price for {settings.model}: add it under 'prices' in "
            "the config file"
        )
    batch_id = new_batch_id()
    length = mmss(plan.total_duration_s)
    console.print(f"Batch {batch_id}: {len(plan.to_run)} video(s), {length} of video")
    reuse = not planned.request.force  # --force: generate again, reuse nothing
    formats = formats_of(flags.formats) or settings.output.formats
    templates = [t.video.template for t in plan.to_run]
    for note in Engine(settings).format_notes(templates, formats):
        console.print(f"note: {literal(note)}")
    run_mode = flags.mode or settings.run.mode  # stored with the batch: resume keeps it
    options = flags.changes.apply(
        RunOptions(simulated=flags.simulate, reuse=reuse, formats=formats, mode=run_mode)
    )
    _execute(ctx, settings, batch_id, planned, options, flags)


def _show_plan(
    console: Console, planned: PlannedBatch, settings: Settings, flags: RunFlags, *, dry_run: bool
) -> None:
    """The plan: on stderr before a run; on stdout with --dry-run (it is the result), as
    one JSON document with --json. Ends the command, with the plan's exit code, on
    --dry-run or when nothing is left to run."""
    plan = planned.plan
    mode = flags.mode or settings.run.mode
    if not dry_run:
        print_plan(console, plan, verbose=flags.verbose)
        if plan.to_run:
            return
    elif not flags.as_json:
        stdout = Console(soft_wrap=True, highlight=False)
        print_plan(stdout, plan, verbose=flags.verbose)
        print_estimate(stdout, planned, settings, mode)
    if flags.as_json:
        typer.echo(json.dumps(plan_json(planned, settings, dry_run=dry_run, mode=mode)))
    if not plan.to_run:
        console.print("Nothing to run.")
    code = plan_exit_code(plan)
    if code is ExitCode.INPUT:
        raise fail("no usable video in the input", code)
    raise typer.Exit(int(code))


def _resume(ctx: typer.Context, batch_id: str, flags: RunFlags) -> None:
    """Carry on with what the batch was started with, unless a flag says otherwise."""
    with handle_errors(flags.verbose):
        stored = asyncio.run(read_stored_run(batch_id))
        if flags.mode is not None and flags.mode != stored.options.mode:
            typer.echo(
                f"note: --mode {flags.mode} ignored: batch {printable(batch_id)} keeps its"
                f" --mode {stored.options.mode} (start a new batch for another mode)",
                err=True,
            )
        if flags.simulate and not stored.options.simulated:
            raise UsageError(
                f"batch {batch_id} ran against the real API; resume it without --simulate"
            )
        flags = replace(
            flags,
            config=flags.config or stored.config,
            progress_file=flags.progress_file or stored.progress_file,
        )
        settings = settings_from(flags.config, model=flags.model)
        _execute(ctx, settings, batch_id, None, flags.changes.apply(stored.options), flags)


def resume_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch to resume (see list-batches)")],
    parallel: ParallelOpt = None,
    max_uploads: MaxUploadsOpt = None,
    max_retries: MaxRetriesOpt = None,
    timeout: TimeoutOpt = None,
    cost_limit: CostLimitOpt = None,
    progress_file: ProgressFileOpt = None,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
) -> None:
    """Resume an interrupted, parked or failed-midway batch exactly where it stopped, with
    the settings it was started with (flags given here override them)."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=True)
    flags = RunFlags.of(locals())
    _resume(ctx, batch_id, flags)


def retry_failed_command(
    ctx: typer.Context,
    batch_id: Annotated[str, typer.Argument(help="Batch id")],
    parallel: ParallelOpt = None,
    max_uploads: MaxUploadsOpt = None,
    max_retries: MaxRetriesOpt = None,
    timeout: TimeoutOpt = None,
    cost_limit: CostLimitOpt = None,
    progress_file: ProgressFileOpt = None,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
    config: ConfigOpt = None,
    verbose: VerboseOpt = False,
    quiet: QuietOpt = False,
    as_json: JsonOpt = False,
    simulate: SimulateOpt = False,
) -> None:
    """Put a batch's failed videos back in the queue and run them."""
    rt = runtime(ctx)
    if api_key:
        rt.secrets.add(api_key.strip())
    setup_logging(rt, verbose=verbose, to_file=True)
    with handle_errors(verbose):
        settings = settings_from(config)
        queued = asyncio.run(Engine(settings, clock=rt.clock).requeue_failed(batch_id))
        typer.echo(f"{printable(batch_id)}: {queued} failed video(s) queued again", err=True)
    flags = RunFlags.of(locals())
    _resume(ctx, batch_id, flags)
