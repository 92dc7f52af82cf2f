"""What every command shares: the runtime (injectable time and simulator), error
handling that turns our exceptions into one line and an exit code, logging setup,
and choosing the API target (real Gemini or the simulator)."""

from __future__ import annotations

import asyncio
import errno
import logging
import logging.handlers
import os
import sys
import traceback
from collections.abc import Coroutine, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.text import Text

from gs_video_report.cli.text import printable
from gs_video_report.clock import REAL, Clock
from gs_video_report.errors import ConfigError, ExitCode, GsVideoReportError

# The settings (pydantic) and the simulator (http.server) load when a command uses them:
# ``--help`` and ``version`` use neither, and every command imports this module.
if TYPE_CHECKING:
    from gs_video_report.config import PoolKey, Settings
    from gs_video_report.simulator import Simulator

T = TypeVar("T")
logger = logging.getLogger("gs_video_report")
Opt = typer.Option

# Options shared by several commands (one declaration, one help text).
ModelOpt = Annotated[str | None, Opt("--model", "-m", help="Gemini model")]
ApiKeyOpt = Annotated[
    str | None, Opt("--api-key", "-k", help="Gemini API key (prefer $GEMINI_API_KEY)")
]
KeysFileOpt = Annotated[
    Path | None,
    Opt("--keys-file", help="A pool of keys: one per line, optionally project=NAME label=NAME"),
]
ConfigOpt = Annotated[Path | None, Opt("--config", "-c", help="Config file")]
VerboseOpt = Annotated[bool, Opt("--verbose", "-v", help="Debug logs and tracebacks")]
QuietOpt = Annotated[bool, Opt("--quiet", "-q", help="No progress bars")]
JsonOpt = Annotated[bool, Opt("--json", help="Machine-readable output on stdout")]
SimulateOpt = Annotated[bool, Opt("--simulate", help="Use the built-in Gemini simulator")]


@dataclass
class Runtime:
    """Things tests replace: the engine's clock, and which simulator ``--simulate`` uses."""

    clock: Clock = REAL
    simulator: Simulator | None = None  # an already started one; else a fresh one per command
    secrets: set[str] = field(default_factory=set)


def runtime(ctx: typer.Context) -> Runtime:
    if not isinstance(ctx.obj, Runtime):
        ctx.obj = Runtime()
    return ctx.obj


class RedactingFilter(logging.Filter):
    """Last line of defence: no registered secret reaches a log handler, also not in a
    record's traceback (an SDK error's text can quote the key)."""

    def __init__(self, secrets: set[str]) -> None:
        super().__init__()
        self.secrets = secrets  # the command's own set: keys registered later count too

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret and secret in text:
                text = text.replace(secret, "[key]")
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), ()
        if record.exc_info and not record.exc_text:
            # the formatter reuses exc_text when it is set, so this is what gets written
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        return True


class PrintableFormatter(logging.Formatter):
    """A record quoting a file name or an API's message shows its control characters
    (an ESC sequence in a name would otherwise reach the terminal, or ``less`` on the
    log file)."""

    def format(self, record: logging.LogRecord) -> str:
        return printable(super().format(record), lines=True)


def redact(text: str) -> str:
    """``text`` without any secret the running command registered (``Runtime.secrets``),
    found through the filter ``setup_logging`` put on our handlers."""
    for handler in logging.getLogger().handlers:
        if getattr(handler, "_gs_videoreport", False):
            for found in handler.filters:
                if isinstance(found, RedactingFilter):
                    text = found.redact(text)
    return text


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; while a live display is up, its console, which prints the record above
    the display instead of through it."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)
        self.console: Console | None = None

    def emit(self, record: logging.LogRecord) -> None:
        console = self.console
        if console is None:
            super().emit(record)
            return
        try:
            console.print(Text(self.format(record)), soft_wrap=True)  # data, not markup
        except Exception:
            self.handleError(record)


@contextmanager
def route_logs(console: Console) -> Iterator[None]:
    """Our stderr log handlers write through ``console`` (a live display's) meanwhile."""
    handlers = [h for h in logging.getLogger().handlers if isinstance(h, _StderrHandler)]
    for handler in handlers:
        handler.console = console
    try:
        yield
    finally:
        for handler in handlers:
            handler.console = None


def setup_logging(rt: Runtime, *, verbose: bool, to_file: bool) -> None:
    """stderr gets warnings (everything with -v); the log file under the home dir gets INFO."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "_gs_videoreport", False):
            root.removeHandler(handler)
            handler.close()
    redacting = RedactingFilter(rt.secrets)
    stderr = _StderrHandler()
    stderr.setLevel(logging.DEBUG if verbose else logging.WARNING)
    stderr.setFormatter(PrintableFormatter("%(levelname)s %(name)s: %(message)s"))
    handlers: list[logging.Handler] = [stderr]
    if to_file:
        from gs_video_report.config import home_dir

        try:
            log_dir = home_dir() / "logs"
        except ConfigError:
            return _install(handlers, redacting, verbose)  # the command itself says why
        try:
            log_dir.mkdir(parents=True, exist_ok=True)
            file = logging.handlers.RotatingFileHandler(
                log_dir / "gs_videoreport.log", maxBytes=5_000_000, backupCount=3, encoding="utf-8"
            )
            file.setLevel(logging.INFO)
            file.setFormatter(PrintableFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
            handlers.append(file)
        except OSError as exc:
            print(f"warning: cannot write logs to {log_dir}: {exc}", file=sys.stderr)
    _install(handlers, redacting, verbose)


def _install(handlers: list[logging.Handler], redacting: logging.Filter, verbose: bool) -> None:
    root = logging.getLogger()
    for handler in handlers:
        handler.addFilter(redacting)
        handler._gs_videoreport = True  # type: ignore[attr-defined]
        root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    # -v is for our story plus one line per HTTP request; these libraries' DEBUG output
    # (every SQL statement, every socket event) would bury it.
    for chatty in ("aiosqlite", "httpcore", "hpack", "asyncio"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    for library in ("httpx2", "httpx", "google_genai", "google.genai"):
        logging.getLogger(library).setLevel(logging.INFO if verbose else logging.WARNING)


def fail(message: str, code: ExitCode) -> typer.Exit:
    typer.echo(f"error: {printable(message)}", err=True)
    return typer.Exit(int(code))


def _print_traceback() -> None:
    # with every chained exception: an SDK error's text may quote the key
    typer.echo(printable(redact(traceback.format_exc()), lines=True), err=True, nl=False)


def output_closed(exc: BaseException) -> bool:
    """Whether ``exc`` says our output went away: a closed pipe (Rich exits on one,
    from inside the BrokenPipeError), or stdout's descriptor closed under us."""
    if isinstance(exc, SystemExit):
        return isinstance(exc.__context__, BrokenPipeError)
    if isinstance(exc, BrokenPipeError):
        return True
    if isinstance(exc, OSError) and exc.errno == errno.EBADF:
        try:
            os.fstat(sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            return True
    return False


def quiet_exit() -> typer.Exit:
    """Exit 141 without another word: what is still buffered for stdout and stderr goes
    to /dev/null, or the interpreter's last flush would print a traceback and exit 120."""
    for stream in (sys.stdout, sys.stderr):
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's runner): nothing to flush there
    return typer.Exit(int(ExitCode.OUTPUT_CLOSED))


@contextmanager
def handle_errors(verbose: bool) -> Iterator[None]:
    """One line on stderr and a documented exit code; a traceback only with -v. Nothing
    printed here carries a registered secret."""
    try:
        yield
    except GsVideoReportError as exc:
        if verbose:
            _print_traceback()
        logger.info("failed: %s", exc)
        raise fail(redact(str(exc)), exc.exit_code) from None
    except KeyboardInterrupt:
        typer.echo("interrupted", err=True)
        raise typer.Exit(int(ExitCode.INTERRUPTED)) from None
    except (typer.Exit, typer.Abort):
        raise
    except Exception as exc:
        if output_closed(exc):
            raise quiet_exit() from None
        if verbose:
            _print_traceback()
        logger.exception("internal error")
        raise fail(
            redact(f"internal error: {type(exc).__name__}: {exc} (run again with -v for details)"),
            ExitCode.PARTIAL,
        ) from None


def settings_from(config: Path | None, **flags: Any) -> Settings:
    from gs_video_report.config import load_settings

    return load_settings(config_path=config, overrides=flags)


@contextmanager
def api_target(
    rt: Runtime,
    settings: Settings,
    *,
    simulate: bool,
    api_key: str | None,
    keys_file: Path | None = None,
) -> Iterator[tuple[Settings, list[PoolKey]]]:
    """Real Gemini with the user's keys, or the built-in simulator on a loopback port (with
    the keys file's keys or the ``--api-key`` when given, so a pool or a key's handling
    can be tried out; the simulator accepts any key)."""
    from gs_video_report.config import ApiKey, PoolKey, read_keys_file, resolve_keys
    from gs_video_report.simulator import SIMULATED_KEY, Simulator

    if not simulate:
        keys = resolve_keys(settings, flag=api_key, keys_file=keys_file)
        for key in keys:
            rt.secrets.add(key.key.reveal())
        named = ", ".join(f"{k.fingerprint} ({k.key.source})" for k in keys)
        logger.info("using %d key(s): %s", len(keys), named)
        yield settings, keys
        return
    if keys_file is not None:
        keys = read_keys_file(keys_file)
    else:
        given = ApiKey(api_key, "--api-key") if api_key and api_key.strip() else None
        keys = [PoolKey.of(given or ApiKey(SIMULATED_KEY, "simulator"))]
    for key in keys:
        rt.secrets.add(key.key.reveal())
    own = rt.simulator is None
    sim = Simulator().start() if rt.simulator is None else rt.simulator
    try:
        api = settings.api.model_copy(update={"base_url": sim.url})
        logger.info("simulating Gemini at %s", sim.url)
        yield settings.model_copy(update={"api": api}), keys
    finally:
        if own:
            sim.stop()


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(coro)`` without a hidden cost: when it puts the SIGINT handler back,
    Python 3.11's ``asyncio.run`` formats ``repr(main task)`` into an error message, and a
    done task's repr is its result's — for a plan or a status of 5,000 videos, the repr of
    5,000 dataclasses (0.1-0.2 s per 1,000). Here the main task's result is None."""
    box: list[T] = []

    async def main() -> None:
        box.append(await coro)

    asyncio.run(main())
    return box[0]
