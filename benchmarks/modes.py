"""Live, Flex and Batch Mode on the same simulated batch: cost per lesson-hour (USD per
hour of video turned into lessons, at the shipped prices), and API calls and uploads
per video, from the simulator's counters and the batch's own report.

Each mode runs the same videos as its own process (``python -m gs_video_report batch
--mode M``), in a home of its own, against one simulator in this process (Batch Mode
jobs end at once there; run.batch_poll is 0.2 s).

    python benchmarks/modes.py              # 100 videos
    python benchmarks/modes.py -n 20 --json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine, make_videos, run_cli
from gs_video_report.simulator import Simulator

MODES = ("live", "flex", "batch")


def run_mode(sim: Simulator, root: Path, videos: Path, mode: str) -> dict[str, Any]:
    sim.state.reset_stats()
    home, out = root / f"home-{mode}", root / f"out-{mode}"
    run = run_cli(
        home,
        sim.url,
        "batch", "-d", str(videos), "-o", str(out), "--mode", mode, "-q", "--json",
        "-c", str(root / "config.yaml"),
        cwd=root,
    )  # fmt: skip
    (summary_path,) = (out / "_reports").glob("*/summary.json")
    summary = json.loads(summary_path.read_text())
    stats = sim.stats()
    calls = sum(v for k, v in stats["calls"].items())
    count = len(list(videos.glob("*.mp4")))
    hours = sum(v.get("duration_s") or 0 for v in summary["videos"]) / 3600
    cost = summary["total_cost_usd"] or 0.0
    video_uploads = stats["uploads_completed"] - (
        stats["batches_created"] if mode == "batch" else 0
    )
    return {
        "mode": mode,
        "videos": count,
        "done": sum(1 for v in summary["videos"] if v.get("status") == "done"),
        "exit_code": run.code,
        "wall_s": round(run.wall_s, 2),
        "cost_usd": round(cost, 6),
        "usd_per_lesson_hour": round(cost / hours, 4) if hours else None,
        "api_calls_per_video": round(calls / count, 2),
        "generate_calls": stats["calls"].get("generate", 0),
        "batch_jobs": stats["batches_created"],
        "batch_requests": stats["batch_lines_answered"],
        "uploads_per_video": round(video_uploads / count, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--videos", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="one JSON line per mode")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gs-bench-modes-") as folder, Simulator() as sim:
        root = Path(folder)
        videos = root / "in"
        make_videos(videos, args.videos)
        (root / "config.yaml").write_text("run:\n  batch_poll: 0.2\n")
        rows = [run_mode(sim, root, videos, mode) for mode in MODES]
    if args.json:
        for row in rows:
            print(json.dumps(row))
        return
    print(f"{args.videos} videos, {machine()}")
    print(f"{'mode':6} {'USD/lesson-h':>12} {'calls/video':>12} {'uploads/video':>14} "
          f"{'jobs':>5} {'wall s':>7}")  # fmt: skip
    for r in rows:
        print(
            f"{r['mode']:6} {r['usd_per_lesson_hour']:>12} {r['api_calls_per_video']:>12} "
            f"{r['uploads_per_video']:>14} {r['batch_jobs']:>5} {r['wall_s']:>7}"
        )


if __name__ == "__main__":
    main()
