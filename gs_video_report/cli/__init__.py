"""The command line. The only layer that imports typer and rich, and the only one that
prints. Every command turns our exceptions into one line on stderr and an exit code."""

from __future__ import annotations

import difflib
import importlib
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
import typer.main
from typer import _click as click  # typer vendors click: its groups hold its commands
from typer._click.exceptions import ClickException, UsageError
from typer.core import TyperCommand, TyperGroup

from gs_video_report import __version__
from gs_video_report.cli.common import output_closed, quiet_exit
from gs_video_report.cli.text import printable
from gs_video_report.errors import ExitCode

EXIT_CODES = """Exit codes: 0 success · 1 some videos failed or inputs rejected · 2 usage
error · 3 bad input or configuration · 4 authentication or permission · 5 quota or budget
exhausted (resumable) · 6 offline: the Gemini API could not be reached (resumable) ·
130 interrupted (resumable) · 141 output closed (| head)"""


@dataclass(frozen=True)
class _Lazy:
    """A command whose module is imported only when it runs (or shows its own help):
    ``--help`` and ``version`` load none of the others (their Rich widgets, the
    engine's API, the settings). ``summary`` is what the root's help lists — the first
    paragraph of the command's docstring (``tests/test_startup.py`` checks they agree)."""

    module: str
    function: str
    summary: str
    epilog: bool = False  # the exit codes under its own help


# Registration order is the order --help lists them in.
COMMANDS: dict[str, _Lazy] = {
    "main": _Lazy(
        "single",
        "main_command",
        "Turn one video (file or YouTube URL) into a lesson (Markdown + JSON answer, and the\n"
        "other --format files).\n"
        "It runs as a one-video batch: interrupted, it resumes when run again.",
        epilog=True,
    ),
    "batch": _Lazy(
        "batch",
        "batch_command",
        "Turn a folder, list or CSV of videos into lessons; resumable at any point.",
        epilog=True,
    ),
    "resume": _Lazy(
        "batch",
        "resume_command",
        "Resume an interrupted, parked or failed-midway batch exactly where it stopped, with\n"
        "the settings it was started with (flags given here override them).",
        epilog=True,
    ),
    "status": _Lazy(
        "manage", "status_command", "Per video: stage, attempts, last error, tokens, cost, output."
    ),
    "cancel": _Lazy(
        "manage",
        "cancel_command",
        "Stop a batch, also one running in another terminal (within seconds). Resumable.",
    ),
    "retry-failed": _Lazy(
        "batch",
        "retry_failed_command",
        "Put a batch's failed videos back in the queue and run them.",
        epilog=True,
    ),
    "list-batches": _Lazy(
        "manage",
        "list_batches_command",
        "Recent batches, newest first (``main`` runs are one-video batches).",
    ),
    "render": _Lazy(
        "render",
        "render_command",
        "Rebuild lessons from their JSON sidecars with no API call: after a template's\n"
        "layout changed, in another format (--format md,html,srt,vtt), or into another folder.\n"
        "A lesson that cannot be rendered is reported and the others are (exit 1).",
        epilog=True,
    ),
    "cleanup": _Lazy(
        "manage",
        "cleanup_command",
        "Drop old finished batches and delete the uploaded Gemini files the tool still owns.\n"
        "Lessons and the skip-existing ledger are kept.",
    ),
    "keys": _Lazy(
        "keys",
        "keys_command",
        "The key pool: fingerprint (never the key), label, project, state, cooldown, counts.\n"
        "`keys enable FINGERPRINT` re-enables a disabled key.",
    ),
    "serve": _Lazy(
        "serve",
        "serve_command",
        "Open a local dashboard: batches, live progress, retry, cancel and resume, lessons,\n"
        "a zip of everything, the key pool and the costs. It prints the URL to open (with a\n"
        "random token: requests without it are refused). Batches started from the page run in\n"
        "this process; Ctrl-C stops them resumable.",
    ),
    "list-templates": _Lazy(
        "info",
        "list_templates_command",
        "Show templates: name, version, description, parameters; broken ones with the reason.",
    ),
    "list-models": _Lazy(
        "info",
        "list_models_command",
        "Show the models this tool knows, with context sizes and current prices.",
    ),
    "version": _Lazy("info", "version_command", "Print the version."),
}


def load_command(name: str) -> click.Command:
    """The real (typer-built) command: its module imported now."""
    lazy = COMMANDS[name]
    module = importlib.import_module(f"gs_video_report.cli.{lazy.module}")
    one = typer.Typer(pretty_exceptions_enable=False, add_completion=False, rich_markup_mode=None)
    one.command(name, epilog=EXIT_CODES if lazy.epilog else None)(getattr(module, lazy.function))
    command = typer.main.get_command(one)
    command.name = name
    return command


class _CommandTypo(Exception):
    def __init__(self, given: str, meant: str) -> None:
        super().__init__(f"no command '{given}' — did you mean '{meant}'?")


def _legacy_argv(argv: list[str]) -> list[str]:
    """``gs_videoreport VIDEO ...`` (as the original's docs promised) means ``main VIDEO
    ...``; but a word close to a command's name that is no file and looks like no path
    or URL is a typo (``bacth``), not a video (``_CommandTypo``)."""
    if not argv:
        return argv
    first = argv[0]
    commands = set(COMMANDS)
    if first.startswith("-") or first in commands:
        return argv
    wordlike = not any(mark in first for mark in "./\\:")
    if wordlike and not Path(first).exists():
        close = difflib.get_close_matches(first, sorted(commands), n=1)
        if close:
            raise _CommandTypo(first, close[0])
    return ["main", *argv]


class _Group(TyperGroup):
    """The root command: the legacy short form and command typos are handled here, so
    every way in (the installed script, ``python -m``, the tests' runner) has them."""

    # Typer passes a typer.Context; the base class names the private Click it vendors
    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:  # type: ignore[override]
        try:
            args = _legacy_argv(args)
        except _CommandTypo as typo:
            typer.echo(f"error: {printable(typo)}", err=True)
            raise typer.Exit(int(ExitCode.USAGE)) from None
        return super().parse_args(ctx, args)

    # Output to a pipe that closed (``list-batches | head -1``) ends quietly with 141,
    # also for what is printed outside a command's own error handling (--help, version).
    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _output_guard():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        with _output_guard():
            return super().invoke(ctx)

    _listing = False  # while the root's help lists the commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return [*COMMANDS, *(n for n in super().list_commands(ctx) if n not in COMMANDS)]

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.commands or name not in COMMANDS:
            return super().get_command(ctx, name)
        if self._listing:  # the list needs a name and a line, not the module
            return TyperCommand(name, help=COMMANDS[name].summary)
        self.commands[name] = command = load_command(name)
        return command

    def format_help(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        self._listing = True
        try:
            super().format_help(ctx, formatter)
        finally:
            self._listing = False


class _OneLineUsage(ClickException):
    """Click's usage error is three lines (usage, hint, message); ours is the one
    ``error:`` line every other mistake gets, naming where the help is."""

    exit_code = int(ExitCode.USAGE)

    def __init__(self, error: UsageError) -> None:
        super().__init__(error.format_message())
        ctx = error.ctx
        self.help_hint = f"{ctx.command_path} -h" if ctx is not None else "gs_videoreport -h"

    def show(self, file: Any = None) -> None:
        typer.echo(f"error: {printable(self.message)} (see '{self.help_hint}')", err=True)


@contextmanager
def _output_guard() -> Iterator[None]:
    try:
        yield
    except UsageError as exc:
        raise _OneLineUsage(exc) from None
    except (SystemExit, OSError) as exc:
        if output_closed(exc):
            raise quiet_exit() from None
        raise


app = typer.Typer(
    name="gs_videoreport",
    help="Turn teaching videos into lesson plans and transcripts with Gemini.\n\n" + EXIT_CODES,
    epilog=EXIT_CODES,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    add_completion=False,
    context_settings={"help_option_names": ["-h", "--help"]},
    cls=_Group,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gs_videoreport {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
) -> None:
    pass


def main() -> None:
    app(args=sys.argv[1:], prog_name="gs_videoreport")
