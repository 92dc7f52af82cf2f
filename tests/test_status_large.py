"""``status`` and ``--dry-run`` of a big batch: past ``PLAIN_ROWS`` rows the table is plain text
(Rich's layout took 10 s for 5,000), with the same columns and names made printable."""

from __future__ import annotations

import asyncio
from pathlib import Path

from gs_video_report.cli.text import PLAIN_ROWS
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.db import DB_NAME
from tests.conftest import SAMPLES
from tests.test_storage import new_task


def _batch(home: Path, count: int) -> None:
    async def body() -> None:
        async with open_db(home / DB_NAME) as conn:
            tasks = [new_task(i) for i in range(count)]
            tasks[7] = new_task(7, name="evil\x1b[2J")
            await CheckpointManager(conn).create_batch(
                "big", source_desc="t", output_dir="/out", settings={}, tasks=tasks, now=1.0
            )

    home.mkdir(parents=True, exist_ok=True)
    asyncio.run(body())


def test_status_of_a_big_batch_is_one_plain_line_per_video(cli, isolated_env: Path) -> None:  # type: ignore[no-untyped-def]
    count = PLAIN_ROWS + 1
    _batch(isolated_env, count)
    result = cli("status", "big")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "big — created"
    assert lines[2].split() == [
        "Video",
        "Stage",
        "Retries",
        "Tokens",
        "Cost",
        "Last",
        "error",
        "/",
        "output",
    ]
    body = lines[3:]
    assert len(body) == count
    assert body[0].split() == ["v0", "pending", "0", "-", "-", "/out/v0.md"]
    assert "\x1b" not in result.stdout and "evil\\x1b[2J7" in body[7]
    # the columns line up: every stage starts where the header's does
    at = lines[2].index("Stage")
    assert all(line[at:].startswith("pending") for line in body)


def test_status_of_a_small_batch_is_still_a_table(cli, isolated_env: Path) -> None:  # type: ignore[no-untyped-def]
    _batch(isolated_env, 10)
    result = cli("status", "big")
    assert result.exit_code == 0 and "│" in result.stdout, result.output


def test_the_dry_run_of_a_big_folder_is_one_plain_line_per_video(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    folder = tmp_path / "videos"
    folder.mkdir()
    data = (SAMPLES / "intro_to_fractions.mp4").read_bytes()
    for i in range(PLAIN_ROWS + 1):
        (folder / f"v{i:03d}.mp4").write_bytes(data)  # copies: duplicates of one another
    result = cli("batch", "-d", str(folder), "-o", str(tmp_path / "out"), "--dry-run")
    lines = result.stdout.splitlines()
    assert lines[0] == f"Would run {PLAIN_ROWS + 1} video(s)", result.output
    assert lines[2].split()[:3] == ["Video", "Template", "Duration"]
    rows = [x for x in lines if x.startswith("v")]
    assert len(rows) == PLAIN_ROWS + 1 and not any("│" in row for row in rows)
    assert lines[-1].startswith("No rate limits")  # (the three-row mode table may be Rich's)
