"""The live display (ProgressMonitor fed the engine's events): it keeps its size however
big the batch, fits 80 columns, says what a first Ctrl-C does, and survives log records."""

from __future__ import annotations

import io
import logging
import re

import pytest
from rich.console import Console

from gs_video_report.batch import events as ev
from gs_video_report.cli.common import Runtime, setup_logging
from gs_video_report.cli.progress import ProgressMonitor
from gs_video_report.models import StopReason

CSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def terminal() -> tuple[Console, io.StringIO]:
    out = io.StringIO()
    return Console(file=out, force_terminal=True, width=80, color_system="truecolor"), out


def last_frame(out: io.StringIO) -> list[str]:
    """The display as it was last drawn: after the last 'erase line', without the
    cursor and colour codes."""
    raw = out.getvalue()
    frame = raw.rsplit("\x1b[2K", 1)[-1]
    return [line for line in CSI.sub("", frame).replace("\r", "").split("\n") if line.strip()]


def view(n: int) -> ev.TaskView:
    return ev.TaskView(n, n, f"lecture-{n:03d} on a rather long subject name", 600.0)


def monitor(console: Console, clock: Clock, **kwargs: object) -> ProgressMonitor:
    return ProgressMonitor(
        console,
        batch_id="batch_x",
        total_tasks=5000,
        total_video_s=5000 * 600.0,
        live=True,
        clock=clock,
        **kwargs,  # type: ignore[arg-type]
    )


def test_at_most_parallel_plus_uploads_lines_the_rest_in_counts_within_80_columns() -> None:
    console, out = terminal()
    clock = Clock()
    with monitor(console, clock, max_lines=3) as display:
        for n in range(1, 11):
            stage = ev.Activity.UPLOADING if n > 7 else ev.Activity.GENERATING
            display.emit(ev.TaskActivity(view(n), stage, 0.5 if n > 7 else None))
        for n in range(11, 20):
            display.emit(ev.TaskActivity(view(n), ev.Activity.WAITING_FOR_GENERATE))
        for n in range(20, 23):
            display.emit(ev.TaskDone(view(n), 0.01))
        display.emit(ev.RetryScheduled(view(30), 999.0, 30.0, "503"))
        clock.now += 3600
        display.tick()
        frame = last_frame(out)
    assert all(len(line) <= 80 for line in frame), frame
    bar_line = frame[0]
    assert bar_line.startswith("batch ") and "3/5000" in bar_line and "ETA " in bar_line
    assert sum("lecture-" in line for line in frame) == 3, frame
    more = next(line for line in frame if "more in flight" in line)
    assert "+ 7 more in flight: 4 generating, 3 uploading" in more
    counts = frame[1]
    assert "3 done" in counts and "1 retrying" in counts and "9 queued" in counts


def test_the_first_ctrl_c_is_said_in_the_display() -> None:
    console, out = terminal()
    with monitor(console, Clock()) as display:
        display.emit(ev.TaskActivity(view(1), ev.Activity.GENERATING))
        display.emit(ev.BatchStopping(StopReason.INTERRUPTED, "interrupted (Ctrl-C)"))
        frame = last_frame(out)
    text = " ".join(frame)
    assert "finishing the calls in flight — press Ctrl-C again to stop now" in text
    assert all(len(line) <= 80 for line in frame), frame


def test_plain_output_says_it_once_too() -> None:
    out = io.StringIO()
    console = Console(file=out, force_terminal=False, width=80)
    plain = ProgressMonitor(
        console, batch_id="b", total_tasks=1, total_video_s=60.0, live=False, clock=Clock()
    )
    with plain:
        plain.emit(ev.BatchStopping(StopReason.INTERRUPTED, "interrupted (SIGTERM)"))
    assert out.getvalue().count("press Ctrl-C again to stop now") == 1


def test_a_warning_logged_meanwhile_goes_above_the_display(
    capsys: pytest.CaptureFixture[str],
) -> None:
    setup_logging(Runtime(), verbose=False, to_file=False)
    console, out = terminal()
    with monitor(console, Clock(), max_lines=2) as display:
        display.emit(ev.TaskActivity(view(1), ev.Activity.GENERATING))
        logging.getLogger("gs_video_report.batch.workers").warning(
            "key [red]k1[/red] cooled down \x1b[2J"
        )
        display.emit(ev.TaskActivity(view(2), ev.Activity.GENERATING))
        frame = last_frame(out)
    assert capsys.readouterr().err == ""  # not written past the display
    printed = CSI.sub("", out.getvalue())
    assert (
        "WARNING gs_video_report.batch.workers: key [red]k1[/red] cooled down \\x1b[2J" in printed
    )
    assert sum("lecture-" in line for line in frame) == 2 and frame[0].startswith("batch ")
    # after the display, records go to stderr again
    logging.getLogger("gs_video_report").warning("after")
    assert "after" in capsys.readouterr().err


def test_offline_is_said_in_the_display_until_the_network_is_back() -> None:
    console, out = terminal()
    with monitor(console, Clock()) as display:
        display.emit(ev.TaskActivity(view(1), ev.Activity.UPLOADING, 0.5))
        display.emit(ev.NetworkLost(100.0, 120.0, 20.0, "connection failed (ConnectError)"))
        lost = " ".join(last_frame(out))
        assert "offline — retrying in 20 s" in lost
        assert display.snapshot()["offline"].startswith("offline — retrying in 20 s")
        display.emit(ev.NetworkBack(45.0))
        back = " ".join(last_frame(out))
    assert "offline" not in back and display.snapshot()["offline"] is None
