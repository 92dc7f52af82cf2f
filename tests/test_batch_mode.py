"""Batch Mode and Flex (issue 14): the simulator's batches API through the real SDK, a
batch in batch mode against the same batch live (same lessons, half the price), EXPIRED
and PARTIALLY_SUCCEEDED jobs (only the missing requests asked again), a job whose create
answer was lost (adopted, not created twice), Flex on the wire, and SIGKILL at random
moments of real processes, then resume: no duplicate job, no lost answer, no request
answered twice, no re-upload of an ACTIVE video."""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.config import ApiKey, ApiSettings
from gs_video_report.models import GenerationSettings
from gs_video_report.services.gemini import GeminiService
from gs_video_report.services.gemini.batches import BatchClient, read_line
from gs_video_report.services.gemini.service import VideoRef
from gs_video_report.simulator import Fault, Simulator
from gs_video_report.simulator import batches as sim_batches
from tests.conftest import REPO, SAMPLES, TEST_KEY, copy_lecture

SCHEMA = {"type": "object", "properties": {"title": {"type": "string"}}, "required": ["title"]}


def _lectures(root: Path, n: int) -> Path:
    for i in range(n):
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", root / f"lecture_{i:03d}.mp4")
    return root


def _lessons(out: Path) -> dict[str, Any]:
    """Each lesson's answer, by its path under the output folder."""
    found = {}
    for path in sorted(out.rglob("*.json")):
        if "_reports" in path.parts:
            continue
        found[str(path.relative_to(out))] = json.loads(path.read_text())["answer"]
    return found


# -- the simulator through the SDK ------------------------------------------------------
def test_the_sdk_runs_a_batch_job_against_the_simulator(sim: Simulator, sample: Path) -> None:
    async def main() -> None:
        api = ApiSettings(base_url=sim.url)  # type: ignore[call-arg]
        async with GeminiService(ApiKey(TEST_KEY, "test"), api) as service:
            file = await service.upload(sample, "video/mp4", display_name="fractions.mp4")
            file = await service.wait_until_active(file, size_bytes=sample.stat().st_size)
            client = BatchClient(service)
            ref = VideoRef(file.uri, file.mime_type, file.name)
            lines = [
                client.request_line(
                    f"k{i}",
                    video=ref,
                    prompt="a lesson",
                    schema=SCHEMA,
                    settings=GenerationSettings(max_output_tokens=4096),
                    system_instruction="be brief",
                )
                for i in range(6)
            ]
            # the REST shape: settings nested, the system instruction at the top
            assert "generationConfig" in lines[0]["request"]
            assert "systemInstruction" in lines[0]["request"]
            assert "system_instruction" not in lines[0]["request"]
            sim.add_fault(Fault("server_error", endpoint="generate", times=1))
            uploaded = await client.upload_lines(lines, display_name="gsvr-b-0")
            job = await client.create("gemini-3.8-flash", uploaded.name, "gsvr-b-0")
            assert job.state == "PARTIALLY_SUCCEEDED" and job.results_file
            assert await client.find("gsvr-b-0") == job
            assert await client.find("gsvr-b-1") is None
            results = await client.results(job.results_file)
            assert sorted(results) == [f"k{i}" for i in range(6)]
            outcomes = [read_line(results[f"k{i}"], model="m", validate=None) for i in range(6)]
            errors = [o for o in outcomes if not hasattr(o, "data")]
            assert len(errors) == 1 and errors[0].kind == "TransientError"
            sim.batch_timing(pending_s=3600, running_s=3600)
            slow = await client.create("gemini-3.8-flash", uploaded.name, "gsvr-b-1")
            assert slow.state == "PENDING"
            sim.advance_batches(5000)  # "hours" at once
            assert (await client.get(slow.name)).state == "RUNNING"
            await client.cancel(slow.name)
            assert (await client.get(slow.name)).state == "CANCELLED"

    asyncio.run(main())
    stats = sim.stats()
    assert stats["batches_created"] == 2
    assert stats["batch_lines_answered"] == 5  # the cancelled job answered nothing


# -- the engine ---------------------------------------------------------------------------
def test_batch_mode_writes_the_same_lessons_as_live_at_half_the_cost(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = _lectures(tmp_path / "videos", 20)
    live = cli("batch", "-d", str(videos), "-o", str(tmp_path / "live"), "--simulate", "--json")
    assert live.exit_code == 0, live.output
    live_calls = sim.stats()["calls"].get("generate", 0)
    assert live_calls == 20
    sim.state.reset_stats()
    batch = cli(
        "batch", "-d", str(videos), "-o", str(tmp_path / "bm"), "--simulate", "--mode", "batch",
        "--force", "--json",
    )  # fmt: skip
    assert batch.exit_code == 0, batch.output
    stats = sim.stats()
    assert stats["calls"].get("generate", 0) == 0  # no live call
    assert stats["batches_created"] == 1
    assert stats["batch_lines_answered"] == 20
    assert set(stats["batch_answers_by_key"].values()) == {1}
    assert _lessons(tmp_path / "live") == _lessons(tmp_path / "bm")
    assert {p.name for p in (tmp_path / "live").rglob("*.md")} == {
        p.name for p in (tmp_path / "bm").rglob("*.md")
    }
    cost = {}
    for name in ("live", "bm"):
        (summary,) = (tmp_path / name / "_reports").glob("*/summary.json")
        cost[name] = json.loads(summary.read_text())["total_cost_usd"]
    assert cost["bm"] == pytest.approx(cost["live"] / 2, rel=0.01)
    assert stats["files_live"] == 0  # every upload and request file deleted at the end


@pytest.mark.parametrize("fate", ["EXPIRED", "PARTIALLY_SUCCEEDED"])
def test_only_the_missing_requests_go_into_the_next_job(
    cli: Any, sim: Simulator, tmp_path: Path, fate: str
) -> None:
    videos = _lectures(tmp_path / "videos", 6)
    if fate == "EXPIRED":
        sim.plan_batch("EXPIRED")
    else:
        sim.add_fault(Fault("unavailable", endpoint="generate", match="lecture_002", times=1))
        sim.add_fault(Fault("unavailable", endpoint="generate", match="lecture_004", times=1))
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate",
                 "--mode", "batch")  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = sim.stats()
    jobs = stats["batches"]
    assert [j["state"] for j in jobs] == [fate, "SUCCEEDED"]
    assert jobs[1]["requests"] == (6 if fate == "EXPIRED" else 2)
    assert stats["batch_lines_answered"] == 6
    assert set(stats["batch_answers_by_key"].values()) == {1}
    assert stats["uploads_completed"] == 6 + len(jobs)  # videos once, one JSONL a job
    assert len(_lessons(tmp_path / "out")) == 6


def test_an_expired_upload_is_uploaded_again_before_its_request_goes_again(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    videos = _lectures(tmp_path / "videos", 3)
    sim.plan_batch("EXPIRED")
    original = sim_batches._advance
    expired: list[str] = []

    def expire_upload(state: Any, job: Any, answer: Any) -> None:
        original(state, job, answer)
        if job.state == "EXPIRED" and not expired:  # 48 h on: the job and an upload expired
            for file in state.files.values():
                if "lecture_001" in file.display_name:
                    file.deleted = True
                    expired.append(file.id)

    monkeypatch.setattr(sim_batches, "_advance", expire_upload)
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate",
                 "--mode", "batch")  # fmt: skip
    assert len(_lessons(tmp_path / "out")) == 3, result.output
    stats = sim.stats()
    assert set(stats["batch_answers_by_key"].values()) == {1}
    assert stats["uploads_completed"] == 3 + 1 + 2  # lecture_001 again, two JSONL files


def test_a_create_whose_answer_was_lost_is_adopted_not_made_twice(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = _lectures(tmp_path / "videos", 4)
    sim.add_fault(Fault("reset", endpoint="batch_create", times=1))  # created, answer lost
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate",
                 "--mode", "batch")  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = sim.stats()
    assert stats["batches_created"] == 1
    assert stats["batch_lines_answered"] == 4


def test_flex_sends_the_flex_tier_at_half_price(cli: Any, sim: Simulator, tmp_path: Path) -> None:
    videos = _lectures(tmp_path / "videos", 2)
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate",
                 "--mode", "flex")  # fmt: skip
    assert result.exit_code == 0, result.output
    tiers = {r["service_tier"] for r in sim.stats()["generate_requests"]}
    assert tiers == {"flex"}


def test_flex_refused_fails_the_videos_with_one_line_and_no_traceback(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    sim.set_limits(refuse_flex=True)
    videos = _lectures(tmp_path / "videos", 2)
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--simulate",
                 "--mode", "flex", "--max-retries", "0")  # fmt: skip
    assert result.exit_code != 0
    assert "Traceback" not in result.output
    assert "Flex service tier is not available" in result.output
    assert sim.stats()["calls"]["generate"] == 2  # one refused call each, not retried


def test_dry_run_shows_the_three_modes_side_by_side(cli: Any, tmp_path: Path) -> None:
    videos = _lectures(tmp_path / "videos", 2)
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "o"), "--simulate",
                 "--dry-run", "--json")  # fmt: skip
    modes = {m["mode"]: m for m in json.loads(result.stdout)["totals"]["modes"]}
    assert set(modes) == {"live", "flex", "batch"}
    assert modes["batch"]["cost_usd"] == pytest.approx(modes["live"]["cost_usd"] / 2, rel=1e-3)
    assert modes["batch"]["batch_requests"] == 2 and modes["batch"]["uploads"] == 2
    assert "24 h" in modes["batch"]["time"]


# -- SIGKILL at random moments, real processes ---------------------------------------------
def _child(tmp_path: Path, sim: Simulator, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
    env.update(
        GS_VIDEOREPORT_HOME=str(tmp_path / "home"),
        GS_VIDEOREPORT_BASE_URL=sim.url,
        GEMINI_API_KEY=TEST_KEY,
        GS_VIDEOREPORT_RUN__BATCH_POLL="0.2",
        PYTHONPATH=str(REPO),
    )
    return subprocess.Popen(
        [sys.executable, "-m", "gs_video_report", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _phase(tmp_path: Path) -> str:
    """Where the batch is, as another terminal would see it: upload, submit, wait, collect."""
    try:
        with sqlite3.connect(tmp_path / "home" / "state.db") as conn:
            jobs = conn.execute("SELECT state, collected_at FROM batch_jobs").fetchall()
            busy = conn.execute(
                "SELECT COUNT(*) FROM tasks WHERE stage IN ('pending', 'uploading', 'processing')"
            ).fetchone()[0]
    except sqlite3.Error:
        return "start"
    if any(state == "CREATING" for state, _ in jobs):
        return "submit"
    if any(state in ("PENDING", "RUNNING") for state, _ in jobs):
        return "wait"
    if any(done is None for _, done in jobs):
        return "collect"
    return "upload" if busy else "start"


def _batch_id(tmp_path: Path) -> str | None:
    db = tmp_path / "home" / "state.db"
    if not db.exists():
        return None
    try:
        with sqlite3.connect(db) as conn:
            row = conn.execute("SELECT id FROM batches").fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _run_with_kills(
    sim: Simulator, root: Path, videos: Path, rng: random.Random, kills: list[str]
) -> None:
    """Kill the batch once in each stage (upload, submit, wait, collect; a random moment
    of it, watched from outside as another terminal would), resuming after each kill;
    then let a last resume finish it."""
    args = ["batch", "-d", str(videos), "-o", str(root / "out"), "--mode", "batch"]
    for target in ("upload", "submit", "wait", "collect"):
        batch_id = _batch_id(root)
        proc = _child(root, sim, *(["resume", batch_id] if batch_id else args))
        deadline = time.monotonic() + 8
        while proc.poll() is None and time.monotonic() < deadline:
            if _phase(root) == target:
                time.sleep(rng.uniform(0, 0.15))
                break
            time.sleep(0.02)
        if proc.poll() is None:
            kills.append(_phase(root))
            proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)  # (closes its pipe)
    batch_id = _batch_id(root)  # None: every kill came before the plan was recorded (load)
    final = _child(root, sim, *(["resume", batch_id] if batch_id else args))
    _, err = final.communicate(timeout=120)
    assert final.returncode in (0, 2), err[-2000:]  # 2: nothing left to resume


# ~25 real processes: about a minute on a quiet 2-core machine, more under load
@pytest.mark.timeout(300)
def test_sigkill_at_random_moments_then_resume(sim: Simulator, tmp_path: Path) -> None:
    """Five batches of 3 videos, each killed once in every stage and resumed (20 kills
    and more), against one simulator: its counters see every run."""
    rng = random.Random(14)
    sim.set_limits(
        polls_until_active=0,  # uploads ACTIVE at once: the kills spread over every stage
        latency={"upload_chunk": 0.1, "batch_create": 0.2, "file_download": 0.3},
    )
    sim.batch_timing(pending_s=0.4, running_s=0.8)
    kills: list[str] = []
    for round_ in range(5):
        root = tmp_path / f"r{round_}"
        videos = root / "videos"
        for i in range(3):
            copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / f"r{round_}_lecture_{i}.mp4")
        _run_with_kills(sim, root, videos, rng, kills)
        assert len(_lessons(root / "out")) == 3  # 0 lost answers
    stats = sim.stats()
    print("killed during", kills)
    assert len(kills) >= 20, kills
    assert {"upload", "submit", "wait"} <= set(kills), kills
    names = [j["display_name"] for j in stats["batches"]]
    assert len(names) == len(set(names)), names  # 0 duplicate jobs
    assert len(stats["batch_answers_by_key"]) == 15
    assert set(stats["batch_answers_by_key"].values()) == {1}  # none answered twice
    # 0 uploads of a video that had an ACTIVE upload: at most one live (not deleted)
    # upload per video at any time, and every video's extra uploads were cut by a kill
    per_video: dict[str, int] = {}
    for f in sim.state.files.values():
        if f.mime_type.startswith("video/") and not f.deleted:
            per_video[f.display_name] = per_video.get(f.display_name, 0) + 1
    assert per_video == {}, per_video  # all deleted once their jobs ended
    completed = sum(1 for f in sim.state.files.values() if f.mime_type.startswith("video/"))
    assert completed == 15, completed  # each video uploaded (to the end) exactly once


def test_ctrl_c_while_jobs_run_says_resume_collects_them_and_resume_does(
    sim: Simulator, tmp_path: Path
) -> None:
    videos = _lectures(tmp_path / "videos", 2)
    sim.set_limits(polls_until_active=0)
    sim.batch_timing(pending_s=3600, running_s=20 * 3600)  # a day at Google
    args = ["batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--mode", "batch"]
    proc = _child(tmp_path, sim, *args)
    deadline = time.monotonic() + 60
    while _phase(tmp_path) != "wait" and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "keep running at Google; `resume` collects them" in err, err[-1500:]
    assert proc.returncode not in (0, 1), err[-1500:]  # stopped, resumable
    assert _lessons(tmp_path / "out") == {}
    sim.advance_batches(2 * 24 * 3600 - 60)  # collected the next day, before it expires
    batch_id = _batch_id(tmp_path)
    assert batch_id is not None
    resumed = _child(tmp_path, sim, "resume", batch_id)
    _, err = resumed.communicate(timeout=60)
    assert resumed.returncode == 0, err[-1500:]
    stats = sim.stats()
    assert stats["batches_created"] == 1 and stats["batch_lines_answered"] == 2
    assert len(_lessons(tmp_path / "out")) == 2
