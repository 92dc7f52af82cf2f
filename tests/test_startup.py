"""Commands that call no API and probe no video start without google-genai or PyAV
(each takes about a second to import): measured in a fresh interpreter, as a user runs
them. benchmarks/startup.py times them."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

from gs_video_report.cli import COMMANDS, load_command
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.db import DB_NAME
from tests.conftest import REPO, SAMPLES

# Runs each command line through the CLI's own main() in one interpreter, then says
# what each exited with and which of the heavy modules had been loaded by then.
_PROBE = """
import json, sys
from gs_video_report.cli import main
watched = tuple(json.loads(sys.argv[2]))
codes = []
for argv in json.loads(sys.argv[1]):
    sys.argv = ["gs_videoreport", *argv]
    try:
        main()
        codes.append(0)
    except SystemExit as exc:
        codes.append(exc.code or 0)
heavy = sorted(
    m for m in sys.modules if m in watched or m.startswith(tuple(w + "." for w in watched))
)
print(json.dumps({"codes": codes, "heavy": heavy}), file=sys.stderr)
"""


def _run(
    home: Path, *commands: list[str], watched: tuple[str, ...] = ("google.genai", "av")
) -> dict[str, list[object]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
    env.update(GS_VIDEOREPORT_HOME=str(home), PYTHONPATH=str(REPO))
    done = subprocess.run(
        [sys.executable, "-c", _PROBE, json.dumps(commands), json.dumps(watched)],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        cwd=home,
    )
    result: dict[str, list[object]] = json.loads(done.stderr.strip().splitlines()[-1])
    return result


def test_commands_that_call_nothing_load_neither_the_sdk_nor_pyav(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()

    async def one_batch() -> None:
        async with open_db(home / DB_NAME) as conn:
            await CheckpointManager(conn).create_batch(
                "b1", source_desc="test", output_dir="/out", settings={}, tasks=[], now=0.0
            )

    asyncio.run(one_batch())
    commands = [
        ["--help"],
        ["version"],
        ["--version"],
        ["list-templates"],
        ["list-models"],
        ["status", "b1"],
        ["list-batches"],
        ["batch", "--help"],
    ]
    result = _run(home, *commands)
    assert result["codes"] == [0] * len(commands), result
    assert result["heavy"] == []


def test_the_probe_sees_both_once_a_command_needs_them(tmp_path: Path) -> None:
    """The check above can fail: the same probe, after one video through the simulator
    (probed with PyAV, generated through google-genai), lists both."""
    home = tmp_path / "home"
    home.mkdir()
    video = str(SAMPLES / "intro_to_fractions.mp4")
    result = _run(home, ["main", video, "--simulate", "-o", str(tmp_path / "out")])
    assert result["codes"] == [0]
    assert {"av", "google.genai"} <= set(result["heavy"]), result


def test_help_imports_no_command_module(tmp_path: Path) -> None:
    """``--help`` lists the commands from the CLI's table: not one command's module, nor
    what they import (the settings' pydantic, Jinja, the database driver)."""
    watched = ("pydantic", "jinja2", "jsonschema", "aiosqlite", "gs_video_report.batch")
    watched += tuple(f"gs_video_report.cli.{c.module}" for c in COMMANDS.values())
    result = _run(tmp_path, ["--help"], watched=watched)
    assert result == {"codes": [0], "heavy": []}
    # the probe sees them once a command runs
    loaded = _run(tmp_path, ["list-batches"], watched=watched)["heavy"]
    assert "gs_video_report.cli.manage" in loaded


def test_the_help_lists_each_command_with_its_own_summary() -> None:
    """The table's summary of each command is the first paragraph of its docstring."""
    for name in COMMANDS:
        command = load_command(name)
        assert command.name == name
        assert COMMANDS[name].summary == (command.help or "").split("\n\n")[0], name
