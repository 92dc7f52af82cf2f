"""An output stream that goes away (``gs_videoreport list-batches | head -1``, a closed
stdout) ends the command quietly with exit 141: no traceback, no 'internal error'."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gs_video_report.errors import ExitCode

PROGRAM = [sys.executable, "-m", "gs_video_report"]


def run_with_stdout_closed_early(*args: str) -> tuple[int, str]:
    """Start the command with stdout a pipe whose reading end is closed before it
    writes (what ``| head`` does once it has its lines)."""
    with subprocess.Popen(
        [*PROGRAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as child:
        assert child.stdout is not None and child.stderr is not None
        child.stdout.close()
        err = child.stderr.read()
        return child.wait(timeout=60), err


@pytest.mark.parametrize(
    "args",
    [
        ["list-batches"],  # a Rich table
        ["list-batches", "--json"],  # typer.echo inside the command's error handling
        ["--help"],  # printed before any command runs
    ],
    ids=["table", "json", "help"],
)
def test_a_closed_pipe_ends_quietly_with_141(args: list[str]) -> None:
    code, err = run_with_stdout_closed_early(*args)
    assert code == ExitCode.OUTPUT_CLOSED == 141, err
    assert err == ""  # no traceback, no "internal error", no "Exception ignored"


def test_a_stdout_closed_under_the_command_ends_quietly_with_141() -> None:
    close_then_run = (
        "import os, runpy, sys; os.close(1); sys.argv = ['gs_videoreport', 'list-batches'];"
        " runpy.run_module('gs_video_report', run_name='__main__')"
    )
    done = subprocess.run(
        [sys.executable, "-c", close_then_run], stderr=subprocess.PIPE, text=True, timeout=60
    )
    assert done.returncode == ExitCode.OUTPUT_CLOSED, done.stderr
    assert done.stderr == ""


def test_errors_still_go_to_stderr_with_their_code() -> None:
    code, err = run_with_stdout_closed_early("status", "batch_nope")
    assert code == ExitCode.INPUT and err.startswith("error: no batch batch_nope")
