"""``batch``, ``resume`` and ``retry-failed``: running batches (with Ctrl-C handling)."""

from __future__ import annotations

import asyncio
import json
import shlex
import signal
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from gs_video_report.batch.cost import EXPECTED_OUTPUT_TOKENS, Prices, estimate_input_tokens, usd
from gs_video_report.batch.inputs import Inputs, read_file_list, read_url_list, scan_folder
from gs_video_report.batch.parts import input_limit, spans
from gs_video_report.batch.planner import Plan, build_plan
from gs_video_report.batch.runner import (
    BatchOutcome,
    RunOptions,
    new_batch_id,
    record_plan,
    run_batch,
)
from gs_video_report.batch.workers import WorkerPool
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
    db_path,
    fail,
    handle_errors,
    runtime,
    settings_from,
    setup_logging,
)
from gs_video_report.cli.progress import ProgressMonitor
from gs_video_report.config import Settings
from gs_video_report.errors import ExitCode, UnknownBatchError, UsageError
from gs_video_report.services.formatter import mmss
from gs_video_report.services.templates import TemplateRegistry, load_template, parse_params
from gs_video_report.services.writer import FileWriter
from gs_video_report.storage import CheckpointManager, open_db

Opt = typer.Option


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
    for col in ("Video", "Template", "Duration", "Parts", "Est. tokens", "Output"):
        table.add_column(col, overflow="fold")
    tokens_total = 0
    calls = 0
    for task in plan.to_run:
        video = task.video
        tokens = estimate_input_tokens(video.duration_s, video.template.generation, video.prompt)
        tokens_total += tokens
        duration = mmss(video.duration_s) if video.duration_s else "?"
        bounds = spans(
            video.duration_s,
            settings.video.part_minutes * 60,
            video.template.generation,
            input_limit(settings.model),
        )
        calls += max(1, len(bounds))
        split = ", ".join(f"{mmss(a)}-{mmss(b)}" for a, b in bounds) if bounds else "1"
        table.add_row(
            video.source.display_name,
            video.template.name,
            duration,
            split,
            f"{tokens:,}",
            str(video.files.markdown),
        )
    console.print(table)
    cost = Prices(settings.prices).usd(settings.model, tokens_total, EXPECTED_OUTPUT_TOKENS * calls)
    cost_text = usd(cost) if cost is not None else "unknown (no price for this model)"
    console.print(
        f"Total video {mmss(plan.total_duration_s)} · ~{tokens_total:,} input tokens · "
        f"estimated cost {cost_text} with {settings.model}",
        highlight=False,
    )
    limits = settings.limits_for(settings.model)
    minutes = max(
        calls / limits.rpm if limits.rpm else 0.0,
        tokens_total / limits.tpm if limits.tpm else 0.0,
    )
    if minutes:
        console.print(
            f"Rate limits (rpm {limits.rpm or '-'}, tpm {limits.tpm or '-'}) allow this in no "
            f"less than {mmss(minutes * 60)}",
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
    if resume is None:
        return
    console.print(f"[yellow]Stopped ({outcome.stop_reason})[/]: {outcome.stop_message or ''}")
    if outcome.stop_reason == "budget":
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

    def options(self, base: RunOptions) -> RunOptions:
        given: dict[str, Any] = {
            "parallel": self.parallel,
            "max_uploads": self.max_uploads,
            "max_retries": self.max_retries,
            "timeout_s": self.timeout,
            "cost_limit_usd": self.cost_limit,
        }
        return replace(
            base,
            simulated=base.simulated or self.simulate,
            **{k: v for k, v in given.items() if v is not None},
        )


def _snapshot(options: RunOptions, flags: RunFlags, model: str, source: str) -> dict[str, Any]:
    """What a resume needs to carry on as started (never the key)."""
    return {
        "model": model,
        "source": source,
        **asdict(options),
        "config": str(flags.config.resolve()) if flags.config else None,
        "progress_file": str(flags.progress_file.resolve()) if flags.progress_file else None,
    }


class _Interrupts:
    """Ctrl-C once: stop claiming work and let the calls in flight finish. Twice: stop at
    once (what was in flight is redone by the next resume, nothing else). SIGTERM counts
    as once, so a service manager gets a clean stop."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.pool: WorkerPool | None = None
        self.presses = 0
        self._main: asyncio.Task[Any] | None = None
        self._installed: list[signal.Signals] = []

    def install(self) -> None:
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig, handler in ((signal.SIGINT, self.press), (signal.SIGTERM, self.soft)):
            try:
                loop.add_signal_handler(sig, handler)
                self._installed.append(sig)
            except (NotImplementedError, RuntimeError, ValueError):
                pass  # not the main thread, or Windows: KeyboardInterrupt still works

    def uninstall(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def soft(self) -> None:
        if self.pool is not None:
            self.pool.request_stop("interrupted", "stopped by a signal; in-flight calls finished")
        elif self._main is not None:
            self._main.cancel()

    def press(self) -> None:
        self.presses += 1
        if self.presses == 1 and self.pool is not None:
            self.pool.request_stop("interrupted", "interrupted (Ctrl-C)")
            self.console.print(
                "\nCtrl-C: finishing the calls in flight, then stopping "
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
    ctx: typer.Context,
    settings: Settings,
    batch_id: str,
    plan: Plan | None,
    options: RunOptions,
    flags: RunFlags,
    *,
    source_desc: str,
    output: Path,
    interrupts: _Interrupts,
) -> BatchOutcome:
    rt = runtime(ctx)
    interrupts.install()
    try:
        registry = TemplateRegistry.with_builtins(settings.templates.dirs)
        console = Console(stderr=True, soft_wrap=True, highlight=False)
        async with open_db(db_path()) as conn:
            store = CheckpointManager(conn)
            with api_target(
                rt,
                settings,
                simulate=options.simulated,
                api_key=flags.api_key,
                keys_file=flags.keys_file,
            ) as (target, keys):
                if plan is not None:
                    # templates given by path: stored, so a resume finds them by name
                    files = sorted(
                        {
                            str(t.video.template.path.resolve())
                            for t in plan.to_run
                            if t.video.template.name not in registry.names()
                        }
                    )
                    await record_plan(
                        store,
                        plan,
                        batch_id=batch_id,
                        source_desc=source_desc,
                        output_dir=str(output),
                        snapshot={
                            **_snapshot(options, flags, target.model, source_desc),
                            "template_files": files,
                        },
                    )
                batch = await store.batch(batch_id)
                stored = json.loads(batch["settings_json"]) if batch else {}
                for file in stored.get("template_files", []):
                    registry.add(load_template(Path(file)))
                tasks = [t for t in await store.tasks(batch_id) if not t.stage.finished]
                live = console.is_terminal and not flags.quiet
                with ProgressMonitor(
                    console,
                    batch_id=batch_id,
                    total_tasks=len(tasks),
                    total_video_s=sum(t.duration_s or 0.0 for t in tasks),
                    live=live,
                    progress_file=flags.progress_file,
                ) as monitor:
                    ticker = asyncio.create_task(_ticker(monitor))

                    def on_pool(pool: WorkerPool) -> None:
                        interrupts.pool = pool

                    try:
                        outcome = await run_batch(
                            store,
                            batch_id,
                            settings=target,
                            keys=keys,
                            options=options,
                            registry=registry,
                            sleep=rt.sleep,
                            on_stage=monitor.on_stage,
                            on_pool=on_pool,
                        )
                    finally:
                        ticker.cancel()
                    monitor.finish(outcome.stop_reason or "finished")
                    return outcome
    finally:
        interrupts.uninstall()


def _execute(
    ctx: typer.Context,
    settings: Settings,
    batch_id: str,
    plan: Plan | None,
    options: RunOptions,
    flags: RunFlags,
    *,
    source_desc: str = "",
    output: Path = Path(),
) -> None:
    """Run or resume, report, and exit with the batch's code (resume command on any stop)."""
    console = Console(stderr=True, soft_wrap=True, highlight=False)
    interrupts = _Interrupts(console)
    try:
        outcome = asyncio.run(
            _run(
                ctx,
                settings,
                batch_id,
                plan,
                options,
                flags,
                source_desc=source_desc,
                output=output,
                interrupts=interrupts,
            )
        )
    except (KeyboardInterrupt, asyncio.CancelledError):
        console.print(
            f"Stopped at once. Resume with: {_resume_hint(batch_id, flags)}", highlight=False
        )
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    _summary(console, outcome, flags)
    if plan is not None and plan.problems and outcome.exit_code == ExitCode.OK:
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
        registry = TemplateRegistry.with_builtins(settings.templates.dirs)
        inputs = _inputs(input_dir, file_list, url_list, output)
        ledger = None
        if skip_existing and not force and db_path().exists():

            async def read_ledger() -> Any:
                async with open_db(db_path()) as conn:
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
            if plan.problems and not plan.to_run and not plan.skipped:  # as a real run would
                raise fail("no usable video in the input", ExitCode.INPUT)
            return
        if not plan.to_run:
            console.print("Nothing to run.")
            if plan.problems and not plan.skipped:
                raise fail("no usable video in the input", ExitCode.INPUT)
            return
        if cost_limit is not None and Prices(settings.prices).on(settings.model) is None:
            raise UsageError(
                f"--cost-limit needs a price for {settings.model}: add it under 'prices' in "
                "the config file"
            )
        batch_id = new_batch_id()
        length = mmss(plan.total_duration_s)
        console.print(f"Batch {batch_id}: {len(plan.to_run)} video(s), {length} of video")
        desc = (
            f"--input-dir {input_dir}"
            if input_dir
            else f"--file-list {file_list}"
            if file_list
            else f"--url-list {url_list}"
        )
        options = flags.options(RunOptions())
        _execute(ctx, settings, batch_id, plan, options, flags, source_desc=desc, output=output)


def _resume(ctx: typer.Context, batch_id: str, flags: RunFlags) -> None:
    """Carry on with what the batch was started with, unless a flag says otherwise."""
    with handle_errors(flags.verbose):

        async def read() -> dict[str, Any] | None:
            async with open_db(db_path()) as conn:
                return await CheckpointManager(conn).batch(batch_id)

        batch = asyncio.run(read()) if db_path().exists() else None
        if batch is None:
            raise UnknownBatchError(batch_id)
        snapshot: dict[str, Any] = json.loads(batch["settings_json"])
        known = {f.name for f in fields(RunOptions)}
        base = RunOptions(**{k: v for k, v in snapshot.items() if k in known})
        if flags.simulate and not base.simulated:
            raise UsageError(
                f"batch {batch_id} ran against the real API; resume it without --simulate"
            )
        config = flags.config
        if config is None and snapshot.get("config"):
            config = Path(snapshot["config"])
        progress = flags.progress_file
        if progress is None and snapshot.get("progress_file"):
            progress = Path(snapshot["progress_file"])
        flags = replace(flags, config=config, progress_file=progress)
        settings = settings_from(config, model=flags.model)
        _execute(ctx, settings, batch_id, None, flags.options(base), flags)


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

        async def requeue() -> int:
            async with open_db(db_path()) as conn:
                store = CheckpointManager(conn)
                if await store.batch(batch_id) is None:
                    raise UnknownBatchError(batch_id)
                return await store.requeue_failed(batch_id, time.time())

        typer.echo(f"{batch_id}: {asyncio.run(requeue())} failed video(s) queued again", err=True)
    flags = RunFlags.of(locals())
    _resume(ctx, batch_id, flags)
