"""Batch Mode bugs an adversarial tester found, each pinned: byte-identical copies paid
once, answers collected before a --cost-limit stop, a job gone at Google resubmitted (no
busy loop), polls spaced by run.batch_poll, cancel from another terminal and of an idle
batch cancelling the Google job, and the dry run's mode table. Real SDK against the
simulator; the simulator's batch clock is the tests' virtual one (no sleeping)."""

from __future__ import annotations

import json
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.batch.cost import usd
from gs_video_report.simulator import Simulator
from gs_video_report.simulator import batches as sim_batches
from tests.conftest import SAMPLES, TEST_KEY, copy_lecture
from tests.test_batch_mode import _batch_id, _child, _phase
from tests.virtual_time import SteppingClock


def _real_api(monkeypatch: pytest.MonkeyPatch, sim: Simulator, poll_s: float = 30) -> None:
    """Not --simulate: the default poll interval, the simulator as Gemini."""
    monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    monkeypatch.setenv("GS_VIDEOREPORT_RUN__BATCH_POLL", str(poll_s))


def _running_job(sim: Simulator, tmp_path: Path) -> subprocess.Popen[str]:
    """A real process whose one-video batch has a job RUNNING (for hours) at Google."""
    videos = tmp_path / "videos"
    copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / "a.mp4")
    sim.set_limits(polls_until_active=0)
    sim.batch_timing(pending_s=3600, running_s=3600)
    args = ["batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--mode", "batch"]
    proc = _child(tmp_path, sim, *args)
    deadline = time.monotonic() + 60
    while _phase(tmp_path) != "wait" and time.monotonic() < deadline:
        time.sleep(0.05)  # watching a real process, as another terminal would
    return proc


def _summary(out: Path) -> dict[str, Any]:
    (path,) = (out / "_reports").glob("*/summary.json")
    return json.loads(path.read_text())


def test_byte_identical_copies_in_batch_mode_are_paid_once(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = tmp_path / "dup"
    videos.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / "a.mp4")
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", videos / "b copy.mp4")
    copy_lecture(SAMPLES / "photosynthesis_basics.mp4", videos / "c.mp4")
    out = tmp_path / "out"
    result = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "--mode", "batch",
                 "-t", "summary_report")  # fmt: skip
    assert result.exit_code == 0, result.output
    stats = sim.stats()
    assert stats["batches_created"] == 1, stats["batches"]
    assert stats["batch_lines_answered"] == 2
    assert set(stats["batch_answers_by_key"].values()) == {1}
    assert len(list((out / "summary_report").glob("*.md"))) == 3
    rows = {Path(t["source"]).name: t for t in _summary(out)["videos"]}
    copy = rows["b copy.mp4"] if rows["b copy.mp4"]["same_content_as"] else rows["a.mp4"]
    assert copy["same_content_as"] and copy["cost_usd"] == 0.0
    assert stats["files_live"] == 0  # the shared upload deleted once, after both


def test_polls_are_spaced_by_batch_poll_while_a_job_runs(
    cli: Any, sim: Simulator, stepping: SteppingClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _real_api(monkeypatch, sim)
    sim.state.clock = stepping  # the job runs on the engine's virtual time
    sim.set_limits(polls_until_active=0)
    sim.batch_timing(pending_s=300, running_s=1500)  # 30 min at Google
    videos = tmp_path / "videos"
    copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / "a.mp4")
    result = cli("batch", "-d", str(videos), "-o", str(tmp_path / "out"), "--mode", "batch", "-q")
    assert result.exit_code == 0, result.output
    polls = sim.stats()["calls"].get("batch_get", 0)
    # 1800 s polled every 30 s backing off to 60 s: between 30 and 60 polls, not thousands
    assert 1800 / 60 <= polls <= 1800 / 30 + 2, polls


def test_a_cost_limit_stop_still_collects_the_jobs_already_submitted(
    cli: Any, sim: Simulator, stepping: SteppingClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    _real_api(monkeypatch, sim)
    sim.state.clock = stepping
    sim.set_limits(polls_until_active=0)
    sim.batch_timing(pending_s=30, running_s=60)
    videos = tmp_path / "videos"
    for name in ("a", "b", "c"):
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / f"{name}.mp4")
    out = tmp_path / "out"
    args = ["-o", str(out), "--mode", "batch", "-t", "summary_report", "--json", "-q"]
    first = cli("batch", "-d", str(videos), *args, "--cost-limit", "0.03")
    assert first.exit_code == 5, first.output  # the budget stopped it
    stats = sim.stats()
    answered = stats["batch_lines_answered"]
    assert answered >= 1 and stats["batches_created"] >= 1  # what fits was asked...
    assert len(list((out / "summary_report").glob("*.md"))) == answered  # ...and written
    summary = _summary(out)
    assert summary["total_cost_usd"] > 0  # and counted as spent
    assert all(j["state"] == "SUCCEEDED" for j in summary["batch_jobs"])
    batch_id = json.loads(first.stdout)["batch_id"]
    again = cli("resume", batch_id, "--cost-limit", "1")
    assert again.exit_code == 0, again.output
    assert sim.stats()["batch_lines_answered"] == 3
    assert set(sim.stats()["batch_answers_by_key"].values()) == {1}


@pytest.mark.parametrize("gone", ["job", "results"])
def test_a_job_gone_at_google_is_submitted_again_not_polled_forever(
    cli: Any, sim: Simulator, stepping: SteppingClock, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, gone: str,
) -> None:  # fmt: skip
    _real_api(monkeypatch, sim)
    sim.state.clock = stepping
    sim.set_limits(polls_until_active=0)
    sim.batch_timing(pending_s=30, running_s=60)
    original = sim_batches._advance
    removed: list[str] = []

    def vanish(state: Any, job: Any, answer: Any) -> None:
        original(state, job, answer)
        if removed:
            return
        if gone == "job" and job.state == "RUNNING":
            job.deleted = True  # `curl -X DELETE …/batches/ID` from elsewhere
            removed.append(job.id)
        elif gone == "results" and job.results:
            state.files[job.results.removeprefix("files/")].deleted = True
            removed.append(job.id)

    monkeypatch.setattr(sim_batches, "_advance", vanish)
    videos = tmp_path / "videos"
    copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / "a.mp4")
    out = tmp_path / "out"
    result = cli("batch", "-d", str(videos), "-o", str(out), "--mode", "batch", "-q")
    assert result.exit_code == 0, result.output
    assert removed and len(list(out.rglob("a.md"))) == 1
    stats = sim.stats()
    assert stats["batches_created"] == 2  # the lost one's request in a new job
    assert stats["calls"].get("batch_get", 0) < 20  # no busy loop
    gone_lines = [r for r in caplog.records if "gone" in r.getMessage()]
    assert len(gone_lines) == 1, [r.getMessage() for r in gone_lines]
    assert "list-models" not in caplog.text


def test_cancel_from_another_terminal_cancels_the_running_job_at_google(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = _running_job(sim, tmp_path)
    batch_id = _batch_id(tmp_path)
    assert batch_id is not None
    monkeypatch.setenv("GS_VIDEOREPORT_HOME", str(tmp_path / "home"))
    asked = cli("cancel", batch_id)
    assert asked.exit_code == 0, asked.output
    _, err = proc.communicate(timeout=60)
    assert "Traceback" not in err, err[-2000:]
    assert proc.returncode not in (0, 1), err[-1500:]
    assert [j["state"] for j in sim.stats()["batches"]] == ["CANCELLED"]
    with sqlite3.connect(tmp_path / "home" / "state.db") as conn:
        (status,) = conn.execute("SELECT status FROM batches").fetchone()
    assert status == "cancelled"


@pytest.mark.parametrize("with_key", [True, False])
def test_cancel_of_an_idle_batch_cancels_its_jobs_at_google_or_says_they_run_on(
    cli: Any, sim: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, with_key: bool
) -> None:
    proc = _running_job(sim, tmp_path)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the job keeps running at Google
    proc.communicate(timeout=60)
    batch_id = _batch_id(tmp_path)
    assert batch_id is not None
    monkeypatch.setenv("GS_VIDEOREPORT_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("GS_VIDEOREPORT_BASE_URL", sim.url)
    if with_key:
        monkeypatch.setenv("GEMINI_API_KEY", TEST_KEY)
    done = cli("cancel", batch_id)
    assert done.exit_code == 0, done.output
    assert "Traceback" not in done.output and TEST_KEY not in done.output
    (job,) = sim.stats()["batches"]
    if with_key:
        assert job["state"] == "CANCELLED"
        assert sim.stats()["calls"].get("batch_cancel") == 1
    else:
        assert job["state"] != "CANCELLED"
        assert "1 job(s) keep running at Google" in done.output


def test_the_dry_run_counts_one_upload_a_video_and_prices_the_chosen_mode(
    cli: Any, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    for i in range(3):
        copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / f"lecture_{i}.mp4")
    templates = ["-t", "summary_report", "-t", "comprehensive_lesson", "-t", "chinese_transcript"]
    args = ["batch", "-d", str(videos), "-o", str(tmp_path / "o"), "--dry-run", *templates]
    live = json.loads(cli(*args, "--json").stdout)
    assert {m["uploads"] for m in live["totals"]["modes"]} == {3}  # not one per template
    assert live["sharing"]["uploads"] == 3 and live["sharing"]["cached_videos"] == 3
    batch_doc = json.loads(cli(*args, "--mode", "batch", "--json").stdout)
    modes = {m["mode"]: m for m in batch_doc["totals"]["modes"]}
    assert batch_doc["totals"]["estimated_cost_usd"] == modes["batch"]["cost_usd"]
    assert batch_doc["totals"]["estimated_cost_usd"] < live["totals"]["estimated_cost_usd"]
    assert batch_doc["sharing"]["cached_videos"] == 0  # batch prices never cache
    text = cli(*args, "--mode", "batch").output
    assert f"estimated cost {usd(modes['batch']['cost_usd'])} at --mode batch prices" in text
    assert "no context caching in --mode batch" in text and "saves" not in text


def test_resume_from_with_another_mode_says_the_batch_keeps_its_own(
    cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    videos = tmp_path / "videos"
    copy_lecture(SAMPLES / "intro_to_fractions.mp4", videos / "a.mp4")
    out = tmp_path / "out"
    first = cli("batch", "-d", str(videos), "-o", str(out), "--simulate", "--mode", "batch",
                "--json", "-q")  # fmt: skip
    batch_id = json.loads(first.stdout)["batch_id"]
    again = cli("batch", "--resume-from", batch_id, "--simulate", "--mode", "live")
    assert "--mode live ignored" in again.output and "keeps its --mode batch" in again.output
