from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import aiosqlite
import pytest

from gs_video_report.models import CallRecord, Usage
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from gs_video_report.storage.checkpoint import LeaseHeldError, NewTask
from gs_video_report.storage.migrations import MIGRATIONS

T = TypeVar("T")


def with_store(path: Path, body: Callable[[CheckpointManager], Awaitable[T]]) -> T:
    async def main() -> T:
        async with open_db(path) as conn:
            return await body(CheckpointManager(conn))

    return asyncio.run(main())


def new_task(seq: int, name: str = "v", done_key: str | None = None) -> NewTask:
    return NewTask(
        seq=seq,
        source=f"/videos/{name}{seq}.mp4",
        source_kind="file",
        display_name=f"{name}{seq}",
        template="summary_report",
        template_version="2.0",
        params={"language": "English"},
        model="gemini-3.8-flash",
        content_fingerprint=f"fp{seq}",
        done_key=done_key or f"dk{seq}",
        output_md=f"/out/{name}{seq}.md",
        output_json=f"/out/{name}{seq}.json",
        duration_s=60.0,
    )


async def lease(store: CheckpointManager, batch_id: str = "b1") -> None:
    """Claims are taken only by the batch's lease holder."""
    await store.acquire_lease(batch_id, owner="test-owner", pid=1, now=100.0, ttl_s=1e9)


async def make_batch(store: CheckpointManager, n: int = 3, batch_id: str = "b1") -> None:
    await store.create_batch(
        batch_id,
        source_desc="--input-dir x",
        output_dir="/out",
        settings={"parallel": 2},
        tasks=[new_task(i) for i in range(n)],
        now=100.0,
    )


def test_fresh_database_is_migrated_with_wal_and_keys(tmp_path: Path) -> None:
    async def body(store: CheckpointManager) -> tuple[str, int, int, list[str]]:
        conn = store.conn
        mode = (await (await conn.execute("PRAGMA journal_mode")).fetchone())[0]
        busy = (await (await conn.execute("PRAGMA busy_timeout")).fetchone())[0]
        fks = (await (await conn.execute("PRAGMA foreign_keys")).fetchone())[0]
        names = [
            r[0] for r in await (await conn.execute("SELECT name FROM _migrations")).fetchall()
        ]
        return mode, busy, fks, names

    mode, busy, fks, names = with_store(tmp_path / "s.db", body)
    assert (mode, fks) == ("wal", 1) and busy >= 5000
    assert names == [name for name, _ in MIGRATIONS]
    # opening again applies nothing twice
    assert with_store(tmp_path / "s.db", body)[3] == names


def test_a_failed_migration_leaves_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with_store(tmp_path / "s.db", lambda s: asyncio.sleep(0))
    monkeypatch.setattr(
        "gs_video_report.storage.migrations.MIGRATIONS",
        [*MIGRATIONS, ("m999_broken", "CREATE TABLE ok_table (x); CREATE TABLE broken (")],
    )
    with pytest.raises(Exception, match=r"incomplete input|syntax error"):
        with_store(tmp_path / "s.db", lambda s: asyncio.sleep(0))

    async def tables() -> list[str]:
        async with aiosqlite.connect(tmp_path / "s.db") as conn:
            rows = await (
                await conn.execute("SELECT name FROM sqlite_master WHERE type='table'")
            ).fetchall()
            return [r[0] for r in rows]

    assert "ok_table" not in asyncio.run(tables())


def test_stage_transitions_are_committed_and_visible_to_another_connection(tmp_path: Path) -> None:
    async def body(store: CheckpointManager) -> None:
        await make_batch(store)
        await lease(store)
        task = await store.claim_next("b1", now=101.0, owner="test-owner")
        assert task is not None and task.seq == 0 and task.stage is TaskStage.UPLOADING
        await store.share_upload(
            task.id,
            name="files/abc",
            uri="u",
            mime_type="video/mp4",
            expires_at=200_000.0,
            key_fingerprint="key-1",
            now=102.0,
        )
        async with aiosqlite.connect(tmp_path / "s.db") as other:  # what a killed process leaves
            row = await (
                await other.execute("SELECT stage, upload_name FROM tasks WHERE id = ?", (task.id,))
            ).fetchone()
            assert tuple(row) == ("processing", "files/abc")
        await store.set_stage(task.id, TaskStage.GENERATING, now=103.0)
        await store.record_attempts(
            task.id,
            [
                CallRecord("upload", None, 0.2, True, None, None),
                CallRecord("generate", "m", 1.5, True, Usage(10, 5, 0, 0, 15), "STOP"),
            ],
            key_fingerprint="key-1",
            now=104.0,
        )
        await store.complete(task.id, Usage(10, 5, 0, 0, 15), 0.01, now=105.0)
        done = await store.task(task.id)
        assert done.stage is TaskStage.DONE and done.total_tokens == 15 and done.cost_usd == 0.01
        assert [a["stage"] for a in await store.attempts(task.id)] == ["upload", "generate"]
        assert (await store.counts("b1")) == {TaskStage.DONE: 1, TaskStage.PENDING: 2}

    with_store(tmp_path / "s.db", body)


def test_retry_waits_until_its_time_and_recover_requeues_in_flight(tmp_path: Path) -> None:
    async def body(store: CheckpointManager) -> None:
        await make_batch(store, n=2)
        await lease(store)
        first = await store.claim_next("b1", now=100.0, owner="test-owner")
        assert first is not None
        await store.schedule_retry(
            first.id, at=160.0, kind="TransientError", message="503", now=100.0
        )
        second = await store.claim_next("b1", now=101.0, owner="test-owner")
        assert second is not None and second.seq == 1  # the retry is not due yet
        assert await store.claim_next("b1", now=102.0, owner="test-owner") is None
        assert await store.next_retry_at("b1") == 160.0
        again = await store.claim_next("b1", now=160.0, owner="test-owner")
        assert again is not None and again.id == first.id and again.attempts == 1
        # a killed process leaves `second` uploading: recover puts it back, upload info kept
        await store.share_upload(
            second.id,
            name="files/x",
            uri="u",
            mime_type="video/mp4",
            expires_at=9e9,
            key_fingerprint="k",
            now=103.0,
        )
        assert await store.recover("b1", now=104.0) == 2
        back = await store.task(second.id)
        assert back.stage is TaskStage.PENDING and back.upload_name == "files/x"

    with_store(tmp_path / "s.db", body)


def test_queries_on_pending_tasks_never_step_over_done_ones(tmp_path: Path) -> None:
    """Every statement the store runs on a batch's pending tasks, as SQLite plans it: the
    claim by the index that holds pending tasks alone, the others by it or by (batch,
    stage); never the whole table, nor the batch in seq order (a claim stepped over every
    done task that way: 20 ms a claim at 50,000 done)."""

    async def body(store: CheckpointManager) -> dict[str, str]:
        await make_batch(store, n=30)
        await lease(store)
        await store.conn.execute(
            "UPDATE tasks SET stage = 'done', finished_at = 150.0 WHERE seq < 25"
        )
        await store.conn.commit()
        calls: dict[str, Callable[[], Awaitable[object]]] = {
            "claim_next": lambda: store.claim_next("b1", now=200.0, owner="test-owner"),
            "next_retry_at": lambda: store.next_retry_at("b1"),
            "blocked_pending": lambda: store.blocked_pending("b1", 200.0, "o"),
            "cancel_pending": lambda: store.cancel_pending("b1", 200.0),
        }
        plans = {}
        for name, call in calls.items():
            traced: list[str] = []
            await store.conn.set_trace_callback(traced.append)  # the SQL with its values
            await call()
            await store.conn.set_trace_callback(None)
            # one statement, traced once more for each trigger it fires
            (sql,) = {t for t in traced if "stage = 'pending'" in t}
            rows = await store.conn.execute_fetchall("EXPLAIN QUERY PLAN " + sql)
            plans[name] = " | ".join(str(r[3]) for r in rows)
        return plans

    plans = with_store(tmp_path / "s.db", body)
    assert "SEARCH tasks USING INDEX tasks_pending (batch_id=?)" in plans["claim_next"], plans
    for plan in plans.values():
        assert "SCAN tasks" not in plan and "sqlite_autoindex_tasks_1" not in plan, plans


def test_lease_blocks_a_second_owner_until_it_expires(tmp_path: Path) -> None:
    async def body(store: CheckpointManager) -> None:
        await make_batch(store)
        await store.acquire_lease("b1", owner="host:1", pid=1, now=100.0, ttl_s=30)
        with pytest.raises(LeaseHeldError, match="PID 1"):
            await store.acquire_lease("b1", owner="host:2", pid=2, now=110.0, ttl_s=30)
        assert await store.heartbeat("b1", owner="host:1", now=120.0, ttl_s=30)
        with pytest.raises(LeaseHeldError):
            await store.acquire_lease("b1", owner="host:2", pid=2, now=140.0, ttl_s=30)
        # host:1 was killed; its lease runs out and the next resume takes over
        await store.acquire_lease("b1", owner="host:2", pid=2, now=151.0, ttl_s=30)
        assert not await store.heartbeat("b1", owner="host:1", now=152.0, ttl_s=30)
        await store.release_lease("b1", owner="host:2")
        assert (await store.batch("b1"))["lease_owner"] is None  # type: ignore[index]

    with_store(tmp_path / "s.db", body)


def test_done_ledger_spans_batches_and_cancel_flag(tmp_path: Path) -> None:
    async def body(store: CheckpointManager) -> None:
        await make_batch(store, n=1, batch_id="b1")
        await lease(store)
        task = await store.claim_next("b1", now=100.0, owner="test-owner")
        assert task is not None
        assert task.done_key not in await store.done_ledger()
        await store.complete(task.id, Usage(), None, now=101.0)
        await make_batch(store, n=1, batch_id="b2")
        found = (await store.done_ledger())[task.done_key]
        assert found.batch_id == "b1"
        await store.request_cancel("b2", now=102.0)
        assert await store.cancel_requested("b2") and not await store.cancel_requested("b1")
        assert [b["id"] for b in await store.batches()] in (["b2", "b1"], ["b1", "b2"])

    with_store(tmp_path / "s.db", body)
