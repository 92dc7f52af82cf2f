"""What a big folder costs when there is nothing to do ("fast at rest", issue 13).

N videos (default 5,000; modified an hour ago, as recordings are), each step its own
process, timed from start to exit:

1. ``batch --dry-run`` twice: the first probes every file (PyAV) and fingerprints it;
   the second finds them in the probe cache (target < 3 s);
2. the batch itself, against an instant simulator (not timed as a target);
3. the same ``batch`` again: everything already done, nothing to call (target < 2 s);
4. ``status`` of that batch (target < 1 s).

    python benchmarks/at_rest.py            # N = 5,000 (the batch takes a few minutes)
    python benchmarks/at_rest.py -n 500
"""

from __future__ import annotations

import argparse
import json
import sqlite3
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine, make_videos, run_cli
from gs_video_report.simulator import Simulator

TARGETS = {"dry_run_second_s": 3.0, "rerun_done_s": 2.0, "status_s": 1.0}


def measure(videos: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp_text:
        tmp = Path(tmp_text)
        inputs, out, home = tmp / "in", tmp / "out", tmp / "home"
        make_videos(inputs, videos, age_s=3600)
        batch = ("batch", "-d", str(inputs), "-o", str(out), "-p", "8", "-q")
        with Simulator() as sim:
            sim.set_limits(polls_until_active=0)
            dry = [run_cli(home, sim.url, *batch, "--dry-run", cwd=tmp) for _ in range(2)]
            full = run_cli(home, sim.url, *batch, cwd=tmp)
            again = run_cli(home, sim.url, *batch, cwd=tmp)
            generated = sim.stats()["calls"].get("generate", 0)
        with sqlite3.connect(home / "state.db") as conn:
            first_id = conn.execute("SELECT id FROM batches ORDER BY created_at").fetchone()[0]
        status = run_cli(home, "http://127.0.0.1:9", "status", first_id, cwd=tmp)
    for name, run in (("dry-run", dry[0]), ("batch", full), ("rerun", again), ("status", status)):
        if run.code != 0:
            raise SystemExit(f"{name} exited {run.code}: {run.stderr[-2000:]}")
    row: dict[str, object] = {
        "videos": videos,
        "dry_run_first_s": round(dry[0].wall_s, 2),
        "dry_run_second_s": round(dry[1].wall_s, 2),
        "batch_s": round(full.wall_s, 2),
        "rerun_done_s": round(again.wall_s, 2),
        "status_s": round(status.wall_s, 2),
        "generate_calls": generated,  # the rerun calls nothing: N
    }
    row["meets_targets"] = generated == videos and all(
        float(row[k]) < limit  # type: ignore[arg-type]
        for k, limit in TARGETS.items()
    )
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--videos", type=int, default=5000)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    row = measure(args.videos)
    print(f"# {machine()}")
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"N={row['videos']}: --dry-run {row['dry_run_first_s']} s, again"
            f" {row['dry_run_second_s']} s (target < 3); batch {row['batch_s']} s; rerun of"
            f" the finished batch {row['rerun_done_s']} s (< 2); status {row['status_s']} s"
            f" (< 1); {row['generate_calls']} generate calls;"
            f" {'meets' if row['meets_targets'] else 'MISSES'} the targets"
        )
    return 0 if row["meets_targets"] else 1


if __name__ == "__main__":
    sys.exit(main())
