from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gs_video_report.cli.common import Runtime
from gs_video_report.simulator import Simulator
from tests.virtual_time import SteppingClock

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "examples" / "videos"
TEST_KEY = "AIzaTEST-0123456789-abcdefghijklmnop"


@pytest.fixture(autouse=True)
def isolated_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No test sees the developer's keys, config or state."""
    for name in (
        "GEMINI_API_KEY",
        "GOOGLE_API_KEY",
        "GOOGLE_GEMINI_BASE_URL",
        "GOOGLE_GENAI_API_VERSION",
    ):
        monkeypatch.delenv(name, raising=False)
    for name in list(os.environ):
        if name.startswith("GS_VIDEOREPORT_"):
            monkeypatch.delenv(name, raising=False)
    home = tmp_path / "home"
    monkeypatch.setenv("GS_VIDEOREPORT_HOME", str(home))
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    yield home
    # A CLI test's log handlers point at CliRunner's streams, closed once it returns.
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_gs_videoreport", False)]:
        root.removeHandler(handler)
        handler.close()


class FakeSleep:
    """Records the sleeps the code asked for and returns at once (for a service alone)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def stepping() -> SteppingClock:
    return SteppingClock()


@pytest.fixture
def sim() -> Iterator[Simulator]:
    with Simulator() as simulator:
        yield simulator


@pytest.fixture
def runtime(sim: Simulator, stepping: SteppingClock) -> Runtime:
    return Runtime(clock=stepping.clock, simulator=sim)


@pytest.fixture
def cli(runtime: Runtime):  # type: ignore[no-untyped-def]
    from gs_video_report.cli import app

    runner = CliRunner()

    def invoke(*args: str):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), obj=runtime)

    return invoke


@pytest.fixture
def sample(tmp_path: Path) -> Path:
    """A private copy of a bundled sample, so tests can move or damage it."""
    target = tmp_path / "videos" / "intro_to_fractions.mp4"
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "intro_to_fractions.mp4", target)
    return target


def copy_lecture(source: Path, target: Path) -> Path:
    """A copy of a sample that is a different lecture: the same video with a trailer of
    its own (the engine generates byte-identical copies once)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(source, target)
    with open(target, "ab") as handle:
        handle.write(b"\0lecture:" + os.fsencode(target))
    return target


def make_lectures(root: Path) -> Path:
    """Two ``intro.mp4`` in different folders and one other video: a small course."""
    for rel in ("week1/intro.mp4", "week2/intro.mp4", "week2/photosynthesis_basics.mp4"):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        src = "photosynthesis_basics.mp4" if "photo" in rel else "intro_to_fractions.mp4"
        copy_lecture(SAMPLES / src, root / rel)
    return root
