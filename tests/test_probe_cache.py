"""The probe cache: a second plan of unchanged files reads what the first probed, and any
change to a file's key (content, size, times, inode) makes it probed again."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3
import time
from pathlib import Path

from gs_video_report.batch.api import Engine, PlanRequest
from gs_video_report.config import load_settings
from gs_video_report.storage.probecache import CACHE_NAME
from tests.conftest import SAMPLES

SENTINEL_S = 4321.0  # no sample is this long: seen only if it came from the cache


def _old(path: Path) -> Path:
    # files changed just before they are probed are not kept (racily clean, like git's)
    past = time.time() - 3600
    os.utime(path, (past, past))
    return path


def _plan(tmp_path: Path, folder: Path) -> dict[str, float | None]:
    settings = load_settings(env={}, cwd=tmp_path)
    engine = Engine(settings, keys=[], home=tmp_path / "home")
    planned = asyncio.run(engine.plan(PlanRequest(output=tmp_path / "out", input_dir=folder)))
    return {t.video.source.path.name: t.video.duration_s for t in planned.plan.tasks}  # type: ignore[union-attr]


def _poison(tmp_path: Path) -> int:
    """Every cached duration set to the sentinel; how many rows there were."""
    with sqlite3.connect(tmp_path / "home" / CACHE_NAME) as conn:
        return conn.execute("UPDATE probes SET duration_s = ?", (SENTINEL_S,)).rowcount


def test_a_second_plan_reads_the_cache_and_a_changed_file_is_probed_again(
    tmp_path: Path,
) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    a = _old(Path(shutil.copy(SAMPLES / "intro_to_fractions.mp4", folder / "a.mp4")))
    b = _old(Path(shutil.copy(SAMPLES / "photosynthesis_basics.mp4", folder / "b.mp4")))
    first = _plan(tmp_path, folder)
    assert SENTINEL_S not in first.values()
    assert _poison(tmp_path) == 2

    assert _plan(tmp_path, folder) == {"a.mp4": SENTINEL_S, "b.mp4": SENTINEL_S}

    os.utime(a, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns + 1))  # mtime only
    b.write_bytes(b.read_bytes())  # the same bytes, a new ctime
    _old(b)
    third = _plan(tmp_path, folder)
    assert third == first  # both probed again, the real durations back

    _poison(tmp_path)
    c = folder / "c.mp4"
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", c)
    os.utime(c, ns=(a.stat().st_atime_ns, a.stat().st_mtime_ns))
    a.unlink()
    c.rename(a)  # same path, size and mtime: another file (inode, ctime)
    assert _plan(tmp_path, folder)["a.mp4"] == first["a.mp4"]


def test_a_file_changed_just_before_planning_is_not_kept(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", folder / "fresh.mp4")
    _plan(tmp_path, folder)
    assert _poison(tmp_path) == 0


def test_a_broken_cache_file_is_a_miss_not_a_failed_plan(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    _old(Path(shutil.copy(SAMPLES / "intro_to_fractions.mp4", folder / "a.mp4")))
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / CACHE_NAME).write_bytes(b"not a database" * 100)
    assert _plan(tmp_path, folder)["a.mp4"]


def test_a_name_that_is_not_utf8_is_kept_by_its_bytes(tmp_path: Path) -> None:
    folder = tmp_path / "videos"
    folder.mkdir()
    odd = Path(os.fsdecode(bytes(folder) + b"/caf\xe9.mp4"))
    _old(Path(shutil.copy(SAMPLES / "intro_to_fractions.mp4", odd)))
    _plan(tmp_path, folder)
    assert _poison(tmp_path) == 1
    assert list(_plan(tmp_path, folder).values()) == [SENTINEL_S]
