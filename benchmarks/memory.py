"""Peak memory must not grow with video size: a batch that uploads one 1 GB video may use
at most 50 MB more RSS than one that uploads a 10 MB video.

Both videos are a bundled sample with an MP4 ``free`` box padding it to size (a sparse
region, so the benchmark writes almost nothing to disk); the upload still sends every
byte over loopback to the simulator, which hashes them. The batch runs as its own
process and its peak RSS comes from wait4.

    python benchmarks/memory.py
    python benchmarks/memory.py --large-mb 4096
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

LIMIT_MB = 50.0


def peak_rss(size_mb: int) -> dict[str, float | int]:
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp_text:
        tmp = Path(tmp_text)
        (video,) = make_videos(tmp / "in", 1, pad_bytes=size_mb * 1024 * 1024)
        size = video.stat().st_size
        with Simulator() as sim:
            sim.set_limits(polls_until_active=0)
            run = run_cli(
                tmp / "home",
                sim.url,
                *("batch", "-d", str(tmp / "in"), "-o", str(tmp / "out"), "-q", "-p", "1"),
                cwd=tmp,
            )
            received = sim.stats()["calls"].get("upload_chunk", 0)
        if run.code != 0:
            raise SystemExit(f"batch failed ({run.code}): {run.stderr.strip()[-500:]}")
    return {
        "size_mb": round(size / 2**20),
        "upload_chunks": received,
        "wall_s": round(run.wall_s, 2),
        "peak_rss_mb": round(run.max_rss_mb, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small-mb", type=int, default=10)
    parser.add_argument("--large-mb", type=int, default=1024)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    print(f"# {machine()}")
    small, large = peak_rss(args.small_mb), peak_rss(args.large_mb)
    growth = float(large["peak_rss_mb"]) - float(small["peak_rss_mb"])
    meets = growth < LIMIT_MB
    if args.json:
        print(json.dumps({"small": small, "large": large, "growth_mb": growth, "meets": meets}))
    else:
        for row in (small, large):
            print(
                f"{row['size_mb']} MB video: peak RSS {row['peak_rss_mb']} MB"
                f" ({row['upload_chunks']} upload chunks, {row['wall_s']} s)"
            )
        print(
            f"growth {growth:+.1f} MB for {args.large_mb - args.small_mb} MB more video;"
            f" {'meets' if meets else 'MISSES'} the < {LIMIT_MB:.0f} MB target"
        )
    return 0 if meets else 1


if __name__ == "__main__":
    sys.exit(main())
