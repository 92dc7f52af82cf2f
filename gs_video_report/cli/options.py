"""The options ``batch``, ``resume`` and ``retry-failed`` share (one declaration, one help
text), and ``RunFlags``, the values they were given."""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer

from gs_video_report.batch.api import RunChanges
from gs_video_report.cli.text import printable
from gs_video_report.errors import ExitCode
from gs_video_report.models import LessonFormat, parse_formats

Opt = typer.Option

MAX_TIMEOUT_S = 7 * 24 * 3600.0  # a generate call that may take longer never returns


def _usage_error(message: str) -> NoReturn:
    # One line and exit 2 while the options are parsed, so before anything is planned
    # or called; Click's own range errors are a boxed usage text, and its min= checks
    # let inf and nan through.
    typer.echo(f"error: {printable(message)}", err=True)
    raise typer.Exit(int(ExitCode.USAGE))


def _whole(flag: str, low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            _usage_error(f"{flag} must be a whole number from {low} to {high}, got '{text}'")
        return value

    return parse


def number(flag: str, low: float, high: float, what: str) -> Callable[[str], float]:
    """A Typer parser: a finite number in [low, high], else one error line and exit 2."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and low <= value <= high):
            _usage_error(f"{flag} must be {what}, got '{text}'")
        return value

    return parse


ParallelOpt = Annotated[
    int | None,
    Opt("--parallel", "-p", parser=_whole("--parallel", 1, 32), help="Workers, 1-32 [default: 4]"),
]
MaxUploadsOpt = Annotated[
    int | None,
    Opt(
        "--max-uploads",
        parser=_whole("--max-uploads", 1, 16),
        help="Concurrent uploads, 1-16 [default: 2]",
    ),
]
MaxRetriesOpt = Annotated[
    int | None,
    Opt(
        "--max-retries",
        parser=_whole("--max-retries", 0, 10),
        help="Retries per video, 0-10 [default: 3]",
    ),
]
TimeoutOpt = Annotated[
    float | None,
    Opt(
        "--timeout",
        parser=number(
            "--timeout", 1, MAX_TIMEOUT_S, f"seconds from 1 to {MAX_TIMEOUT_S:.0f} (7 days)"
        ),
        help="Seconds a video's generate call may take before it is retried with a longer "
        "timeout, at most 7 days [default: api.request_timeout]",
    ),
]
CostLimitOpt = Annotated[
    float | None,
    Opt(
        "--cost-limit",
        parser=number("--cost-limit", 0, sys.float_info.max, "a finite number of USD, 0 or more"),
        help="Stop before the batch's spend (earlier runs included) would pass this many USD",
    ),
]


def formats_of(texts: list[str] | None) -> tuple[LessonFormat, ...] | None:
    """``--format``'s values (each checked when parsed; given twice, the union) as
    formats; None when not given."""
    return parse_formats(",".join(texts)) if texts else None


def _check_formats(text: str) -> str:
    try:
        parse_formats(text)
    except ValueError as exc:
        _usage_error(f"--format: {exc}")
    return text


# repeatable (``--format md --format html`` is both, as ``--format md,html``); each value
# is checked as it is parsed, formats_of joins them
FormatOpt = Annotated[
    list[str] | None,
    Opt(
        "--format",
        parser=_check_formats,
        metavar="md,html,srt,vtt",
        help="What each lesson is written as, comma-separated (default: output.formats, md)",
    ),
]


def _mode(value: str) -> str:
    if value not in ("live", "flex", "batch"):
        raise typer.BadParameter(f"{printable(value)!r} is not one of live, flex, batch")
    return value


ModeOpt = Annotated[
    str | None,
    Opt(
        "--mode",
        parser=_mode,
        help="live: standard calls; flex: Flex tier (half price, best effort); batch: Gemini"
        " Batch Mode jobs (half price, within 24 h; resume collects) [default: run.mode]",
    ),
]
ProgressFileOpt = Annotated[
    Path | None, Opt("--progress-file", help="Keep a JSON progress snapshot here")
]


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
    formats: list[str] | None = None  # a new batch's (formats_of); a resume keeps its own
    mode: str | None = None

    @classmethod
    def of(cls, values: Mapping[str, Any]) -> RunFlags:
        """From a command's parameters (named as the fields), ignoring the others."""
        return cls(**{f.name: values[f.name] for f in fields(cls) if f.name in values})

    @property
    def changes(self) -> RunChanges:
        return RunChanges(
            self.parallel, self.max_uploads, self.max_retries, self.timeout, self.cost_limit
        )
