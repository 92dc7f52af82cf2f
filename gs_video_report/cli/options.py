"""The options ``batch``, ``resume`` and ``retry-failed`` share (one declaration, one help
text), and ``RunFlags``, the values they were given."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer

from gs_video_report.batch.api import RunChanges

Opt = typer.Option

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
