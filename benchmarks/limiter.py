"""The requests-per-minute limiter against a server that enforces the same window.

The simulator allows R generate calls in any 60 s window per key (a sliding window; a
call beyond it is answered 429 per-minute with RetryInfo), answers each after L seconds,
and the batch runs N videos at --parallel P with ``limits: {default: {rpm: R}}``.

The window's own bound: call k (0-based) cannot start before call k - R started plus
60 s (the window) nor before call k - P started plus L (its slot is busy). Following
the last call back along those two chains gives the earliest possible end:

    bound = 60 * floor((N - 1) / R) + L * (floor(((N - 1) mod R) / P) + 1)   seconds

(for R = 120, N = 240, P = 4, L = 0.5: one window of 60 s, then the second burst of
120 calls at P / L = 8 a second, 15 s: 75 s). A limiter that spaces calls evenly at
60 / R s cannot beat (N - 1) * 60 / R + L = 120 s here.

Target: the run (first video started -> last video finished) within 1.05 x bound,
no call answered 429, no failed video.

    python benchmarks/limiter.py                  # R = 120, N = 240, P = 4, L = 0.5 s (~1.5 min)
    python benchmarks/limiter.py -n 30 -r 20 -p 2 -l 0.2
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine, rated_batch, window_bound
from gs_video_report.simulator import ENDPOINTS


@dataclass(frozen=True)
class Scenario:
    videos: int = 240
    rpm: int = 120
    parallel: int = 4
    latency_s: float = 0.5

    @property
    def bound_s(self) -> float:
        return window_bound(self.videos, self.rpm, self.parallel, self.latency_s)

    @property
    def even_spacing_s(self) -> float:
        return (self.videos - 1) * 60.0 / self.rpm + self.latency_s


def run(scenario: Scenario) -> dict[str, object]:
    # files are ACTIVE at once: the bound is about generate calls only
    result, stats, ph = rated_batch(
        scenario.videos, scenario.rpm, scenario.parallel, scenario.latency_s
    )
    starts = sorted(r["at"] for r in stats["generate_requests"])
    too_many = stats["statuses"].get("429", 0)
    return {
        "videos": scenario.videos,
        "rpm": scenario.rpm,
        "parallel": scenario.parallel,
        "latency_s": scenario.latency_s,
        "bound_s": round(scenario.bound_s, 2),
        "even_spacing_s": round(scenario.even_spacing_s, 2),
        "run_s": round(ph.run_s, 2),
        "run_ratio": round(ph.run_s / scenario.bound_s, 3),
        "end_to_end_s": round(result.wall_s, 2),
        "first_window_calls": sum(1 for t in starts if starts and t < starts[0] + 60),
        "done": ph.done,
        "failed": ph.failed,
        "exit_code": result.code,
        "api_calls": sum(stats["calls"].get(e, 0) for e in ENDPOINTS),
        "calls_429": too_many,
        "meets_target": ph.run_s <= 1.05 * scenario.bound_s
        and too_many == 0
        and ph.failed == 0
        and ph.done == scenario.videos,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--videos", type=int, default=240)
    parser.add_argument("-r", "--rpm", type=int, default=120)
    parser.add_argument("-p", "--parallel", type=int, default=4)
    parser.add_argument("-l", "--latency", type=float, default=0.5)
    parser.add_argument("--json", action="store_true", help="one JSON object")
    args = parser.parse_args()
    row = run(Scenario(args.videos, args.rpm, args.parallel, args.latency))
    print(f"# {machine()}")
    if args.json:
        print(json.dumps(row))
    else:
        print(
            f"limiter: N={row['videos']} R={row['rpm']}/min P={row['parallel']}"
            f" L={row['latency_s']}s: window bound {row['bound_s']}s (even spacing"
            f" {row['even_spacing_s']}s), run {row['run_s']}s = {row['run_ratio']}x, end to end"
            f" {row['end_to_end_s']}s; {row['first_window_calls']} calls in the first minute;"
            f" 429s {row['calls_429']}/{row['api_calls']}; done {row['done']}, failed"
            f" {row['failed']}; {'meets' if row['meets_target'] else 'MISSES'} the target"
        )
    return 0 if row["meets_target"] else 1


if __name__ == "__main__":
    sys.exit(main())
