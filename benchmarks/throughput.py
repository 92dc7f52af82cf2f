"""Batch throughput against the rate-limit and concurrency bound.

With a simulator answering generate calls after L seconds and allowing R requests in
any 60 s per key (a sliding window), N videos at --parallel P cannot finish faster than

    bound = 60 * floor((N - 1) / R) + L * (floor(((N - 1) mod R) / P) + 1)   seconds

(``_harness.window_bound``: each minute's R calls may go at once, P at a time; for
N <= R that is N / (P / L) rounded up to whole rounds, for N >> R about N / (R / 60)).

Target: the batch's run phase (first video started -> last video finished) within
1.05 x bound, at most 2 % of calls answered 429, no failed video. The tool is configured
with the same R (``limits: {default: {rpm: R}}``); its window is 1.5 % longer than a
minute.

The bound ignores upload and processing, so the first two scenarios use a simulator
whose files are ACTIVE as soon as they are uploaded. The third keeps the simulator's
processing (one PROCESSING answer: the tool polls again after 1 s and 2 s, ~3 s a video):
no generate call can start before the first video is processed (the fill time, measured),
and after that uploads must run far enough ahead to keep every generate slot busy; its
target is 1.05 x bound + fill.

    python benchmarks/throughput.py                 # both standard scenarios
    python benchmarks/throughput.py -n 100 -r 120 -p 4 -l 1.0
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import machine, rated_batch, window_bound
from gs_video_report.simulator import ENDPOINTS


@dataclass(frozen=True)
class Scenario:
    name: str
    videos: int
    rpm: int
    parallel: int
    latency_s: float
    processing_polls: int = 0  # PROCESSING answers before ACTIVE

    @property
    def bound_s(self) -> float:
        return window_bound(self.videos, self.rpm, self.parallel, self.latency_s)

    @property
    def limited_by(self) -> str:
        # more calls than one window holds: the windows set the pace
        return "rpm" if self.videos > self.rpm else "parallel/latency"


STANDARD = (
    Scenario("rate-bound", videos=600, rpm=300, parallel=8, latency_s=0.5),
    Scenario("concurrency-bound", videos=300, rpm=6000, parallel=4, latency_s=0.5),
    Scenario("with-processing", 300, rpm=6000, parallel=4, latency_s=0.5, processing_polls=1),
)


def run(scenario: Scenario) -> dict[str, object]:
    result, stats, ph = rated_batch(
        scenario.videos,
        scenario.rpm,
        scenario.parallel,
        scenario.latency_s,
        processing_polls=scenario.processing_polls,
    )
    calls = sum(stats["calls"].get(e, 0) for e in ENDPOINTS)
    too_many = stats["statuses"].get("429", 0)
    allowed_s = 1.05 * scenario.bound_s + (ph.fill_s if scenario.processing_polls else 0.0)
    return {
        "scenario": scenario.name,
        "videos": scenario.videos,
        "rpm": scenario.rpm,
        "parallel": scenario.parallel,
        "latency_s": scenario.latency_s,
        "limited_by": scenario.limited_by,
        "bound_s": round(scenario.bound_s, 2),
        "run_s": round(ph.run_s, 2),
        "run_ratio": round(ph.run_s / scenario.bound_s, 3),
        "fill_s": round(ph.fill_s, 2),
        "end_to_end_s": round(result.wall_s, 2),
        "end_to_end_ratio": round(result.wall_s / scenario.bound_s, 3),
        "done": ph.done,
        "failed": ph.failed,
        "exit_code": result.code,
        "api_calls": calls,
        "calls_429": too_many,
        "share_429": round(too_many / calls, 4) if calls else 0.0,
        "peak_rss_mb": round(result.max_rss_mb, 1),
        "meets_target": ph.run_s <= allowed_s
        and too_many <= 0.02 * calls
        and ph.failed == 0
        and ph.done == scenario.videos,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--videos", type=int)
    parser.add_argument("-r", "--rpm", type=int, default=600)
    parser.add_argument("-p", "--parallel", type=int, default=4)
    parser.add_argument("-l", "--latency", type=float, default=0.5)
    parser.add_argument("--processing-polls", type=int, default=0)
    parser.add_argument("--json", action="store_true", help="one JSON object per scenario")
    args = parser.parse_args()
    scenarios = (
        [
            Scenario(
                "custom", args.videos, args.rpm, args.parallel, args.latency, args.processing_polls
            )
        ]
        if args.videos
        else list(STANDARD)
    )
    print(f"# {machine()}")
    ok = True
    for scenario in scenarios:
        row = run(scenario)
        ok &= bool(row["meets_target"])
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"{row['scenario']}: N={row['videos']} R={row['rpm']}/min P={row['parallel']}"
            f" L={row['latency_s']}s (bound by {row['limited_by']}): bound {row['bound_s']}s,"
            f" run {row['run_s']}s = {row['run_ratio']}x (fill {row['fill_s']}s),"
            f" end to end {row['end_to_end_s']}s"
            f" = {row['end_to_end_ratio']}x; 429s {row['calls_429']}/{row['api_calls']}"
            f" ({100 * cast(float, row['share_429']):.2f} %); done {row['done']}, failed"
            f" {row['failed']}; peak RSS {row['peak_rss_mb']} MB;"
            f" {'meets' if row['meets_target'] else 'MISSES'} the target"
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
