"""The naive alternative, timed: the legacy ``main`` command in a shell loop (one process
per video, one video at a time) against ``batch --parallel P`` over the same videos, both
against the simulator with a latency of L seconds per generate call.

    python benchmarks/legacy_loop.py              # 30 videos, L = 0.5 s, P = 4
    python benchmarks/legacy_loop.py -n 60 -l 1
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine, make_videos, run_cli
from gs_video_report.simulator import Simulator


def compare(videos: int, latency_s: float, parallel: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp_text:
        tmp = Path(tmp_text)
        paths = make_videos(tmp / "in", videos)
        with Simulator() as sim:
            sim.set_limits(latency={"generate": latency_s}, polls_until_active=0)
            # what `for f in in/*.mp4; do gs_videoreport main "$f" -o out; done` does
            loop_s = 0.0
            for path in paths:
                run = run_cli(tmp / "home-loop", sim.url, "main", str(path), "-o", "loop", cwd=tmp)
                if run.code != 0:
                    raise SystemExit(f"main failed ({run.code}): {run.stderr.strip()[-500:]}")
                loop_s += run.wall_s
            batch = run_cli(
                tmp / "home-batch",
                sim.url,
                *("batch", "-d", str(tmp / "in"), "-o", "batch", "-q", "-p", str(parallel)),
                cwd=tmp,
            )
            if batch.code != 0:
                raise SystemExit(f"batch failed ({batch.code}): {batch.stderr.strip()[-500:]}")
        lessons = len(list((tmp / "batch").rglob("*.md")))
    return {
        "videos": videos,
        "latency_s": latency_s,
        "parallel": parallel,
        "legacy_loop_s": round(loop_s, 2),
        "batch_s": round(batch.wall_s, 2),
        "speedup": round(loop_s / batch.wall_s, 2),
        "batch_lessons": lessons,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--videos", type=int, default=30)
    parser.add_argument("-l", "--latency", type=float, default=0.5)
    parser.add_argument("-p", "--parallel", type=int, default=4)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(f"# {machine()}")
    row = compare(args.videos, args.latency, args.parallel)
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"{row['videos']} videos, L={row['latency_s']}s: legacy `main` in a shell loop"
            f" {row['legacy_loop_s']}s ({row['legacy_loop_s'] / args.videos:.2f} s/video);"
            f" batch -p {row['parallel']} {row['batch_s']}s; batch is {row['speedup']}x faster"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
