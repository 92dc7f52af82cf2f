"""The chaos suite: nothing is lost, nothing is paid twice.

- SIGKILL at random moments, spread over every stage, then resume, again and again: every
  video ends with exactly one lesson, identical to an uninterrupted run's.
- 30 % mixed faults from the simulator: retryable ones are retried within the budget,
  permanent ones fail with a reason, concurrency never exceeds what was allowed.
- The disk fills mid-batch: nothing that was not written is marked done, and a resume
  writes the rest without paying again.
- The API key never appears in the database, logs, reports, lessons or messages.

Each test prints its figures (kills, faults) for the record.
"""

from __future__ import annotations

import asyncio
import errno
import json
import random
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.batch.runner import RunOptions, run_batch
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.errors import ExitCode
from gs_video_report.services import writer
from gs_video_report.services.templates import TemplateRegistry
from gs_video_report.simulator import Simulator
from gs_video_report.storage import CheckpointManager, TaskStage, open_db
from tests.conftest import SAMPLES, TEST_KEY, copy_lecture
from tests.test_batch_runner import record
from tests.test_processes import Child, db_rows, lessons, stages, the_batch, wait_until
from tests.virtual_time import SteppingClock

RETRYABLE_KINDS = (
    "TransientError",
    "NetworkError",
    "ApiTimeoutError",
    "RateLimitError",
    "FileAccessError",
)


def course(folder: Path, count: int) -> Path:
    """``count`` videos with distinct names (the simulator counts calls by name)."""
    folder.mkdir(parents=True, exist_ok=True)
    samples = sorted(SAMPLES.glob("*.mp4"))
    for i in range(count):
        copy_lecture(samples[i % len(samples)], folder / f"lecture_{i:02d}.mp4")
    return folder


def temp_files(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def _without_created(markdown: str) -> str:
    return "\n".join(line for line in markdown.splitlines() if not line.startswith("created:"))


# -- SIGKILL at random moments ------------------------------------------------------------
@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_twenty_sigkills_over_every_stage_lose_nothing_and_pay_nothing_twice(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    videos = course(tmp_path / "videos", 12)  # enough work left for every kill
    args = ("-t", "summary_report", "-q", "-p", "2", "--max-uploads", "1")

    # the uninterrupted run, for comparison (its own state, its own output)
    (tmp_path / "ref" / "work").mkdir(parents=True)
    reference = Child(
        tmp_path / "ref", sim, "batch", "-d", str(videos), "-o", str(tmp_path / "out_ref"), *args
    )
    code, _, err = reference.finish()
    assert code == 0, err
    sim.state.reset_stats()

    # stages last long enough to be caught in: uploads, processing, generation
    sim.set_limits(latency={"upload_chunk": 0.25, "generate": 0.4}, polls_until_active=1)
    rng = random.Random(20261122)
    chaos, targets = tmp_path / "chaos", ["uploading", "processing", "generating", "any"]
    (chaos / "work").mkdir(parents=True)
    kills: list[tuple[str, list[str]]] = []
    command = ["batch", "-d", str(videos), "-o", str(tmp_path / "out_chaos"), *args]
    while len(kills) < 24:
        child = Child(chaos, sim, *command)
        target = targets[len(kills) % len(targets)]
        if target == "any":
            condition = lambda: bool(stages(chaos))  # noqa: E731 - any moment after planning
        else:
            condition = lambda t=target: t in stages(chaos)  # type: ignore[misc]  # noqa: E731
        try:
            wait_until(f"a video {target}", condition, child, timeout=20)
        except AssertionError:
            code, _, err = child.finish()
            assert code == 0, err  # it finished before the moment came: fine, it is done
            break
        time.sleep(rng.uniform(0.0, 0.3))  # a random moment within the stage
        in_flight = [s for s in stages(chaos) if s not in ("pending", "done")]
        child.kill()
        kills.append((target, in_flight))
        command = ["resume", the_batch(chaos), "-q"]
        if "done" in stages(chaos) and set(stages(chaos)) == {"done"}:
            break
    if set(stages(chaos)) != {"done"}:
        code, _, err = Child(chaos, sim, "resume", the_batch(chaos), "-q").finish()
        assert code == 0, err

    seen = {stage for _, in_flight in kills for stage in in_flight}
    print(f"\nchaos: {len(kills)} SIGKILLs; stages in flight when killed: {sorted(seen)}")
    assert len(kills) >= 20
    assert {"uploading", "processing", "generating"} <= seen
    # every video: exactly one lesson, identical to the uninterrupted run's
    ours, theirs = lessons(tmp_path / "out_chaos"), lessons(tmp_path / "out_ref")
    assert [p.name for p in ours] == [p.name for p in theirs] and len(ours) == 12
    for mine, ref in zip(ours, theirs, strict=True):
        assert _without_created(mine.read_text()) == _without_created(ref.read_text())
        mine_json = json.loads(mine.with_suffix(".json").read_text())
        ref_json = json.loads(ref.with_suffix(".json").read_text())
        assert mine_json["answer"] == ref_json["answer"]
    # no finished video generated again after it was done
    finished = dict(
        db_rows(chaos, "SELECT display_name, finished_at FROM tasks WHERE stage = 'done'")
    )
    assert len(finished) == 12
    for request in sim.stats()["generate_requests"]:
        name = Path(request["subject"]).stem
        assert request["at"] <= float(finished[name]), f"{name} generated after it was done"
    with sqlite3.connect(chaos / "home" / "state.db") as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert temp_files(tmp_path / "out_chaos") == []


# -- 30 % mixed faults -----------------------------------------------------------------------
FAULTS = (
    "rate_limit_minute",
    "server_error",
    "unavailable",
    "reset",
    "hang",
    "truncated",
    "processing_failed",
    "max_tokens",
)


def test_thirty_percent_mixed_faults(sim: Simulator, tmp_path: Path) -> None:
    course(tmp_path / "lectures", 24)
    sim.chaos(0.3, FAULTS, hang_s=2.0)
    sim.set_limits(polls_until_active=1)
    max_retries, parallel, uploads = 10, 4, 2
    settings = load_settings(
        env={
            "GS_VIDEOREPORT_BASE_URL": sim.url,
            "GS_VIDEOREPORT_API__REQUEST_TIMEOUT": "1",  # a hung generate or poll: 1 s
            # an upload is not given up while the server still works on it (a hung one is
            # dropped by the server after 2 s): a client that gives up on a slow upload
            # and starts another one makes the server see one more upload than allowed
            "GS_VIDEOREPORT_API__UPLOAD_TIMEOUT": "5",
        },
        cwd=tmp_path,
    )

    async def main() -> tuple[Any, list[Any]]:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            clock = SteppingClock()
            outcome = await run_batch(
                store,
                "b1",
                settings=settings,
                keys=[PoolKey.of(ApiKey(TEST_KEY, "t"))],
                options=RunOptions(parallel=parallel, max_uploads=uploads, max_retries=max_retries),
                registry=TemplateRegistry.with_builtins(),
                clock=clock.clock,
            )
            tasks = await store.tasks("b1")
            calls = {t.id: await store.attempts(t.id) for t in tasks}
            return outcome, [(t, calls[t.id]) for t in tasks]

    outcome, tasks = asyncio.run(main())
    stats = sim.stats()
    injected = sum(stats["faults_injected"].values())
    done = [t for t, _ in tasks if t.stage is TaskStage.DONE]
    failed = [t for t, _ in tasks if t.stage is TaskStage.FAILED]
    print(
        f"\nfaults: {injected} injected over {sim.api_calls()} calls"
        f" ({dict(stats['faults_injected'])}); {len(done)} done, {len(failed)} failed"
        f" ({sorted(t.last_error_kind or '' for t in failed)}); max in flight"
        f" {stats['max_in_flight_by']}"
    )
    assert injected >= 20 and len(done) + len(failed) == 24
    for task in failed:
        assert task.last_error, task  # a reason, always
        if task.last_error_kind in RETRYABLE_KINDS:
            assert task.attempts >= max_retries, task  # only when the budget was spent
    assert outcome.exit_code == (ExitCode.PARTIAL if failed else ExitCode.OK)
    # each finished video: one lesson, answered once (adapted retries are not answers)
    for task, calls in tasks:
        answered = [c for c in calls if c["stage"] == "generate" and c["ok"]]
        assert len(answered) == (1 if task.stage is TaskStage.DONE else 0), calls
        assert Path(task.output_md).is_file() == (task.stage is TaskStage.DONE)
    assert stats["max_in_flight_by"].get("generate", 0) <= parallel
    assert stats["max_in_flight_by"].get("upload", 0) <= uploads
    assert temp_files(tmp_path / "out") == []


# -- the disk fills mid-batch ----------------------------------------------------------------
def test_a_full_disk_fails_what_it_stops_and_a_resume_writes_it_without_paying(
    sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    course(tmp_path / "lectures", 4)
    real_mkstemp = tempfile.mkstemp
    room = {"files": 2}  # the first lesson's two files fit, then the disk is full

    def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
        # Only the lessons' own files fill the disk: the simulator (in this process) spools
        # uploads through tempfile too, and the writability probe is no lesson file.
        lesson_file = str(kwargs.get("dir", "")).startswith(str(tmp_path / "out"))
        if not lesson_file or str(kwargs.get("prefix", "")).startswith(".gs_videoreport-check."):
            return real_mkstemp(*args, **kwargs)
        if room["files"] <= 0:
            raise OSError(errno.ENOSPC, "No space left on device")
        room["files"] -= 1
        return real_mkstemp(*args, **kwargs)

    monkeypatch.setattr(writer.tempfile, "mkstemp", mkstemp)

    async def run(store: CheckpointManager) -> Any:
        clock = SteppingClock()
        return await run_batch(
            store,
            "b1",
            settings=load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=tmp_path),
            keys=[PoolKey.of(ApiKey(TEST_KEY, "t"))],
            options=RunOptions(parallel=1, max_uploads=1),
            registry=TemplateRegistry.with_builtins(),
            clock=clock.clock,
        )

    async def main() -> None:
        async with open_db(tmp_path / "state.db") as conn:
            store = CheckpointManager(conn)
            await record(store, sim, tmp_path, "b1")
            outcome = await run(store)
            assert outcome.counts == {TaskStage.DONE: 1, TaskStage.FAILED: 3}
            failed = [t for t in await store.tasks("b1") if t.stage is TaskStage.FAILED]
            for task in failed:
                assert task.last_error_kind == "OutputError"
                assert "No space left on device" in (task.last_error or "")
                assert not Path(task.output_md).exists()
            assert len(await store.done_ledger()) == 1
            assert temp_files(tmp_path / "out") == []
            generated = sim.stats()["calls"]["generate"]
            room["files"] = 100  # space freed
            outcome = await run(store)  # resume
            assert outcome.counts == {TaskStage.DONE: 4}
            assert sim.stats()["calls"]["generate"] == generated  # answers were kept
            assert len(lessons(tmp_path / "out")) == 4

    asyncio.run(main())


# -- the key never leaks -----------------------------------------------------------------------
def test_the_api_key_appears_nowhere(
    cli: Any, sim: Simulator, tmp_path: Path, isolated_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = "AIzaSyLEAKCHECK-0123456789abcdefghijklmnop"
    monkeypatch.setenv("GEMINI_API_KEY", key)
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    videos = course(tmp_path / "videos", 4)
    sim.chaos(0.3, ("server_error", "permission_denied", "truncated", "rate_limit_day"))
    out = tmp_path / "out"
    outputs = [
        cli("batch", "-d", str(videos), "-o", str(out), "-v", "--json"),
        cli("keys", "--json"),
        cli("list-batches", "--json"),
    ]
    batch_id = json.loads(outputs[-1].stdout)[0]["id"]
    sim.chaos(0.0, ())
    outputs.append(cli("resume", batch_id, "-v"))
    outputs.append(cli("status", batch_id, "--json"))
    sim.invalidate_key(key)
    outputs.append(cli("main", str(videos / "lecture_00.mp4"), "-o", str(out), "-v", "--force"))
    assert outputs[-1].exit_code == ExitCode.AUTH
    texts = [r.output for r in outputs]
    files = [p for root in (isolated_env, out) for p in root.rglob("*") if p.is_file()]
    assert any(p.name == "state.db" for p in files) and any(p.suffix == ".log" for p in files)
    for path in files:
        assert key.encode() not in path.read_bytes(), path
    for text in texts:
        assert key not in text
    assert (
        ApiKey(key, "t").fingerprint in (isolated_env / "logs" / "gs_videoreport.log").read_text()
    )
