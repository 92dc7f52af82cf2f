"""Real second processes: SIGKILL at each stage then resume, the lease, cancel from another
terminal, Ctrl-C once and twice, SIGTERM and SIGHUP for ``batch`` and ``main``. The batch
runs in a child process (``python -m gs_video_report``) against the simulator in this
process, so the simulator's counters see both the killed run and the resume.

The simulator's latency holds the child in a stage; the test polls the state database
(as another terminal would) until the child is there. Those are waits on another
process, not sleeps standing in for logic.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

from gs_video_report.errors import ExitCode
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import REPO, SAMPLES, TEST_KEY

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")


class Child:
    """A CLI process; its output is collected as it comes (tests wait for a line)."""

    def __init__(
        self, tmp_path: Path, sim: Simulator, *args: str, env: dict[str, str] | None = None
    ) -> None:
        extra = env or {}
        env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
        env.update(extra)
        env.update(
            GS_VIDEOREPORT_HOME=str(tmp_path / "home"),
            GS_VIDEOREPORT_BASE_URL=sim.url,
            GEMINI_API_KEY=TEST_KEY,
            PYTHONPATH=str(REPO),
            PYTHONUNBUFFERED="1",
        )
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gs_video_report", *args],
            cwd=tmp_path / "work",
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        self._readers = [
            threading.Thread(target=self._collect, args=(stream, lines), daemon=True)
            for stream, lines in ((self.proc.stdout, self.out), (self.proc.stderr, self.err))
        ]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _collect(stream: IO[str] | None, lines: list[str]) -> None:
        assert stream is not None
        for line in stream:
            lines.append(line)
        stream.close()

    def said(self, text: str) -> bool:
        return any(text in line for line in list(self.err))

    def finish(self, timeout: float = 60) -> tuple[int, str, str]:
        code = self.proc.wait(timeout=timeout)
        for reader in self._readers:
            reader.join(timeout=10)
        return code, "".join(self.out), "".join(self.err)

    def kill(self) -> None:
        self.proc.kill()
        self.finish(timeout=10)


@pytest.fixture(autouse=True)
def same_target(monkeypatch: pytest.MonkeyPatch, sim: Simulator) -> None:
    """In-process commands (resume, cancel) talk to the simulator as the child does."""
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)


@pytest.fixture
def children() -> Iterator[list[Child]]:
    started: list[Child] = []
    yield started
    for child in started:
        if child.proc.poll() is None:
            child.kill()


def wait_until(what: str, condition: Callable[[], bool], child: Child, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if child.proc.poll() is not None:
            raise AssertionError(f"child exited ({child.finish()}) before: {what}")
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for: {what}")


def db_rows(tmp_path: Path, sql: str) -> list[tuple[object, ...]]:
    db = tmp_path / "home" / "state.db"
    if not db.exists():
        return []
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return conn.execute(sql).fetchall()
    except sqlite3.OperationalError:
        return []  # schema not created yet


def stages(tmp_path: Path) -> list[str]:
    return [str(r[0]) for r in db_rows(tmp_path, "SELECT stage FROM tasks ORDER BY seq")]


def the_batch(tmp_path: Path) -> str:
    return str(db_rows(tmp_path, "SELECT id FROM batches")[0][0])


def lessons(out: Path) -> list[Path]:
    return sorted(p for p in out.rglob("*.md") if "_reports" not in p.parts)


def start_batch(tmp_path: Path, sim: Simulator, children: list[Child], *extra: str) -> Child:
    out = tmp_path / "out"  # the samples have distinct names: the simulator counts by name
    args = ("batch", "-d", str(SAMPLES), "-o", str(out), "-q", "-t", "summary_report")
    child = Child(tmp_path, sim, *args, *extra)
    children.append(child)
    return child


def assert_consistent(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "home" / "state.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    leftovers = [p for p in (tmp_path / "out").rglob("*") if p.name.endswith(".tmp")]
    assert leftovers == []


@pytest.mark.parametrize("stage", ["uploading", "processing", "generating"])
def test_sigkill_at_each_stage_then_resume_pays_nothing_twice(
    stage: str, cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    hold = {
        "uploading": lambda: sim.set_limits(latency={"upload_chunk": 60}),
        "processing": lambda: sim.set_limits(latency={"get_file": 60}),
        "generating": lambda: sim.set_limits(latency={"generate": 60}),
    }[stage]
    hold()
    child = start_batch(tmp_path, sim, children, "-p", "1")
    # A video is in the stage with its call on the wire. Uploads run ahead of generation,
    # so past uploading, wait until every upload is recorded: an upload killed after the
    # server finished it but before its name was committed is (rightly) sent again.
    recorded = "SELECT count(*) FROM tasks WHERE upload_name IS NOT NULL"
    in_stage = {
        "uploading": lambda: sim.stats()["calls"].get("upload_chunk", 0) >= 1,
        "processing": lambda: stages(tmp_path) == ["processing"] * 3,
        "generating": lambda: (
            sim.stats()["calls"].get("generate", 0) >= 1 and db_rows(tmp_path, recorded) == [(3,)]
        ),
    }[stage]
    wait_until(f"a video {stage}", in_stage, child)
    child.kill()
    assert stage in stages(tmp_path) and "done" not in stages(tmp_path)
    sim.set_limits(latency={})
    before = sim.stats()

    resumed = cli("resume", the_batch(tmp_path), "-q", "--json")  # lease: holder is dead

    assert resumed.exit_code == ExitCode.OK, resumed.output
    assert json.loads(resumed.stdout)["counts"] == {"done": 3}
    after = sim.stats()
    assert len(lessons(tmp_path / "out")) == 3
    # no finished video generated twice; only the killed call is repeated
    # (requests received; the killed one is still held by the simulator, never answered)
    assert after["calls"]["generate"] == 3 + (1 if stage == "generating" else 0)
    assert sorted(after["generate_by_subject"].values()) == [1, 1, 1]  # answered once each
    # an upload that completed (and is ACTIVE) is not uploaded again: one per video in all
    assert after["uploads_completed"] == 3
    assert before["uploads_completed"] == (0 if stage == "uploading" else 3)
    assert_consistent(tmp_path)


def test_the_lease_blocks_a_second_process_and_cancel_stops_the_first(
    cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.set_limits(latency={"generate": 60})
    child = start_batch(tmp_path, sim, children, "-p", "2")
    wait_until("generating", lambda: "generating" in stages(tmp_path), child)
    batch_id = the_batch(tmp_path)

    second = cli("resume", batch_id, "-q")
    assert second.exit_code == ExitCode.USAGE
    assert f"PID {child.proc.pid}" in second.stderr and "another process" in second.stderr

    started = time.monotonic()
    cancelled = cli("cancel", batch_id)
    assert cancelled.exit_code == 0 and "stops within seconds" in cancelled.stdout
    code, _, err = child.finish(timeout=30)
    assert time.monotonic() - started < 10  # not the 60 s the calls in flight would take
    assert code == ExitCode.INTERRUPTED and f"gs_videoreport resume {batch_id}" in err
    assert set(stages(tmp_path)) == {"cancelled"}
    assert_consistent(tmp_path)

    sim.set_limits(latency={})
    resumed = cli("resume", batch_id, "-q", "--json")
    assert resumed.exit_code == ExitCode.OK and json.loads(resumed.stdout)["counts"] == {"done": 3}


def test_ctrl_c_once_finishes_the_calls_in_flight_then_exits_130(
    cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.set_limits(latency={"generate": 2})
    child = start_batch(tmp_path, sim, children, "-p", "1")
    wait_until("generating", lambda: sim.stats()["calls"].get("generate", 0) >= 1, child)
    child.proc.send_signal(signal.SIGINT)
    code, _, err = child.finish()
    assert code == ExitCode.INTERRUPTED, err
    assert "press Ctrl-C again to stop now" in err
    assert f"Resume with: gs_videoreport resume {the_batch(tmp_path)}" in err
    # the call in flight was answered and its lesson written; nothing else was started
    assert sorted(stages(tmp_path)) == ["done", "pending", "pending"]
    assert sim.stats()["calls"]["generate"] == 1 and len(lessons(tmp_path / "out")) == 1
    assert_consistent(tmp_path)
    sim.set_limits(latency={})
    resumed = cli("resume", the_batch(tmp_path), "-q")
    assert resumed.exit_code == ExitCode.OK
    assert sim.stats()["calls"]["generate"] == 3


def test_ctrl_c_twice_stops_at_once_and_resume_repeats_only_the_call_in_flight(
    cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.set_limits(latency={"generate": 60})
    child = start_batch(tmp_path, sim, children, "-p", "1")
    wait_until("generating", lambda: sim.stats()["calls"].get("generate", 0) >= 1, child)
    started = time.monotonic()
    child.proc.send_signal(signal.SIGINT)
    # Two signals sent back to back would merge into one (POSIX does not queue them).
    wait_until("first Ctrl-C handled", lambda: child.said("Ctrl-C again"), child)
    child.proc.send_signal(signal.SIGINT)
    code, _, err = child.finish(timeout=30)
    assert time.monotonic() - started < 10
    assert code == ExitCode.INTERRUPTED, err
    assert f"gs_videoreport resume {the_batch(tmp_path)}" in err
    status = db_rows(tmp_path, "SELECT status, lease_owner FROM batches")[0]
    assert status == ("interrupted", None)  # lease released on the way out
    assert_consistent(tmp_path)
    sim.set_limits(latency={})
    resumed = cli("resume", the_batch(tmp_path), "-q")
    assert resumed.exit_code == ExitCode.OK
    assert sim.stats()["calls"]["generate"] == 4  # the one call in flight, repeated once
    assert sorted(sim.stats()["generate_by_subject"].values()) == [1, 1, 1]
    assert sim.stats()["uploads_completed"] == 3


# -- SIGTERM and SIGHUP mean what Ctrl-C means, for main too ------------------------
# A "hold" fault keeps the generate call unanswered until the test releases it: the
# signal surely lands while the call is in flight, whatever the machine's load.


def held(sim: Simulator) -> Callable[[], bool]:
    return lambda: sim.stats()["faults_injected"].get("hold", 0) >= 1


VIDEO = SAMPLES / "intro_to_fractions.mp4"


def main_args(tmp_path: Path) -> tuple[str, ...]:
    return ("main", str(VIDEO), "-o", str(tmp_path / "out"), "-t", "summary_report")


def start_main(tmp_path: Path, sim: Simulator, children: list[Child]) -> Child:
    child = Child(tmp_path, sim, *main_args(tmp_path))
    children.append(child)
    return child


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_once_on_main_finishes_the_call_in_flight_then_exits_130(
    sig: signal.Signals, cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("hold", "generate"))
    child = start_main(tmp_path, sim, children)
    wait_until("the generate call in flight", held(sim), child)
    child.proc.send_signal(sig)
    wait_until("the signal handled", lambda: child.said(f"{sig.name}: finishing"), child)
    sim.release()
    code, out, err = child.finish()
    assert code == ExitCode.INTERRUPTED, err
    assert f"interrupted ({sig.name}): stopped after the lesson was saved" in err
    # the call in flight was answered and its lesson saved before the exit
    assert f"Lesson: {tmp_path / 'out'}" in out and len(lessons(tmp_path / "out")) == 1
    assert stages(tmp_path) == ["done"]
    assert db_rows(tmp_path, "SELECT status, lease_owner FROM batches") == [("interrupted", None)]
    assert_consistent(tmp_path)
    again = cli(*main_args(tmp_path))  # the same command: nothing to pay for again
    assert again.exit_code == ExitCode.OK, again.output
    assert "already done" in again.stderr
    assert sim.stats()["calls"]["generate"] == 1 and sim.stats()["uploads_completed"] == 1


def test_two_signals_stop_main_at_once_and_a_rerun_repeats_only_the_call_in_flight(
    cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("hold", "generate"))  # never released: only a stop at once ends it
    child = start_main(tmp_path, sim, children)
    wait_until("the generate call in flight", held(sim), child)
    child.proc.send_signal(signal.SIGTERM)
    # Two signals sent back to back would merge into one (POSIX does not queue them).
    wait_until("the first signal handled", lambda: child.said("SIGTERM: finishing"), child)
    child.proc.send_signal(signal.SIGHUP)
    code, out, err = child.finish(timeout=30)
    assert code == ExitCode.INTERRUPTED, err
    assert "Stopped at once. Run the same command again to resume." in err
    assert "Lesson:" not in out and lessons(tmp_path / "out") == []
    assert db_rows(tmp_path, "SELECT status, lease_owner FROM batches") == [("interrupted", None)]
    assert_consistent(tmp_path)
    again = cli(*main_args(tmp_path))
    assert again.exit_code == ExitCode.OK, again.output
    assert "Lesson:" in again.stdout and len(lessons(tmp_path / "out")) == 1
    assert len(db_rows(tmp_path, "SELECT id FROM batches")) == 1  # it resumed that batch
    assert sim.stats()["calls"]["generate"] == 2  # the call in flight, repeated once
    assert sim.stats()["generate_by_subject"] == {VIDEO.name: 1}  # answered once
    assert sim.stats()["uploads_completed"] == 1  # its upload was reused


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_signal_once_on_a_batch_finishes_the_call_in_flight_then_exits_130(
    sig: signal.Signals, cli, sim: Simulator, tmp_path: Path, children: list[Child]
) -> None:  # type: ignore[no-untyped-def]
    sim.add_fault(Fault("hold", "generate"))
    child = start_batch(tmp_path, sim, children, "-p", "1")
    wait_until("the generate call in flight", held(sim), child)
    child.proc.send_signal(sig)
    # the display says it (without a terminal: one line) when the engine is stopping
    handled = lambda: child.said("finishing the calls in flight") and child.said(sig.name)  # noqa: E731
    wait_until("the signal handled", handled, child)
    sim.release()
    code, _, err = child.finish()
    assert code == ExitCode.INTERRUPTED, err
    assert f"Resume with: gs_videoreport resume {the_batch(tmp_path)}" in err
    assert sorted(stages(tmp_path)) == ["done", "pending", "pending"]
    assert sim.stats()["calls"]["generate"] == 1 and len(lessons(tmp_path / "out")) == 1
    assert_consistent(tmp_path)
    resumed = cli("resume", the_batch(tmp_path), "-q")
    assert resumed.exit_code == ExitCode.OK, resumed.output
    assert sim.stats()["calls"]["generate"] == 3
    assert sorted(sim.stats()["generate_by_subject"].values()) == [1, 1, 1]
