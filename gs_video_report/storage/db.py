"""Opening the state database: WAL, a busy timeout, foreign keys, migrations applied once."""

from __future__ import annotations

import asyncio
import logging
import random
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gs_video_report.errors import StorageError
from gs_video_report.storage.migrations import migrate, refuse_newer

BUSY_TIMEOUT_MS = 10_000
DB_NAME = "state.db"
# UPDATE … RETURNING claims a task in one statement (SQLite 3.35, 2021).
MIN_SQLITE = (3, 35, 0)

logger = logging.getLogger(__name__)


def _is_busy(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    return "locked" in str(exc) or "busy" in str(exc)


def _storage_error(path: Path, exc: sqlite3.Error) -> StorageError:
    if _is_busy(exc):
        return StorageError(
            f"the state database {path} is locked by another process (waited up to "
            f"{BUSY_TIMEOUT_MS / 1000:g} s); try again once it is done"
        )
    return StorageError(f"state database {path}: {exc}")


async def _use_wal(conn: aiosqlite.Connection) -> None:
    """Switch to WAL, retrying while another process holds the lock. Processes opening a
    new database at once race to switch it; the loser can get "database is locked" at
    once instead of waiting in the busy handler, so we wait here, as long as it would."""
    deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
    delay = 0.005
    while True:
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or time.monotonic() >= deadline:
                raise
            logger.debug("state database busy while switching to WAL; retrying")
        # jittered, so racing processes do not retry in step
        await asyncio.sleep(random.uniform(0, delay))
        delay = min(delay * 2, 0.2)


@asynccontextmanager
async def open_db(path: Path) -> AsyncIterator[aiosqlite.Connection]:
    if sqlite3.sqlite_version_info < MIN_SQLITE:
        raise StorageError(
            f"this Python uses SQLite {sqlite3.sqlite_version}; gs_videoreport needs 3.35 or"
            " newer (a newer Python build brings one)"
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)  # we issue BEGIN ourselves
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"cannot open the state database {path}: {exc}") from exc
    try:
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Before anything that could write (WAL switch, migrations): a database from a
        # newer version is refused untouched.
        await refuse_newer(conn, path)
        await _use_wal(conn)
        # WAL + NORMAL survives a killed process (our crash model); only an OS crash or power
        # loss can roll back the last commits, which repeats a stage, never corrupts.
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await migrate(conn, path)
        yield conn
    except sqlite3.Error as exc:
        raise _storage_error(path, exc) from exc
    finally:
        await conn.close()
