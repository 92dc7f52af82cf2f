"""Schema migrations: an append-only, numbered list. Each runs in a transaction together
with its row in ``_migrations``, so a newer tool opens an older database and a crash
mid-migration leaves the previous version intact. Never edit a released migration;
add the next one."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable

import aiosqlite

from gs_video_report.errors import NewerDatabaseError
from gs_video_report.storage.checkpoint import TaskStage

MIGRATIONS: list[tuple[str, str]] = []


def migration(name: str) -> Callable[[str], str]:
    def register(sql: str) -> str:
        MIGRATIONS.append((name, sql))
        return sql

    return register


migration("m001_batches_tasks_attempts")(
    """
    CREATE TABLE batches (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        finished_at REAL,
        status TEXT NOT NULL,
        source_desc TEXT NOT NULL,
        output_dir TEXT NOT NULL,
        settings_json TEXT NOT NULL,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        lease_owner TEXT,
        lease_pid INTEGER,
        lease_until REAL
    );
    CREATE TABLE tasks (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        source TEXT NOT NULL,
        source_kind TEXT NOT NULL,
        display_name TEXT NOT NULL,
        template TEXT NOT NULL,
        template_version TEXT NOT NULL,
        params_json TEXT NOT NULL,
        model TEXT NOT NULL,
        content_fingerprint TEXT NOT NULL,
        done_key TEXT NOT NULL,
        duration_s REAL,
        size_bytes INTEGER,
        mime_type TEXT,
        output_md TEXT NOT NULL,
        output_json TEXT NOT NULL,
        stage TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        next_attempt_at REAL,
        last_error_kind TEXT,
        last_error TEXT,
        upload_name TEXT,
        upload_uri TEXT,
        upload_mime TEXT,
        upload_expires_at REAL,
        upload_key TEXT,
        prompt_tokens INTEGER,
        output_tokens INTEGER,
        thoughts_tokens INTEGER,
        total_tokens INTEGER,
        cost_usd REAL,
        started_at REAL,
        finished_at REAL,
        updated_at REAL NOT NULL,
        UNIQUE (batch_id, seq)
    );
    CREATE INDEX tasks_by_batch_stage ON tasks (batch_id, stage);
    CREATE INDEX tasks_by_done_key ON tasks (done_key, stage);
    CREATE TABLE attempts (
        id INTEGER PRIMARY KEY,
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        at REAL NOT NULL,
        stage TEXT NOT NULL,
        key_fingerprint TEXT,
        model TEXT,
        latency_s REAL,
        ok INTEGER NOT NULL,
        prompt_tokens INTEGER,
        output_tokens INTEGER,
        thoughts_tokens INTEGER,
        finish_reason TEXT,
        error_kind TEXT,
        error_message TEXT
    );
    CREATE INDEX attempts_by_task ON attempts (task_id);
    """
)


# The skip-existing ledger in its own table, so dropping old batches (``cleanup``) does
# not forget what was done. Filled from the tasks already done.
migration("m002_done_ledger")(
    """
    CREATE TABLE done_ledger (
        done_key TEXT PRIMARY KEY,
        batch_id TEXT NOT NULL,
        output_md TEXT NOT NULL,
        output_json TEXT NOT NULL,
        finished_at REAL NOT NULL
    );
    INSERT OR REPLACE INTO done_ledger (done_key, batch_id, output_md, output_json, finished_at)
        SELECT done_key, batch_id, output_md, output_json, finished_at FROM tasks
        WHERE stage = 'done' ORDER BY finished_at
    """
)


# The ledger entry is written by the database in the statement that marks a task done,
# so "done" is one statement (one round trip) and can never miss its ledger entry.
migration("m003_done_ledger_trigger")(
    """
    CREATE TRIGGER tasks_done_ledger AFTER UPDATE OF stage ON tasks
    WHEN NEW.stage = 'done' AND OLD.stage != 'done'
    BEGIN
        INSERT OR REPLACE INTO done_ledger (done_key, batch_id, output_md, output_json,
            finished_at)
        VALUES (NEW.done_key, NEW.batch_id, NEW.output_md, NEW.output_json, NEW.finished_at);
    END
    """
)


# Key health, shared by every batch (keys outlive batches). Never the key: its fingerprint.
migration("m004_key_health")(
    """
    CREATE TABLE key_health (
        fingerprint TEXT PRIMARY KEY,
        label TEXT NOT NULL,
        project TEXT NOT NULL,
        successes INTEGER NOT NULL DEFAULT 0,
        failures TEXT NOT NULL DEFAULT '{}',
        consecutive_failures INTEGER NOT NULL DEFAULT 0,
        cooldown_until REAL,
        cooldown_reason TEXT,
        disabled TEXT,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    -- why an attempt differed from the one before: moved to another key, a larger output
    -- budget, an instruction added (the report's prompt_evolution)
    ALTER TABLE attempts ADD COLUMN note TEXT
    """
)


# Adjustments of a task's next generate call (a larger output budget, an instruction),
# kept so a resumed task continues with them.
migration("m005_task_adjustments")(
    """
    ALTER TABLE tasks ADD COLUMN adjustments TEXT
    """
)


# A long video's parts: each one's clip and, once generated, its answer and usage, so a
# resume asks only for the parts that are missing.
migration("m006_task_parts")(
    """
    CREATE TABLE task_parts (
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        idx INTEGER NOT NULL,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        answer_json TEXT,
        usage_json TEXT,
        finished_at REAL,
        PRIMARY KEY (task_id, idx)
    )
    """
)


# The same work (done key: content, template and version, parameters, model) is never
# generated by two live tasks at once, in one batch (identical copies) or in two
# processes: a task claims its done key when it is claimed, and gives it back when it
# leaves its stage. A claim whose batch lease has expired is stale. ``same_as``: the
# lesson came from another task's answer, with no call.
migration("m007_work_claims")(
    """
    CREATE TABLE work_claims (
        done_key TEXT PRIMARY KEY,
        task_id INTEGER NOT NULL,
        batch_id TEXT NOT NULL,
        owner TEXT NOT NULL,
        claimed_at REAL NOT NULL
    );
    CREATE INDEX work_claims_by_task ON work_claims (task_id);
    ALTER TABLE tasks ADD COLUMN same_as TEXT;
    ALTER TABLE tasks ADD COLUMN claimed_by TEXT;
    -- the claim of the work is written by the statement that claims the task: one
    -- statement holds the write lock for microseconds, so a process paused (SIGSTOP) at
    -- any moment does not leave the database locked for the others
    CREATE TRIGGER tasks_claim_work AFTER UPDATE OF claimed_by ON tasks
    WHEN NEW.claimed_by IS NOT NULL
    BEGIN
        INSERT OR REPLACE INTO work_claims (done_key, task_id, batch_id, owner, claimed_at)
        VALUES (NEW.done_key, NEW.id, NEW.batch_id, NEW.claimed_by, NEW.updated_at);
    END
    """
)
# When the video was probed at planning: the upload checks it (with the size and the
# content fingerprint) so a video replaced after planning is never paid for as the old one.
migration("m008_task_mtime")(
    """
    ALTER TABLE tasks ADD COLUMN mtime_ns INTEGER
    """
)


# The claim asks for a batch's first pending task in ``seq`` order: through the unique
# (batch_id, seq) index it stepped over every done task before it (1.8 ms a claim at
# 4,900 done, 18 ms at 50,000). An index of pending tasks only, in seq order, makes it
# one step whatever is done; with next_attempt_at in it, tasks still waiting for their
# retry are passed over without reading their rows. (The other queries on pending tasks
# go by (batch_id, stage), which holds no done task either.)
migration("m009_pending_index")(
    """
    CREATE INDEX tasks_pending ON tasks (batch_id, seq, next_attempt_at)
    WHERE stage = 'pending'
    """
)


# Parameter presets saved from the dashboard (the config file's own are read from it);
# in the state database so a second tab and a restart see them.
migration("m010_presets")(
    """
    CREATE TABLE presets (
        name TEXT PRIMARY KEY,
        template TEXT,
        params_json TEXT NOT NULL,
        updated_at REAL NOT NULL
    )
    """
)


# Several templates over one upload (issue 14): a video's tasks share its upload, and may
# share an explicit context cache of it; both are recorded on every task that uses them,
# so a crash keeps them and the last task to end deletes them. Cached input tokens are
# billed at the cached rate: kept per call and per task, with what caching saved.
migration("m011_shared_upload_cache")(
    """
    ALTER TABLE tasks ADD COLUMN cache_name TEXT;
    ALTER TABLE tasks ADD COLUMN cache_expires_at REAL;
    ALTER TABLE tasks ADD COLUMN cached_tokens INTEGER;
    ALTER TABLE tasks ADD COLUMN saving_usd REAL;
    ALTER TABLE attempts ADD COLUMN cached_tokens INTEGER;
    CREATE INDEX tasks_by_upload ON tasks (upload_name) WHERE upload_name IS NOT NULL;
    CREATE INDEX tasks_by_content ON tasks (batch_id, content_fingerprint)
    """
)


# Gemini Batch Mode jobs of a batch. A row is written *before* the job is created (its
# display name ``gsvr-<batch>-<seq>`` fixed, ``name`` still NULL) and the job's name the
# moment the API returns it: creating a job is not idempotent, so a resume first looks
# for a job with that display name and adopts it. ``batch_job_tasks``: which tasks' requests
# (by their done key, the JSONL line's key) a job carries; a task is in one open job.
migration("m012_batch_mode_jobs")(
    """
    CREATE TABLE batch_jobs (
        id INTEGER PRIMARY KEY,
        batch_id TEXT NOT NULL REFERENCES batches(id) ON DELETE CASCADE,
        seq INTEGER NOT NULL,
        display_name TEXT NOT NULL UNIQUE,
        key_fingerprint TEXT NOT NULL,
        model TEXT NOT NULL,
        name TEXT,
        input_file TEXT,
        state TEXT NOT NULL DEFAULT 'CREATING',
        results_file TEXT,
        created_at REAL NOT NULL,
        submitted_at REAL,
        ended_at REAL,
        collected_at REAL,
        estimate_usd REAL,
        UNIQUE (batch_id, seq)
    );
    CREATE TABLE batch_job_tasks (
        job_id INTEGER NOT NULL REFERENCES batch_jobs(id) ON DELETE CASCADE,
        task_id INTEGER NOT NULL REFERENCES tasks(id) ON DELETE CASCADE,
        line_key TEXT NOT NULL,
        PRIMARY KEY (job_id, task_id)
    );
    CREATE INDEX batch_job_tasks_by_task ON batch_job_tasks (task_id);
    """
)


def statements(sql: str) -> list[str]:
    """Split a script into statements; a trigger's body keeps its inner semicolons."""
    out, buffer = [], ""
    for piece in sql.split(";"):
        buffer += piece + ";"
        if sqlite3.complete_statement(buffer):
            if buffer.strip(" \n;"):
                out.append(buffer.strip())
            buffer = ""
    if buffer.strip(" \n;"):
        out.append(buffer.strip())
    return out


async def _tables(conn: aiosqlite.Connection) -> set[str]:
    rows = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
    return {row[0] for row in rows}


async def applied(conn: aiosqlite.Connection) -> list[str]:
    """Names recorded in ``_migrations``, oldest first; none for a new database. Reads
    only: a database we may have to refuse (``refuse_newer``) is never written."""
    if "_migrations" not in await _tables(conn):
        return []
    rows = await conn.execute_fetchall("SELECT name FROM _migrations ORDER BY rowid")
    return [row[0] for row in rows]


async def refuse_newer(
    conn: aiosqlite.Connection, path: object, *, stages: bool = True
) -> list[str]:
    """The applied migrations, unless a newer gs_videoreport wrote the database: then
    ``NewerDatabaseError``. Newer means a migration or (``stages``: a scan of the tasks,
    ~13 ms per 50,000) a task stage we do not know; our code would misread either (or
    undo it), so we touch nothing."""
    names = await applied(conn)
    known = {name for name, _ in MIGRATIONS}
    unknown = [name for name in names if name not in known]
    if unknown:
        raise NewerDatabaseError(path, f"migration {unknown[-1]}")
    if stages and "tasks" in await _tables(conn):
        known_stages = [stage.value for stage in TaskStage]
        marks = ", ".join("?" * len(known_stages))
        rows = list(
            await conn.execute_fetchall(
                f"SELECT stage FROM tasks WHERE stage NOT IN ({marks}) LIMIT 1", known_stages
            )
        )
        if rows:
            raise NewerDatabaseError(path, f"task stage '{rows[0][0]}'")
    return names


async def _pending(
    conn: aiosqlite.Connection, path: object, *, stages: bool
) -> list[tuple[str, str]]:
    done = set(await refuse_newer(conn, path, stages=stages))
    return [(name, sql) for name, sql in MIGRATIONS if name not in done]


async def migrate(conn: aiosqlite.Connection, path: object) -> list[str]:
    """Apply pending migrations in order; return the names applied now.

    Several processes may open a new database at once (three commands started together),
    so each migration is decided and applied under the write lock: BEGIN IMMEDIATE, then
    read what is applied (another process may have done it while we waited), then apply
    the next one with its record in the same transaction. Without pending work no lock is
    taken, so opening a migrated database never waits for a running batch's writes."""
    ran: list[str] = []
    # open_db has checked the stages already; outside the lock, only look for work.
    while await _pending(conn, path, stages=False):
        # executescript would COMMIT first; run statement by statement inside one transaction.
        await conn.execute("BEGIN IMMEDIATE")
        try:
            pending = await _pending(conn, path, stages=True)
            if pending:
                name, sql = pending[0]
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS _migrations"
                    " (name TEXT PRIMARY KEY, applied_at REAL NOT NULL)"
                )
                for statement in statements(sql):
                    await conn.execute(statement)
                await conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (name, time.time())
                )
                ran.append(name)
            await conn.commit()
        except BaseException:
            await conn.rollback()
            raise
    return ran
