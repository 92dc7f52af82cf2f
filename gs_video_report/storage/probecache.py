"""What planning learned about a local video, kept across runs: its probe (duration,
size, picture) and content fingerprint, keyed like git's index by the file's path,
size, modification and change time (ns) and inode. A second ``--dry-run`` or rerun of a
big folder then opens no video with PyAV and reads no samples for the fingerprint.

Any change to a key field (an edit, a copy over it, a ``touch``, a rename onto the path)
misses and the file is probed again. Like git's "racily clean" entries, a file changed
less than ``RACY_S`` before it was probed is not kept: on a file system with coarse
timestamps a second change within the same tick would keep its key.

Its own small SQLite file beside the state database, not a table in it: it is a cache
(deleting it loses nothing), planning reads it synchronously, and a batch's state must
never wait on it. Every failure of it is a miss, never a failed plan.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

CACHE_NAME = "probe_cache.db"
RACY_S = 2.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS probes (
    path BLOB PRIMARY KEY,  -- the OS's bytes: a name need not be valid UTF-8
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER NOT NULL,
    inode INTEGER NOT NULL,
    duration_s REAL NOT NULL,
    width INTEGER,
    height INTEGER,
    has_audio INTEGER NOT NULL,
    fingerprint TEXT NOT NULL,
    probed_at REAL NOT NULL
)
"""


_COLUMNS = "size, mtime_ns, ctime_ns, inode, duration_s, width, height, has_audio, fingerprint"
_PREFETCH = 500  # keys a statement: under SQLite's 999 variables of old builds


@dataclass(frozen=True)
class Probed:
    duration_s: float
    width: int | None
    height: int | None
    has_audio: bool
    fingerprint: str


def _key(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_size, info.st_mtime_ns, info.st_ctime_ns, info.st_ino


class ProbeCache:
    """Open with ``ProbeCache.open(folder)``; ``get`` before probing, ``put`` after."""

    def __init__(self, conn: sqlite3.Connection | None) -> None:
        self._conn = conn
        self._pending: list[tuple[object, ...]] = []
        self._fetched: dict[bytes, tuple[Any, ...] | None] = {}

    def prefetch(self, paths: Iterable[Path]) -> None:
        """Read the rows of ``paths`` in a few statements (500 a statement) instead of one
        each in ``get``: a plan of 5,000 videos asked 5,000 of them."""
        if self._conn is None:
            return
        keys = list(dict.fromkeys(os.fsencode(p) for p in paths))
        try:
            for start in range(0, len(keys), _PREFETCH):
                chunk = keys[start : start + _PREFETCH]
                self._fetched.update(dict.fromkeys(chunk))
                rows = self._conn.execute(
                    f"SELECT path, {_COLUMNS} FROM probes"
                    f" WHERE path IN ({', '.join('?' * len(chunk))})",
                    chunk,
                )
                self._fetched.update((row[0], row[1:]) for row in rows)
        except sqlite3.Error:
            self._fetched.clear()  # ``get`` asks one by one

    @classmethod
    def open(cls, folder: Path) -> ProbeCache:
        try:
            folder.mkdir(parents=True, exist_ok=True)
            conn = sqlite3.connect(folder / CACHE_NAME, timeout=2.0)
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute(_SCHEMA)
        except sqlite3.Error as exc:
            logger.info("no probe cache (%s): every video is probed", exc)
            return cls(None)
        return cls(conn)

    def get(self, path: Path, info: os.stat_result) -> Probed | None:
        if self._conn is None:
            return None
        name = os.fsencode(path)
        if name in self._fetched:
            row = self._fetched[name]
        else:
            try:
                row = self._conn.execute(
                    f"SELECT {_COLUMNS} FROM probes WHERE path = ?", (name,)
                ).fetchone()
            except sqlite3.Error:
                return None
        if row is None or tuple(row[:4]) != _key(info):
            return None
        return Probed(row[4], row[5], row[6], bool(row[7]), row[8])

    def put(self, path: Path, info: os.stat_result, probed: Probed) -> None:
        """Kept with the next ``flush`` (one transaction for the whole plan)."""
        if self._conn is None or time.time() - info.st_mtime_ns / 1e9 < RACY_S:
            return
        self._pending.append(
            (
                os.fsencode(path),
                *_key(info),
                probed.duration_s,
                probed.width,
                probed.height,
                int(probed.has_audio),
                probed.fingerprint,
                time.time(),
            )
        )

    def flush(self) -> None:
        if self._conn is None or not self._pending:
            return
        try:
            with self._conn:
                self._conn.executemany(
                    "INSERT OR REPLACE INTO probes VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    self._pending,
                )
        except sqlite3.Error as exc:  # busy or full: the next plan probes again
            logger.info("probe cache not updated: %s", exc)
        self._pending.clear()

    def close(self) -> None:
        self.flush()
        if self._conn is not None:
            self._conn.close()
            self._conn = None
