"""``gs_videoreport batch`` against the hand-written pipeline (``reference_pipeline.py``),
paired and repeated, end to end: each is its own process, timed from start to exit.

The issue's scenario: the simulator answers every generate call after L = 0.5 s and
keeps every upload PROCESSING for 0.2 s; 100 videos; P = 4, 8 and 16 generate calls at a
time, 2 uploads at a time for both. Each repetition runs the script, then the batch,
against one fresh simulator each, and the ratio is batch / script of the minimum and of
the median over the repetitions. Target: ratio <= 1.05.

``--cpu`` runs the same pair at zero latency and zero processing and reports CPU seconds
per video of each process (target: batch <= 1.2 x the script).

    python benchmarks/pipeline.py                      # P = 4, 8, 16; 3 repetitions
    python benchmarks/pipeline.py -p 8 -r 5 -n 100
    python benchmarks/pipeline.py --cpu -n 200
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks._harness import Run, machine, make_videos, phases, run_cli, run_python
from gs_video_report.simulator import Simulator

SCRIPT = Path(__file__).resolve().parent / "reference_pipeline.py"


def _pair(
    tmp: Path, inputs: Path, parallel: int, latency_s: float, processing_s: float, rep: int
) -> tuple[Run, Run]:
    runs = []
    for which in ("script", "batch"):
        home, out = tmp / f"home-{which}-{rep}", tmp / f"out-{which}-{rep}"
        with Simulator() as sim:
            sim.set_limits(latency={"generate": latency_s}, processing_s=processing_s)
            if which == "script":
                run = run_python(
                    home,
                    sim.url,
                    *(str(SCRIPT), "--base-url", sim.url, "-d", str(inputs), "-o", str(out)),
                    *("-p", str(parallel), "--uploads", "2"),
                    cwd=tmp,
                )
            else:
                run = run_cli(
                    home,
                    sim.url,
                    *("batch", "-d", str(inputs), "-o", str(out), "-p", str(parallel)),
                    *("--max-uploads", "2", "-q", "--json"),
                    cwd=tmp,
                )
        # the batch also writes an index page: count its done tasks instead
        written = len(list(out.glob("*.json"))) if which == "script" else phases(home).done
        if run.code != 0 or written != len(list(inputs.iterdir())):
            raise SystemExit(f"{which} failed (exit {run.code}, {written} written): {run.stderr}")
        runs.append(run)
    return runs[0], runs[1]


def measure(
    videos: int, parallel: int, repeats: int, latency_s: float, processing_s: float
) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="gs-bench-") as tmp_text:
        tmp = Path(tmp_text)
        inputs = tmp / "in"
        make_videos(inputs, videos)
        pairs = [_pair(tmp, inputs, parallel, latency_s, processing_s, r) for r in range(repeats)]
    script = [p[0] for p in pairs]
    batch = [p[1] for p in pairs]

    def summary(runs: list[Run], field: str) -> tuple[float, float]:
        values = [getattr(r, field) for r in runs]
        return min(values), statistics.median(values)

    s_min, s_med = summary(script, "wall_s")
    b_min, b_med = summary(batch, "wall_s")
    sc_min, sc_med = summary(script, "cpu_s")
    bc_min, bc_med = summary(batch, "cpu_s")
    return {
        "videos": videos,
        "parallel": parallel,
        "latency_s": latency_s,
        "processing_s": processing_s,
        "repeats": repeats,
        "script_wall_s": [round(r.wall_s, 2) for r in script],
        "batch_wall_s": [round(r.wall_s, 2) for r in batch],
        "ratio_min": round(b_min / s_min, 3),
        "ratio_median": round(b_med / s_med, 3),
        "script_cpu_ms_per_video": round(1000 * sc_med / videos, 2),
        "batch_cpu_ms_per_video": round(1000 * bc_med / videos, 2),
        "cpu_ratio_min": round(bc_min / sc_min, 3),
        "cpu_ratio_median": round(bc_med / sc_med, 3),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--videos", type=int, default=100)
    parser.add_argument("-p", "--parallel", type=int, action="append")
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("-l", "--latency", type=float, default=0.5)
    parser.add_argument("--processing", type=float, default=0.2)
    parser.add_argument("--cpu", action="store_true", help="zero latency, CPU per video")
    parser.add_argument("--json", action="store_true", help="one JSON object per P")
    args = parser.parse_args()
    latency, processing = (0.0, 0.0) if args.cpu else (args.latency, args.processing)
    print(f"# {machine()}")
    ok = True
    for parallel in args.parallel or [4, 8, 16]:
        row = measure(args.videos, parallel, args.repeats, latency, processing)
        key = "cpu_ratio_median" if args.cpu else "ratio_median"
        target = 1.2 if args.cpu else 1.05
        ok &= float(row[key]) <= target  # type: ignore[arg-type]
        if args.json:
            print(json.dumps(row))
            continue
        print(
            f"N={row['videos']} P={parallel} L={latency}s processing={processing}s:"
            f" script {row['script_wall_s']} s, batch {row['batch_wall_s']} s;"
            f" ratio min {row['ratio_min']}, median {row['ratio_median']};"
            f" CPU per video script {row['script_cpu_ms_per_video']} ms,"
            f" batch {row['batch_cpu_ms_per_video']} ms"
            f" (ratio median {row['cpu_ratio_median']});"
            f" {'meets' if float(row[key]) <= target else 'MISSES'} {target}x"  # type: ignore[arg-type]
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
