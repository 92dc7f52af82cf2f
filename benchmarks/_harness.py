"""Shared pieces of the benchmarks: distinct sample videos, a CLI child process against
a simulator in this process, and what the state database says about the run.

The batch always runs as its own process (``python -m gs_video_report``), as a user runs
it, so its figures include start-up, planning and the final report; the simulator runs
here, on a loopback port, and counts what it received.
"""

from __future__ import annotations

import os
import platform
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "videos"
KEY = "benchmark-key-not-a-secret"


def make_videos(folder: Path, count: int, *, pad_bytes: int = 0, age_s: float = 0.0) -> list[Path]:
    """``count`` distinct MP4 files: a bundled sample plus an MP4 ``free`` box that makes
    each one's content (so its fingerprint) unique; ``pad_bytes`` makes the box that big,
    as a sparse region, to model a large file without writing it. ``age_s``: modified
    that long ago (a teacher's recordings are not seconds old; the probe cache keeps
    only files that were not changing while probed)."""
    folder.mkdir(parents=True, exist_ok=True)
    sources = sorted(SAMPLES.glob("*.mp4"))
    made = []
    for i in range(count):
        src = sources[i % len(sources)]
        target = folder / f"{src.stem}_{i:05d}.mp4"
        data = src.read_bytes()
        tag = f"benchmark video {i}".encode()
        size = 8 + len(tag) + pad_bytes
        with open(target, "wb") as out:
            out.write(data)
            out.write(struct.pack(">I4s", size, b"free") + tag)
            if pad_bytes:
                out.truncate(len(data) + size)
        if age_s:
            past = time.time() - age_s
            os.utime(target, (past, past))
        made.append(target)
    return made


def window_bound(videos: int, rpm: int, parallel: int, latency_s: float) -> float:
    """The earliest N generate calls of L seconds each can all be answered, with P slots
    and at most R calls starting in any 60 s (the server's sliding window).

    Call k (0-based) cannot start before call k - R started plus 60 s (the window), nor
    before call k - P started plus L (its slot is busy); following the last call back
    along those chains: 60 * floor((N - 1) / R) + L * (floor(((N - 1) mod R) / P) + 1).
    With N <= R it is the concurrency bound; with N >> R it tends to N / (R / 60)."""
    windows, rest = divmod(videos - 1, rpm)
    return 60.0 * windows + latency_s * (rest // parallel + 1)


@dataclass
class Run:
    code: int
    wall_s: float
    max_rss_mb: float
    stdout: str
    stderr: str
    cpu_s: float = 0.0  # user + system of the child itself


def run_cli(home: Path, base_url: str, *args: str, cwd: Path) -> Run:
    """``gs_videoreport ARGS`` as its own process, process start to exit."""
    return run_python(home, base_url, "-m", "gs_video_report", *args, cwd=cwd)


def run_python(home: Path, base_url: str, *args: str, cwd: Path) -> Run:
    """``python ARGS`` with the tool's environment (its home, the simulator, the key)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
    env.update(
        GS_VIDEOREPORT_HOME=str(home),
        GS_VIDEOREPORT_BASE_URL=base_url,
        GEMINI_API_KEY=KEY,
        PYTHONPATH=str(REPO),
    )
    home.mkdir(parents=True, exist_ok=True)
    out_path, err_path = home / "stdout.txt", home / "stderr.txt"
    started = time.perf_counter()
    with open(out_path, "w") as out, open(err_path, "w") as err:
        proc = subprocess.Popen(
            [sys.executable, *args],
            cwd=cwd,
            env=env,
            stdout=out,
            stderr=err,
            text=True,
        )
        # wait4 gives this child's own peak RSS (RUSAGE_CHILDREN would mix all children).
        _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_mb = usage.ru_maxrss / 1024  # KiB on Linux
    cpu = usage.ru_utime + usage.ru_stime
    return Run(proc.returncode, wall, rss_mb, out_path.read_text(), err_path.read_text(), cpu)


@dataclass
class Phases:
    tasks: int
    done: int
    failed: int
    run_s: float  # first task started -> last task finished
    fill_s: float  # first task started -> first generate call sent


def phases(home: Path) -> Phases:
    with sqlite3.connect(home / "state.db") as conn:
        row = conn.execute(
            "SELECT count(*), sum(stage = 'done'), sum(stage = 'failed'),"
            " min(started_at), max(finished_at) FROM tasks"
        ).fetchone()
        # an attempt is stored when its call answered: sent = at - latency
        first_sent = conn.execute(
            "SELECT min(at - latency_s) FROM attempts WHERE stage = 'generate'"
        ).fetchone()[0]
    total, done, failed, first, last = row
    first = first or 0.0
    fill = (first_sent - first) if first_sent is not None else 0.0
    return Phases(total, done or 0, failed or 0, (last or 0.0) - first, fill)


def rated_batch(
    videos: int, rpm: int, parallel: int, latency_s: float, *, processing_polls: int = 0
) -> tuple[Run, dict[str, Any], Phases]:
    """N fresh videos through ``batch`` told ``limits: {default: {rpm: R}}``, against a
    simulator enforcing the same R (a sliding window per key) and answering each generate
    call after L s; files ACTIVE after ``processing_polls`` PROCESSING answers. The
    batch's run, what the simulator counted, and the phases from the state database."""
    # imported here: the other benchmarks' figures need no simulator in this process
    from gs_video_report.simulator import Simulator

    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp_text:
        tmp = Path(tmp_text)
        inputs = tmp / "in"
        make_videos(inputs, videos)
        config = tmp / "config.yaml"
        config.write_text(f"limits:\n  default: {{rpm: {rpm}}}\n")
        with Simulator() as sim:
            sim.set_limits(
                rpm=rpm, latency={"generate": latency_s}, polls_until_active=processing_polls
            )
            result = run_cli(
                tmp / "home",
                sim.url,
                *("batch", "-d", str(inputs), "-o", str(tmp / "out"), "-c", str(config)),
                *("-p", str(parallel), "-q", "--json"),
                cwd=tmp,
            )
            stats = sim.stats()
        return result, stats, phases(tmp / "home")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (
        f"{datetime.now(UTC):%Y-%m-%d}, {platform.system()} {platform.machine()},"
        f" {os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"
    )
