"""The state database when it is not ours alone: several processes opening a new one at
the same moment, one written by a newer gs_videoreport, one another process keeps locked.

The concurrent opens run in real processes (SQLite's locks are between processes); they
are started first and then released together by a barrier: every child blocks reading a
pipe, and closing its write end wakes them all at once."""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from gs_video_report.errors import ExitCode
from gs_video_report.storage import db as storage_db
from gs_video_report.storage.migrations import MIGRATIONS
from tests.conftest import REPO
from tests.test_storage import make_batch, with_store

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX pipes")

PROCESSES = 8
ROUNDS = 10

# Each round: say "ready", wait for the barrier, open (and so migrate) a new database.
CHILD = """
import asyncio, os, sys
from pathlib import Path
from gs_video_report.storage.db import open_db

async def open_once(path):
    async with open_db(path):
        pass

base, fds = Path(sys.argv[1]), [int(fd) for fd in sys.argv[2].split(",")]
for number, fd in enumerate(fds):
    print("ready", flush=True)
    os.read(fd, 1)
    try:
        asyncio.run(open_once(base / str(number) / "state.db"))
        print("ok", flush=True)
    except Exception as exc:
        print(f"{type(exc).__name__}: {exc}", flush=True)
"""


def schema(path: Path) -> tuple[list[str], str, set[str]]:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute("SELECT name FROM _migrations ORDER BY rowid")]
        mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        objects = {r[0] for r in conn.execute("SELECT name FROM sqlite_master")}
    return names, mode, objects


def next_line(child: subprocess.Popen[str]) -> str:
    assert child.stdout is not None
    return child.stdout.readline()


def test_processes_opening_a_new_database_at_once_all_succeed(tmp_path: Path) -> None:
    barriers = [os.pipe() for _ in range(ROUNDS)]
    reads = [r for r, _ in barriers]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    argv = [sys.executable, "-c", CHILD, str(tmp_path), ",".join(map(str, reads))]
    children = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, env=env, pass_fds=reads)
        for _ in range(PROCESSES)
    ]
    try:
        results: list[list[str]] = []
        for _, write in barriers:
            assert [next_line(c) for c in children] == ["ready\n"] * PROCESSES
            os.close(write)  # all children wake together
            results.append([next_line(c).strip() for c in children])
        codes = [c.wait(timeout=30) for c in children]
    finally:
        for r in reads:
            os.close(r)
        for child in children:
            if child.poll() is None:
                child.kill()
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
    assert results == [["ok"] * PROCESSES] * ROUNDS
    assert codes == [0] * PROCESSES
    expected = [name for name, _ in MIGRATIONS]
    for number in range(ROUNDS):
        names, mode, objects = schema(tmp_path / str(number) / "state.db")
        assert (names, mode) == (expected, "wal")  # every migration once, in order
        assert {"batches", "tasks", "done_ledger", "tasks_done_ledger", "task_parts"} <= objects


class _OnRecord(logging.Handler):
    """Runs ``action`` once, on the first record whose message contains ``text``."""

    def __init__(self, text: str, action: Callable[[], object]) -> None:
        super().__init__()
        self.text, self.action, self.fired = text, action, False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.fired and self.text in record.getMessage():
            self.fired = True
            self.action()


@pytest.fixture
def write_lock_holder(tmp_path: Path) -> Iterator[sqlite3.Connection]:
    """Another connection in the middle of a write to a new (rollback-journal) database:
    switching to WAL then fails at once with "database is locked", without waiting."""
    holder = sqlite3.connect(tmp_path / "s.db", isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("CREATE TABLE someone_elses (x)")
    yield holder
    holder.close()


def test_switching_to_wal_waits_for_another_writer(
    tmp_path: Path, write_lock_holder: sqlite3.Connection
) -> None:
    # The holder commits once open_db has met the lock, so the open must have waited.
    released = _OnRecord("retrying", lambda: write_lock_holder.execute("COMMIT"))
    log = logging.getLogger("gs_video_report.storage")
    log.addHandler(released)
    log.setLevel(logging.DEBUG)
    try:
        with_store(tmp_path / "s.db", lambda store: asyncio.sleep(0))
    finally:
        log.removeHandler(released)
        log.setLevel(logging.NOTSET)
    assert released.fired
    names, mode, _ = schema(tmp_path / "s.db")
    assert (names, mode) == ([name for name, _ in MIGRATIONS], "wal")


# -- a database from a newer version -------------------------------------------------


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("error: ") and "Traceback" not in stderr
    return lines[0]


def make_state(home: Path) -> Path:
    """A migrated state database with one batch and task, closed (no WAL left)."""
    path = home / "state.db"
    with_store(path, lambda store: make_batch(store, n=1))
    return path


def snapshot(path: Path) -> tuple[bytes, set[str]]:
    """The database file's bytes, and its companions (-wal, -shm, -journal) present."""
    return path.read_bytes(), {p.name for p in path.parent.glob(f"{path.name}*")}


@pytest.mark.parametrize(
    ("newer", "found"),
    [
        (
            "INSERT INTO _migrations (name, applied_at) VALUES ('m999_from_the_future', 0)",
            "migration m999_from_the_future",
        ),
        ("UPDATE tasks SET stage = 'verifying'", "task stage 'verifying'"),
    ],
)
@pytest.mark.parametrize(
    "command",
    [["list-batches"], ["status", "b1"], ["cancel", "b1"], ["resume", "b1", "--simulate"]],
)
def test_a_database_from_a_newer_version_is_refused_untouched(
    cli, isolated_env: Path, newer: str, found: str, command: list[str]
) -> None:  # type: ignore[no-untyped-def]
    path = make_state(isolated_env)
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute(newer)
    # out of WAL, so that switching to it (a write) would show in the file's bytes
    assert conn.execute("PRAGMA journal_mode = DELETE").fetchone() == ("delete",)
    conn.close()
    before = snapshot(path)

    result = cli(*command)

    assert result.exit_code == ExitCode.INPUT, result.output
    line = one_error_line(result.stderr)
    assert "written by a newer gs_videoreport" in line and found in line and "upgrade" in line
    assert snapshot(path) == before


# -- a database another process keeps locked ------------------------------------------


def test_a_database_locked_beyond_the_busy_timeout_is_one_line(
    cli, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # type: ignore[no-untyped-def]
    path = make_state(isolated_env)
    # Another process takes the database for itself (exclusive locking mode keeps even
    # readers out) and holds it until we close its stdin.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sqlite3, sys\n"
            "c = sqlite3.connect(sys.argv[1], isolation_level=None)\n"
            "c.execute('PRAGMA locking_mode = EXCLUSIVE')\n"
            "c.execute('BEGIN EXCLUSIVE')\n"
            "c.execute('UPDATE batches SET status = status')\n"
            "c.execute('COMMIT')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
            str(path),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        monkeypatch.setattr(storage_db, "BUSY_TIMEOUT_MS", 200)  # the wait under test, kept short
        for command in (["list-batches"], ["cancel", "b1"], ["status", "b1"]):
            result = cli(*command)
            assert result.exit_code == ExitCode.PARTIAL, result.output
            line = one_error_line(result.stderr)
            assert "is locked by another process" in line and str(path) in line
    finally:
        holder.communicate("", timeout=30)
    assert cli("cancel", "b1").exit_code == ExitCode.OK  # and usable once released
