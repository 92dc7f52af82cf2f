"""Opening the state database: WAL, a busy timeout, foreign keys, migrations applied once."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

from gs_video_report.errors import StorageError
from gs_video_report.storage.migrations import migrate

BUSY_TIMEOUT_MS = 10_000
DB_NAME = "state.db"
# UPDATE … RETURNING claims a task in one statement (SQLite 3.35, 2021).
MIN_SQLITE = (3, 35, 0)


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
        await conn.execute("PRAGMA journal_mode = WAL")
        # WAL + NORMAL survives a killed process (our crash model); only an OS crash or power
        # loss can roll back the last commits, which repeats a stage, never corrupts.
        await conn.execute("PRAGMA synchronous = NORMAL")
        await conn.execute("PRAGMA foreign_keys = ON")
        await migrate(conn)
        yield conn
    except sqlite3.Error as exc:
        raise StorageError(f"state database {path}: {exc}") from exc
    finally:
        await conn.close()
