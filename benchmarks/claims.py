"""What a claim costs as a batch grows: ``CheckpointManager.claim_next`` (and the other
queries on pending tasks) with most of the batch done.

For each size N, one batch of N tasks in its own fresh state database (migrated as the
tool opens it), all but the last ``--pending`` done (as a long batch near its end: done
tasks have the lowest ``seq``). Then ``--samples`` rounds; each round times one claim in
every database in turn, and puts the claimed task back (untimed), so every claim meets
the same state. Interleaving the sizes gives each the same share of the machine's noise
(a claim takes a fraction of a millisecond, about what another process's burst costs).
``next_retry_at`` and ``blocked_pending`` are timed the same way. Direct calls to the
store, through aiosqlite as the engine makes them; no API, no workers.

Target: the claim's time flat in N (medians within +-10 % from 1,000 to 50,000 tasks).

    python benchmarks/claims.py                  # N = 1,000 and 50,000; 200 pending
    python benchmarks/claims.py -n 1000 -n 200000 --pending 500 --samples 5000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.checkpoint import CLAIM_NEXT, NewTask

BATCH = "batch_bench"
OWNER = "bench-owner"
NEXT_RETRY_AT = "SELECT MIN(next_attempt_at) FROM tasks WHERE batch_id = ? AND stage = 'pending'"


def _task(seq: int) -> NewTask:
    return NewTask(
        seq=seq,
        source=f"/videos/lecture_{seq:06d}.mp4",
        source_kind="file",
        display_name=f"lecture_{seq:06d}",
        template="summary_report",
        template_version="1",
        params={},
        model="gemini-test",
        content_fingerprint=f"fp{seq:06d}",
        done_key=f"key{seq:06d}",
        output_md=f"/out/lecture_{seq:06d}.md",
        output_json=f"/out/lecture_{seq:06d}.json",
        duration_s=600.0,
    )


async def _fill(store: CheckpointManager, tasks: int, pending: int, now: float) -> None:
    await store.create_batch(
        BATCH,
        source_desc="benchmark",
        output_dir="/out",
        settings={},
        tasks=(_task(seq) for seq in range(tasks)),
        now=now,
    )
    await store.acquire_lease(BATCH, owner=OWNER, pid=1, now=now, ttl_s=1e9)
    # done as the engine leaves them (the ledger trigger runs as for a real one)
    await store.conn.execute(
        "UPDATE tasks SET stage = 'done', started_at = ?, finished_at = ?, updated_at = ?"
        " WHERE batch_id = ? AND seq < ?",
        (now, now, now, BATCH, tasks - pending),
    )
    await store.conn.commit()


async def _plan(store: CheckpointManager, sql: str, params: tuple[Any, ...]) -> str:
    rows = await store.conn.execute_fetchall("EXPLAIN QUERY PLAN " + sql, params)
    # how the tasks are found (the claim's work-claim test is the same at any size)
    return "; ".join(str(r[3]) for r in rows if str(r[3]).startswith("SEARCH tasks USING INDEX"))


async def _ms(call: Callable[[], Awaitable[Any]]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = await call()
    return (time.perf_counter() - started) * 1000, result


async def _sample(store: CheckpointManager, now: float) -> tuple[float, float, float]:
    claim_ms, task = await _ms(lambda: store.claim_next(BATCH, now, OWNER))
    assert task is not None
    await store.release_claim(task.id, OWNER)
    await store.requeue(task.id, now)
    retry_ms, _ = await _ms(lambda: store.next_retry_at(BATCH))
    blocked_ms, _ = await _ms(lambda: store.blocked_pending(BATCH, now, OWNER))
    return claim_ms, retry_ms, blocked_ms


async def measure(
    sizes: list[int], pending: int, samples: int, folder: Path
) -> list[dict[str, Any]]:
    now = time.time()
    async with contextlib.AsyncExitStack() as stack:
        stores = []
        for size in sizes:
            conn = await stack.enter_async_context(open_db(folder / f"state_{size}.db"))
            stores.append(CheckpointManager(conn))
            await _fill(stores[-1], size, min(pending, size), now)
        for store in stores:  # warm-up, untimed: caches, the first statements
            for _ in range(20):
                await _sample(store, now)
        took: list[list[tuple[float, float, float]]] = [[] for _ in sizes]
        for _ in range(samples):
            for i, store in enumerate(stores):
                took[i].append(await _sample(store, now))
        plans = [
            {
                "claim": await _plan(
                    store, CLAIM_NEXT, (now, OWNER, now, BATCH, now, OWNER, now, OWNER)
                ),
                "next_retry_at": await _plan(store, NEXT_RETRY_AT, (BATCH,)),
            }
            for store in stores
        ]
    return [
        {
            "tasks": size,
            "done": size - min(pending, size),
            "samples": samples,
            "claim_ms": round(statistics.median(t[0] for t in took[i]), 4),
            "claim_mean_ms": round(statistics.fmean(t[0] for t in took[i]), 4),
            "next_retry_at_ms": round(statistics.median(t[1] for t in took[i]), 4),
            "blocked_pending_ms": round(statistics.median(t[2] for t in took[i]), 4),
            "plans": plans[i],
        }
        for i, size in enumerate(sizes)
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--tasks", type=int, action="append")
    parser.add_argument("--pending", type=int, default=200)
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--json", action="store_true", help="one JSON object per size")
    args = parser.parse_args()
    sizes = args.tasks or [1_000, 50_000]
    print(f"# {machine()}")
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp:
        rows = asyncio.run(measure(sizes, args.pending, args.samples, Path(tmp)))
    for row in rows:
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"claims: {row['tasks']} tasks, {row['done']} done: claim {row['claim_ms']} ms"
            f" (mean {row['claim_mean_ms']}), next_retry_at {row['next_retry_at_ms']} ms,"
            f" blocked_pending {row['blocked_pending_ms']} ms (medians of {row['samples']});"
            f" plan: claim {row['plans']['claim']} | next_retry_at {row['plans']['next_retry_at']}"
        )
    first, last = rows[0]["claim_ms"], rows[-1]["claim_ms"]
    flat = abs(last - first) <= 0.10 * first
    if not args.json:
        print(
            f"claim at {rows[-1]['tasks']} / at {rows[0]['tasks']}: {last / first:.2f}x;"
            f" {'meets' if flat else 'MISSES'} the target (flat within +-10 %)"
        )
    return 0 if flat else 1


if __name__ == "__main__":
    sys.exit(main())
