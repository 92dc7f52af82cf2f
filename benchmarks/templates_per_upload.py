"""Several templates over one upload: what 1, 2 and 3 templates per video cost, and what
they ask of the API, on a simulated batch (100 videos by default).

Each row is one ``batch -t ... [-t ...]`` run as its own process against the simulator
(fresh state and output each time). Figures come from the simulator's counters (uploads
completed, generate calls, caches made and deleted) and from the batch's own report
(``summary.json``: cost at the price table's rates, cached tokens, caching's saving).
"cost / lesson-hour" is the batch's cost over the hours of video its lessons cover (a
45-minute lecture with 3 templates is 2.25 lesson-hours); "no cache" is what the same
calls would have cost with no context cache (the cost plus the reported saving).

The bundled samples are 45 s and 30 s long; only the 45 s ones reach the 4,096-token
cache minimum of the default model, so about half of the videos are cached.

    python benchmarks/templates_per_upload.py            # 100 videos, 1..3 templates
    python benchmarks/templates_per_upload.py -n 10 --json
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

TEMPLATES = ("summary_report", "comprehensive_lesson", "chinese_transcript")


def one_run(root: Path, videos: Path, count: int, templates: int) -> dict[str, Any]:
    home, out = root / f"home_{templates}", root / f"out_{templates}"
    with Simulator() as sim:
        args = ["batch", "-d", str(videos), "-o", str(out), "-q", "-p", "8", "--max-uploads", "4"]
        for name in TEMPLATES[:templates]:
            args += ["-t", name]
        run = run_cli(home, sim.url, *args, cwd=root)
        stats = sim.stats()
    (report,) = (out / "_reports").glob("*/summary.json")
    summary = json.loads(report.read_text())
    done = [v for v in summary["videos"] if v["status"] == "done"]
    lesson_hours = sum(v["duration_s"] or 0.0 for v in done) / 3600
    cost = summary["total_cost_usd"] or 0.0
    saving = summary["cache_saving_usd"] or 0.0
    return {
        "templates": templates,
        "videos": count,
        "lessons": len(done),
        "exit_code": run.code,
        "uploads": stats["uploads_completed"],
        "generate_calls": stats["calls"].get("generate", 0),
        "uploads_per_video": stats["uploads_completed"] / count,
        "calls_per_video": stats["calls"].get("generate", 0) / count,
        "caches_created": stats["caches_created"],
        "caches_left": stats["caches_live"],
        "files_left": stats["files_live"],
        "cached_tokens": summary["cached_tokens"],
        "cost_usd": round(cost, 6),
        "saving_usd": round(saving, 6),
        "cost_per_lesson_hour": round(cost / lesson_hours, 4) if lesson_hours else None,
        "no_cache_per_lesson_hour": (
            round((cost + saving) / lesson_hours, 4) if lesson_hours else None
        ),
        "wall_s": round(run.wall_s, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--videos", type=int, default=100)
    parser.add_argument("--max-templates", type=int, default=3, choices=(1, 2, 3))
    parser.add_argument("--json", action="store_true", help="one JSON line a row")
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        videos = root / "videos"
        make_videos(videos, options.videos)
        rows = [
            one_run(root, videos, options.videos, n) for n in range(1, options.max_templates + 1)
        ]
    if options.json:
        for row in rows:
            print(json.dumps(row))
        return 0
    print(f"templates per upload, {options.videos} simulated videos; {machine()}")
    print(
        "| templates | lessons | uploads/video | calls/video | caches | cached tokens "
        "| cost | cost / lesson-hour | no cache / lesson-hour | wall |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['templates']} | {r['lessons']} | {r['uploads_per_video']:.2f} "
            f"| {r['calls_per_video']:.2f} | {r['caches_created']} | {r['cached_tokens']:,} "
            f"| ${r['cost_usd']:.4f} | ${r['cost_per_lesson_hour']:.4f} "
            f"| ${r['no_cache_per_lesson_hour']:.4f} | {r['wall_s']} s |"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
