"""Never pay twice for a video (issue "Pay once", A): the same work in two processes at
once, an older batch resumed after a newer one did the work, byte-identical copies,
another working directory, a lost state database, and a lease taken over from a paused
process. Real second processes where it is about processes."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.batch.api import Engine, PlanRequest, RunControl, RunOptions
from gs_video_report.config import ApiKey, PoolKey, load_settings
from gs_video_report.models import StopReason, TaskStage
from gs_video_report.simulator import Fault, Simulator
from tests.conftest import SAMPLES, TEST_KEY, copy_lecture
from tests.test_processes import Child, db_rows, lessons, wait_until
from tests.virtual_time import SteppingClock


def course(folder: Path, count: int) -> Path:
    samples = sorted(SAMPLES.glob("*.mp4"))
    for i in range(count):
        copy_lecture(samples[i % len(samples)], folder / f"lecture_{i:02d}.mp4")
    return folder


def generates(sim: Simulator) -> int:
    return int(sim.stats()["calls"].get("generate", 0))


def test_two_identical_batches_at_once_pay_each_video_once(sim: Simulator, tmp_path: Path) -> None:
    videos = course(tmp_path / "videos", 6)
    sim.set_limits(latency={"generate": 0.3})
    args = ("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "-q", "-p", "3")
    first, second = Child(tmp_path, sim, *args), Child(tmp_path, sim, *args)
    results = [first.finish(120), second.finish(120)]
    assert [code for code, _, _ in results] == [0, 0], results
    assert generates(sim) == 6  # not 12
    assert len(lessons(tmp_path / "out")) == 6
    assert sorted(sim.stats()["generate_by_subject"].values()) == [1] * 6


def _engine(sim: Simulator, tmp_path: Path) -> Engine:
    settings = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=tmp_path)
    keys = [PoolKey.of(ApiKey(TEST_KEY, "test"))]
    return Engine(settings, keys=keys, home=tmp_path / "home", clock=SteppingClock().clock)


def test_an_older_batch_resumed_after_a_newer_one_did_the_work_pays_nothing(
    sim: Simulator, tmp_path: Path
) -> None:
    import asyncio

    videos = course(tmp_path / "videos", 3)
    engine = _engine(sim, tmp_path)

    async def main() -> None:
        older = await engine.plan(PlanRequest(output=tmp_path / "a", input_dir=videos))
        control = RunControl()
        control.request_stop(StopReason.INTERRUPTED, "stopped before it began")
        stopped = await engine.start(older, RunOptions(simulated=True), control=control)
        assert stopped.counts == {TaskStage.PENDING: 3}
        newer = await engine.plan(PlanRequest(output=tmp_path / "b", input_dir=videos))
        assert (await engine.start(newer, RunOptions(simulated=True))).counts == {TaskStage.DONE: 3}
        paid = generates(sim)
        resumed = await engine.resume(stopped.batch_id)
        assert resumed.counts == {TaskStage.DONE: 3}
        assert generates(sim) == paid == 3  # the older batch reused the newer one's answers
        view = await engine.status(stopped.batch_id)
        assert all(t.cost_usd == 0.0 for t in view.tasks)
        report = json.loads(
            (tmp_path / "a" / "_reports" / stopped.batch_id / "summary.json").read_text()
        )
        same = [v["same_content_as"] for v in report["videos"]]
        assert all(s and s.startswith(str(tmp_path / "b")) for s in same), same

    asyncio.run(main())
    assert len(lessons(tmp_path / "a")) == 3 and len(lessons(tmp_path / "b")) == 3


def test_byte_identical_copies_are_generated_once(cli: Any, sim: Simulator, tmp_path: Path) -> None:
    videos = tmp_path / "videos"
    videos.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / "a_lecture.mp4")
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / "b_same_lecture.mp4")
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", videos / "c_other.mp4")
    out = tmp_path / "out"
    result = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "-q", "--json")
    assert result.exit_code == 0, result.output
    assert generates(sim) == 2 and sim.stats()["uploads_completed"] == 2
    assert len(lessons(out)) == 3
    summary = json.loads(result.stdout)
    report = json.loads(Path(summary["report"], "summary.json").read_text())
    by_video = {v["video"]: v for v in report["videos"]}
    first, copy = by_video["a_lecture"], by_video["b_same_lecture"]
    assert copy["same_content_as"] == first["output"] and copy["cost_usd"] == 0.0
    assert "same content as" in Path(summary["report"], "summary.md").read_text()
    answer = json.loads(Path(copy["output"]).with_suffix(".json").read_text())["answer"]
    assert answer == json.loads(Path(first["output"]).with_suffix(".json").read_text())["answer"]


def test_paths_never_depend_on_the_working_directory(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    course(one / "lectures", 3)
    two.mkdir()
    sim.add_fault(Fault("rate_limit_day", "generate", match="lecture_01"))
    monkeypatch.chdir(one)
    first = cli("batch", "-d", "lectures", "-o", "out", "--simulate", "-q", "--json")
    assert first.exit_code == 5, first.output  # parked: resumable
    batch_id = json.loads(first.stdout)["batch_id"]
    monkeypatch.chdir(two)
    resumed = cli("resume", batch_id, "-q")
    assert resumed.exit_code == 0, resumed.output
    assert len(lessons(one / "out")) == 3 and not (two / "out").exists()
    paid = generates(sim)
    again = cli("batch", "-d", str(one / "lectures"), "-o", str(one / "out"), "--simulate", "-q")
    assert again.exit_code == 0, again.output
    assert generates(sim) == paid  # every video skipped from another directory


def test_a_lost_state_database_never_makes_a_rerun_pay(
    cli: Any, sim: Simulator, tmp_path: Path, isolated_env: Path
) -> None:
    videos = course(tmp_path / "videos", 3)
    out = tmp_path / "out"
    assert cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "-q").exit_code == 0
    assert generates(sim) == 3
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (isolated_env / name).unlink(missing_ok=True)
    (next(out.rglob("lecture_01.md"))).unlink()  # and one lesson lost its Markdown
    rerun = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "-q")
    assert rerun.exit_code == 0, rerun.output
    assert generates(sim) == 3  # recognised from the sidecars: nothing paid again
    assert len(lessons(out)) == 3


def test_a_paused_process_stops_before_paying_again_once_taken_over(
    sim: Simulator, tmp_path: Path
) -> None:
    videos = course(tmp_path / "videos", 8)
    # the first video's first call hangs while the process is paused past its lease
    sim.add_fault(Fault("hang", "generate", times=1, delay=4.0, match="lecture_00"))
    env = {"GS_VIDEOREPORT_RUN__LEASE_TTL": "2"}
    args = ("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "-q", "-p", "1")
    paused = Child(tmp_path, sim, *args, env=env)
    hanging = lambda: sim.stats()["faults_injected"].get("hang", 0) == 1  # noqa: E731
    wait_until("the first video's call on the wire", hanging, paused)
    os.kill(paused.proc.pid, signal.SIGSTOP)
    try:
        lease = lambda: db_rows(tmp_path, "SELECT lease_until FROM batches")  # noqa: E731
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not (lease() and lease()[0][0] < time.time()):
            time.sleep(0.05)  # waiting on the paused process's lease to run out
        batch_id = str(db_rows(tmp_path, "SELECT id FROM batches")[0][0])
        taker = Child(tmp_path, sim, "resume", batch_id, "-q", env=env)
        code, _, taker_err = taker.finish(120)
        assert code == 0, taker_err
    finally:
        os.kill(paused.proc.pid, signal.SIGCONT)
    code, _, err = paused.finish(60)
    assert code == 130 and "another process took over" in err, (code, err)
    # one lesson served per video, and no call but those on the wire when it was paused
    served = sim.stats()["generate_by_subject"]
    assert set(served) == {f"lecture_0{i}.mp4" for i in range(8)}
    assert sum(served.values()) <= 8 + 1  # the other slot's call may have been on the wire
    assert generates(sim) <= 8 + 2  # + the hung call (and a second slot's, if it was busy)
    assert len(lessons(tmp_path / "out")) == 8
    # the process taken over wrote nothing back over the new owner's work: the batch is
    # done, or (rarely, under a 2 s lease on a loaded machine) says what is left, and a
    # resume finishes it without paying again
    stages = db_rows(tmp_path, "SELECT stage, COUNT(*) FROM tasks GROUP BY stage")
    if stages != [("done", 8)]:
        paid = generates(sim)
        again = Child(tmp_path, sim, "resume", batch_id, "-q", env=env)
        assert again.finish(120)[0] == 0
        assert generates(sim) == paid, (stages, taker_err, err)
    assert db_rows(tmp_path, "SELECT stage, COUNT(*) FROM tasks GROUP BY stage") == [("done", 8)]
    assert db_rows(tmp_path, "SELECT status, lease_owner FROM batches") == [("done", None)]


def test_a_new_output_folder_gets_its_lessons_without_paying_again(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = course(tmp_path / "videos", 3)
    first = cli("batch", "-d", str(videos), "-o", str(tmp_path / "a"), "--simulate", "-q")
    assert first.exit_code == 0, first.output
    again = cli("batch", "-d", str(videos), "-o", str(tmp_path / "b"), "--simulate", "-q")
    assert again.exit_code == 0, again.output
    assert generates(sim) == 3  # written from the answers already paid for
    assert len(lessons(tmp_path / "b")) == 3


def test_lessons_are_readable_by_others_and_an_unwritable_output_costs_nothing(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = course(tmp_path / "videos", 2)
    old = os.umask(0o022)
    try:
        assert (
            cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate").exit_code
            == 0
        )
    finally:
        os.umask(old)
    for path in (tmp_path / "out").rglob("*.*"):
        assert path.stat().st_mode & 0o777 == 0o644, path  # not mkstemp's 0600
    blocked = tmp_path / "a_file"
    blocked.write_text("not a folder")
    calls = sim.api_calls()
    result = cli("batch", "-d", str(videos), "-o", str(blocked / "out"), "--simulate", "--force")
    assert result.exit_code == 3 and "cannot be written" in result.stderr, result.output
    assert "Traceback" not in result.output and sim.api_calls() == calls  # nothing paid


def test_the_state_database_deleted_mid_run_never_makes_a_rerun_pay(
    sim: Simulator, tmp_path: Path
) -> None:
    videos = course(tmp_path / "videos", 3)
    sim.add_fault(Fault("hold", "generate", match="lecture_01"))
    args = ("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "-q", "-p", "1")
    child = Child(tmp_path, sim, *args)
    held = lambda: sim.stats()["faults_injected"].get("hold", 0) >= 1  # noqa: E731
    wait_until("the second video's call in flight", held, child)
    for name in ("state.db", "state.db-wal", "state.db-shm"):
        (tmp_path / "home" / name).unlink(missing_ok=True)  # mid-run, the call on the wire
    sim.release()
    child.finish(120)  # whatever it says, it has paid for the three answers
    paid = generates(sim)
    assert paid == 3
    rerun = Child(tmp_path, sim, *args)
    code, _, err = rerun.finish(120)
    assert code == 0, err
    assert generates(sim) == paid  # every answer was found beside its lesson
    assert len(lessons(tmp_path / "out")) == 3


def test_an_answer_on_disk_the_database_never_heard_of_keeps_its_tokens_and_cost(
    sim: Simulator, tmp_path: Path
) -> None:
    """Killed after the sidecar was written and before the state database recorded the
    answer: the resume writes the lesson with no call, and the lesson's tokens and the
    task's cost are the paid answer's, not 0 (the report would under-state the bill)."""
    import asyncio
    import sqlite3

    videos = course(tmp_path / "videos", 1)
    engine = _engine(sim, tmp_path)

    async def first() -> tuple[str, float | None]:
        planned = await engine.plan(PlanRequest(output=tmp_path / "out", input_dir=videos))
        outcome = await engine.start(planned, RunOptions(simulated=True))
        return outcome.batch_id, (await engine.status(outcome.batch_id)).tasks[0].cost_usd

    batch_id, paid_cost = asyncio.run(first())
    lesson = lessons(tmp_path / "out")[0]
    before = lesson.read_text()
    # the state the kill leaves: answer on disk, the task mid-generate, no lesson, no ledger
    with sqlite3.connect(tmp_path / "home" / "state.db") as db:
        db.execute(
            "UPDATE tasks SET stage = 'generating', prompt_tokens = NULL, output_tokens = NULL,"
            " thoughts_tokens = NULL, total_tokens = NULL, cost_usd = NULL, finished_at = NULL"
        )
        db.execute("DELETE FROM done_ledger")
        db.execute("DELETE FROM task_parts")  # the answer's copy in the database
    lesson.unlink()
    calls = generates(sim)
    resumed = asyncio.run(engine.resume(batch_id))
    assert resumed.counts == {TaskStage.DONE: 1} and generates(sim) == calls
    task = asyncio.run(engine.status(batch_id)).tasks[0]
    assert paid_cost and task.cost_usd == pytest.approx(paid_cost)
    created = lambda text: [x for x in text.splitlines() if not x.startswith("created:")]  # noqa: E731
    assert created(lesson.read_text()) == created(before)
