"""A video that changes between planning and its upload fails alone, with one line that
says what happened, and nothing is sent for it: deleted, replaced, cut short, made
unreadable or turned into a folder. The other videos become lessons, the batch ends
``partial`` (exit 1), and every later resume or retry ends the same way, without a crash.

The first run is stopped before anything is uploaded by a cost limit below one video's
estimate (a resumable stop, as Ctrl-C is); the file is changed; ``resume`` with a higher
limit runs the batch.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gs_video_report.batch import events as ev
from gs_video_report.batch.api import Engine, PlanRequest, RunOptions
from gs_video_report.config import ApiKey, ApiSettings, PoolKey, load_settings
from gs_video_report.errors import ExitCode, InputError
from gs_video_report.models import BatchStatus, TaskStage
from gs_video_report.services.gemini import GeminiService
from gs_video_report.simulator import Simulator
from tests.conftest import SAMPLES, TEST_KEY
from tests.virtual_time import SteppingClock

CHANGED = "b_changes"  # the video that changes; a_first and c_last stay as planned


def _course(root: Path) -> Path:
    root.mkdir(parents=True)
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", root / "a_first.mp4")
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", root / f"{CHANGED}.mp4")
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", root / "c_last.mp4")
    return root


def _same_size_and_mtime(path: Path) -> None:
    """Other bytes where the fingerprint samples them, size and mtime kept (``cp -p`` of
    another video of the very same length would look like this)."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[-100:] = bytes(100)
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def _folder(path: Path) -> None:
    path.unlink()
    path.mkdir()


CHANGES: dict[str, tuple[Callable[[Path], None], str]] = {
    "deleted": (Path.unlink, "the video was deleted after planning: {path}"),
    "folder": (_folder, "the video is now a folder: {path}"),
    "truncated": (
        lambda p: os.truncate(p, p.stat().st_size // 2),
        "the video changed since it was planned (size/mtime); plan again: {path}",
    ),
    "replaced by another video": (
        lambda p: shutil.copy(SAMPLES / "color_theory_week1.webm", p),
        "the video changed since it was planned (size/mtime); plan again: {path}",
    ),
    "touched": (
        lambda p: os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10**9)),
        "the video changed since it was planned (mtime); plan again: {path}",
    ),
    "same size and mtime": (
        _same_size_and_mtime,
        "the video changed since it was planned (content); plan again: {path}",
    ),
    "a fifo": (
        lambda p: (p.unlink(), os.mkfifo(p)),
        "the video is no longer a regular file: {path}",
    ),
    "unreadable": (lambda p: p.chmod(0), "cannot read the file (Permission denied)"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_video_changed_after_planning_fails_alone_and_is_not_uploaded(
    change: str, cli: Any, sim: Simulator, tmp_path: Path
) -> None:
    if change == "unreadable" and os.geteuid() == 0:
        pytest.skip("root reads anything")
    mutate, expected = CHANGES[change]
    folder, out = _course(tmp_path / "course"), tmp_path / "out"
    first = cli(
        "batch", "-d", str(folder), "-o", str(out), "--simulate", "-q", "--json",
        "--cost-limit", "0.000001",
    )  # fmt: skip
    assert first.exit_code == ExitCode.QUOTA, first.output
    batch_id = json.loads(first.stdout)["batch_id"]
    assert sim.api_calls() == 0  # planned and recorded, nothing sent
    video = folder / f"{CHANGED}.mp4"
    mutate(video)
    reason = expected.format(path=video)

    resumed = cli("resume", batch_id, "-q", "--json", "--cost-limit", "100")

    assert resumed.exit_code == ExitCode.PARTIAL, resumed.output
    assert json.loads(resumed.stdout)["counts"] == {"done": 2, "failed": 1}
    assert "Traceback" not in resumed.output and "internal error" not in resumed.output
    assert sim.stats()["uploads_started"] == 2  # not even the start of an upload for it
    assert set(sim.stats()["generate_by_subject"]) == {"a_first.mp4", "c_last.mp4"}
    lessons = sorted(p.name for p in out.rglob("*.md") if "_reports" not in p.parts)
    assert lessons == ["a_first.md", "c_last.md"]
    status = json.loads(cli("status", batch_id, "--json").stdout)
    assert status["status"] == BatchStatus.PARTIAL.value
    (failed,) = [t for t in status["tasks"] if t["stage"] == TaskStage.FAILED.value]
    assert failed["video"] == CHANGED and reason in failed["last_error"]
    assert "\n" not in failed["last_error"]

    calls = sim.api_calls()
    again = cli("resume", batch_id, "-q", "--json")
    assert again.exit_code == ExitCode.PARTIAL, again.output
    retried = cli("retry-failed", batch_id, "-q", "--json", "--cost-limit", "100")
    assert retried.exit_code == ExitCode.PARTIAL, retried.output
    assert json.loads(retried.stdout)["counts"] == {"done": 2, "failed": 1}
    assert sim.api_calls() == calls  # the same clean failure, still nothing sent
    status = json.loads(cli("status", batch_id, "--json").stdout)
    assert reason in next(t["last_error"] for t in status["tasks"] if t["video"] == CHANGED)


class _ChangeMidUpload:
    """Changes the video once the SDK has read its first chunk (the first progress
    report), before it reads the next."""

    def __init__(self, path: Path, change: Callable[[Path], None]) -> None:
        self.path = path
        self.change = change
        self.done = False

    def emit(self, event: ev.Event) -> None:
        if (
            not self.done
            and isinstance(event, ev.TaskActivity)
            and event.activity is ev.Activity.UPLOADING
            and event.task.display_name == CHANGED
            and (event.fraction or 0.0) > 0.0
        ):
            self.done = True
            self.change(self.path)


def _padded(source: Path, target: Path, size: int) -> None:
    """A valid video of ``size`` bytes: ``source`` and an MP4 ``free`` box of zeros, so
    the SDK reads it in more than one chunk."""
    data = source.read_bytes()
    pad = size - len(data) - 8
    target.write_bytes(data + (pad + 8).to_bytes(4, "big") + b"free" + bytes(pad))


MID_UPLOAD: dict[str, tuple[Callable[[Path], None], str | None]] = {
    # the SDK's next read finds the end of the file before the size it announced; without
    # the check it sends empty chunks until the upload's deadline
    "cut short": (
        lambda p: os.truncate(p, 1000),
        "the video changed during its upload (it got shorter); plan again: {path}",
    ),
    # the open handle still reads the planned bytes (POSIX): the lesson is of that video
    "deleted": (Path.unlink, None),
}


@pytest.mark.timeout(60)
@pytest.mark.parametrize("change", list(MID_UPLOAD))
def test_a_video_changed_during_its_upload_never_stalls_the_batch(
    change: str, sim: Simulator, tmp_path: Path
) -> None:
    folder = tmp_path / "course"
    folder.mkdir()
    video = folder / f"{CHANGED}.mp4"
    _padded(SAMPLES / "intro_to_fractions.mp4", video, 12 * 1024 * 1024)  # two 8 MiB chunks
    shutil.copy(SAMPLES / "photosynthesis_basics.mp4", folder / "a_first.mp4")
    settings = load_settings(env={"GS_VIDEOREPORT_BASE_URL": sim.url}, cwd=tmp_path)
    engine = Engine(
        settings,
        keys=[PoolKey.of(ApiKey(TEST_KEY, "test"))],
        home=tmp_path / "home",
        clock=SteppingClock().clock,
    )
    mutate, expected = MID_UPLOAD[change]
    reporter = _ChangeMidUpload(video, mutate)

    async def main() -> None:
        planned = await engine.plan(PlanRequest(output=tmp_path / "out", input_dir=folder))
        assert len(planned.plan.to_run) == 2, planned.plan.problems
        options = RunOptions(parallel=2, simulated=True)
        outcome = await asyncio.wait_for(engine.start(planned, options, reporter=reporter), 45)
        view = await engine.status(outcome.batch_id)
        if expected is None:
            assert outcome.counts == {TaskStage.DONE: 2}, outcome
            return
        assert outcome.counts == {TaskStage.DONE: 1, TaskStage.FAILED: 1}, outcome
        assert view.status is BatchStatus.PARTIAL
        (failed,) = [t for t in view.tasks if t.stage is TaskStage.FAILED]
        assert failed.video == CHANGED and failed.last_error_kind == "InputError"
        assert failed.last_error == expected.format(path=video)

    asyncio.run(main())
    assert reporter.done
    finished = {"a_first.mp4"} if expected else {"a_first.mp4", f"{CHANGED}.mp4"}
    assert sim.stats()["uploads_completed"] == len(finished)
    assert set(sim.stats()["generate_by_subject"]) == finished


def test_a_video_gone_when_its_upload_opens_it_is_an_input_error(
    sim: Simulator, tmp_path: Path
) -> None:
    """Between the last check and the SDK's open, the video may still go."""

    async def main() -> None:
        async with GeminiService(ApiKey(TEST_KEY, "test"), ApiSettings(base_url=sim.url)) as api:
            with pytest.raises(InputError, match=r"^cannot open the video: .*gone\.mp4"):
                await api.upload(tmp_path / "gone.mp4", "video/mp4", display_name="gone.mp4")

    asyncio.run(main())
    assert sim.api_calls() == 0
