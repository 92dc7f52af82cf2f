"""``batch``, ``resume`` and ``retry-failed``: running batches (with Ctrl-C handling)."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.api import (
    BatchOutcome,
    Engine,
    PlannedBatch,
    PlanRequest,
    RunChanges,
    RunControl,
    RunOptions,
    new_batch_id,
    parse_params,
    read_stored_run,
)
from gs_video_report.batch.cost import usd
from gs_video_report.batch.planner import estimate_plan
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
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.progress import ProgressMonitor
from gs_video_report.errors import ExitCode, UsageError
from gs_video_report.models import StopReason, mmss

if TYPE_CHECKING:
    from gs_video_report.config import Settings

Opt = typer.Option


def _print_plan(console: Console, planned: PlannedBatch, settings: Settings, dry_run: bool) -> None:
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


def _resume_hint(batch_id: str, flags: RunFlags) -> str:
    """The exact command that resumes ``batch_id``, with the keys and config it ran with
    (its other settings are stored with the batch)."""
    command = ["gs_videoreport", "resume", batch_id]
    if flags.keys_file is not None:
        command += ["--keys-file", str(flags.keys_file)]
    if flags.config is not None:
        command += ["-c", str(flags.config)]
    return shlex.join(command)


def _summary(console: Console, outcome: BatchOutcome, flags: RunFlags) -> None:
    """The end of a run: counts and report (stdout JSON with --json); on any resumable
    stop, why and the exact command that resumes it (always on stderr)."""
    as_json = flags.as_json
    counts = {stage.value: n for stage, n in outcome.counts.items()}
    resume = _resume_hint(outcome.batch_id, flags) if outcome.stop_reason else None
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


@dataclass(frozen=True)
class RunFlags:
    """Flags shared by batch, resume and retry-failed. ``None``: not given (a resume then
    keeps what the batch was started with)."""

    parallel: int | None = None
    max_uploads: int | None = None
    max_retries: int | None = None
    timeout: float | None = None
    cost_limit: float | None = None
    progress_file: Path | None = None
    model: str | None = None
    api_key: str | None = None
    keys_file: Path | None = None
    config: Path | None = None
    verbose: bool = False
    quiet: bool = False
    as_json: bool = False
    simulate: bool = False

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> RunFlags:
        """From a command's parameters (named as the fields), ignoring the others."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def changes(self) -> RunChanges:
        return RunChanges(
            self.parallel, self.max_uploads, self.max_retries, self.timeout, self.cost_limit
        )


class _Interrupts:
    """Ctrl-C once: stop claiming work and let the calls in flight finish. Twice: stop at
    once (what was in flight is redone by the next resume, nothing else). SIGTERM and
    SIGHUP mean what Ctrl-C means, so a service manager or a closed terminal gets a clean
    stop."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.control = RunControl()
        self.presses = 0
        self._main: asyncio.Task[Any] | None = None
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            try:
                loop.add_signal_handler(sig, self.press, sig)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or Windows: KeyboardInterrupt still works

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def press(self, sig: signal.Signals = signal.SIGINT) -> None:
        self.presses += 1
        name = "Ctrl-C" if sig is signal.SIGINT else sig.name
        if self.presses == 1:
            self.control.request_stop(StopReason.INTERRUPTED, f"interrupted ({name})")
            self.console.print(
                f"\n{name}: finishing the calls in flight, then stopping "
                "(press Ctrl-C again to stop at once)",
                highlight=False,
            )
        elif self._main is not None:
            self._main.cancel()


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
    interrupts: _Interrupts,
) -> BatchOutcome:
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
            return outcome
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
    interrupts = _Interrupts(console)
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
        try:
            outcome = asyncio.run(run)
        except (KeyboardInterrupt, asyncio.CancelledError):
            console.print(
                f"Stopped at once. Resume with: {_resume_hint(batch_id, flags)}", highlight=False
            )
            raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    _summary(console, outcome, flags)
    if planned is not None and planned.plan.problems and outcome.exit_code == ExitCode.OK:
        raise typer.Exit(int(ExitCode.PARTIAL))  # some inputs could not be used
    raise typer.Exit(int(outcome.exit_code))


# Options shared by batch, resume and retry-failed (one declaration, one help text).
ParallelOpt = Annotated[
    int | None, Opt("--parallel", "-p", min=1, max=32, help="Workers [default: 4]")
]
MaxUploadsOpt = Annotated[
    int | None, Opt("--max-uploads", min=1, max=16, help="Concurrent uploads [default: 2]")
]
MaxRetriesOpt = Annotated[
    int | None, Opt("--max-retries", min=0, max=10, help="Retries per video [default: 3]")
]
TimeoutOpt = Annotated[
    float | None,
    Opt(
        "--timeout",
        min=1,
        help="Seconds a video's generate call may take before it is retried with a longer "
        "timeout [default: api.request_timeout]",
    ),
]
CostLimitOpt = Annotated[
    float | None,
    Opt(
        "--cost-limit",
        min=0,
        help="Stop before the batch's spend (earlier runs included) would pass this many USD",
    ),
]
ProgressFileOpt = Annotated[
    Path | None, Opt("--progress-file", help="Keep a JSON progress snapshot here")
]


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
    model: ModelOpt = None,
    api_key: ApiKeyOpt = None,
    keys_file: KeysFileOpt = None,
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
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    with handle_errors(verbose):
        settings = settings_from(config, model=model)
        request = PlanRequest(
            output=output,
            input_dir=input_dir,
            file_list=file_list,
            url_list=url_list,
            template=template,
            params=parse_params(param or []),
            force=force,
            skip_existing=skip_existing,
        )
        planned = asyncio.run(Engine(settings, clock=runtime(ctx).clock).plan(request))
        plan = planned.plan
        _print_plan(console, planned, settings, dry_run)
        if dry_run:
            if plan.problems and not plan.to_run and not plan.skipped:  # as a real run would
                raise fail("no usable video in the input", ExitCode.INPUT)
            return
        if not plan.to_run:
            console.print("Nothing to run.")
            if plan.problems and not plan.skipped:
                raise fail("no usable video in the input", ExitCode.INPUT)
            return
        if cost_limit is not None and not Engine(settings).priced(settings.model):
            raise UsageError(
                f"--cost-limit needs a price for {settings.model}: add it under 'prices' in "
                "the config file"
            )
        batch_id = new_batch_id()
        length = mmss(plan.total_duration_s)
        console.print(f"Batch {batch_id}: {len(plan.to_run)} video(s), {length} of video")
        options = flags.changes.apply(RunOptions(simulated=simulate, reuse=not force))
        _execute(ctx, settings, batch_id, planned, options, flags)


def _resume(ctx: typer.Context, batch_id: str, flags: RunFlags) -> None:
    """Carry on with what the batch was started with, unless a flag says otherwise."""
    with handle_errors(flags.verbose):
        stored = asyncio.run(read_stored_run(batch_id))
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
        typer.echo(f"{batch_id}: {queued} failed video(s) queued again", err=True)
    flags = RunFlags.of(locals())
    _resume(ctx, batch_id, flags)
