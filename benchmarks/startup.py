"""How fast the commands that run nothing start: ``--help``, ``version``, ``--version``,
``list-templates``, ``list-models``, ``status`` and ``list-batches``.

Each command runs ``--runs`` times as its own process (``python -m gs_video_report``,
as a user types it) in a home with one recorded batch; the figure is the wall time,
best and median. Once more per command, a wrapper runs the same ``main()`` and lists
which of the heavy libraries (``HEAVY``) it loaded: google-genai and PyAV must not be
among them (they load only when a command calls Gemini or probes a video). For scale, the floor: an
empty interpreter, and typer with its Rich help (which every command needs).

Target: ``--help`` under 0.3 s.

    python benchmarks/startup.py              # 10 runs each
    python benchmarks/startup.py --runs 30
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import REPO, machine
from gs_video_report.storage import CheckpointManager, open_db
from gs_video_report.storage.db import DB_NAME

BATCH = "batch_20260101_000000_bench"
COMMANDS = (
    ("--help",),
    ("version",),
    ("--version",),
    ("list-templates",),
    ("list-models",),
    ("status", BATCH),
    ("list-batches",),
)
HEAVY = ("google.genai", "av", "jinja2", "jsonschema", "pydantic", "aiosqlite")
_PROBE = """
import sys
from gs_video_report.cli import main
sys.argv = ["gs_videoreport", *sys.argv[1:]]
try:
    main()
except SystemExit:
    pass
heavy = [h for h in {heavy!r} if h in sys.modules]
print("HEAVY " + " ".join(heavy), file=sys.stderr)
"""


async def _one_batch(home: Path) -> None:
    async with open_db(home / DB_NAME) as conn:
        await CheckpointManager(conn).create_batch(
            BATCH, source_desc="benchmark", output_dir="/out", settings={}, tasks=[], now=0.0
        )


def _wall(argv: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        argv, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return time.perf_counter() - started


def _loaded(args: tuple[str, ...], env: dict[str, str], cwd: Path) -> list[str]:
    probe = _PROBE.format(heavy=HEAVY)
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    line = next(x for x in done.stderr.splitlines() if x.startswith("HEAVY"))
    return line.split()[1:]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--json", action="store_true", help="one JSON object per command")
    args = parser.parse_args()
    print(f"# {machine()}")
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp:
        home = Path(tmp) / "home"
        home.mkdir()
        asyncio.run(_one_batch(home))
        env = {k: v for k, v in os.environ.items() if not k.startswith("GS_VIDEOREPORT_")}
        # run from the home, not the repository: ``-m``/``-c`` put the working directory
        # first on sys.path, so REPO (this checkout) is what is imported
        env.update(GS_VIDEOREPORT_HOME=str(home), PYTHONPATH=str(REPO))
        floors = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "import typer + its Rich help": [
                sys.executable,
                "-c",
                "import typer, typer.main, typer.rich_utils",
            ],
        }
        rows = [
            _row(name, [_wall(argv, env, home) for _ in range(args.runs)], None)
            for name, argv in floors.items()
        ]
        for command in COMMANDS:
            argv = [sys.executable, "-m", "gs_video_report", *command]
            walls = [_wall(argv, env, home) for _ in range(args.runs)]
            rows.append(_row(" ".join(command[:1]), walls, _loaded(command, env, home)))
    ok = True
    for row in rows:
        if row.loaded is not None:
            ok &= not {"google.genai", "av"} & set(row.loaded)
        if args.json:
            print(json.dumps(dataclasses.asdict(row)))
            continue
        loads = "" if row.loaded is None else f"; loads {', '.join(row.loaded) or 'none of them'}"
        print(f"{row.command}: best {row.best_s} s, median {row.median_s} s{loads}")
    fast = next(r for r in rows if r.command == "--help").median_s < 0.3
    if not args.json:
        print(f"--help {'meets' if fast else 'MISSES'} the 0.3 s target (median)")
    return 0 if ok and fast else 1


@dataclasses.dataclass(frozen=True)
class Row:
    command: str
    runs: int
    best_s: float
    median_s: float
    loaded: list[str] | None  # which of HEAVY it imported (None: not our command)


def _row(command: str, walls: list[float], loaded: list[str] | None) -> Row:
    return Row(
        command, len(walls), round(min(walls), 3), round(statistics.median(walls), 3), loaded
    )


if __name__ == "__main__":
    sys.exit(main())
