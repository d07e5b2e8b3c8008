"""What a process per case costs the CPU tier: the gate run whole with --qg-isolation process and
with --qg-isolation inline, alternately, each with pytest-benchmark on, timed from outside.

    python benchmarks/isolation_overhead.py OUT.json [--runs 2] [-- extra pytest args]

Writes each run's wall time, outcome counts and how many latency records pytest-benchmark saved
(process isolation must keep them), and the overhead of isolation over inline.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def run_gate(mode: str, workdir: Path, index: int, extra: list[str]) -> dict:
    bench = workdir / f"bench-{mode}-{index}.json"
    cmd = [sys.executable, "-m", "pytest", "tests/gate", "-m", "not gpu", "-q", "-p", "no:cacheprovider",
           "--qg-isolation", mode, "--qg-results-dir", str(workdir / f"results-{mode}-{index}"),
           f"--benchmark-json={bench}", *extra]
    started = time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - started
    summary = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    records = len(json.loads(bench.read_text())["benchmarks"]) if bench.exists() else 0
    return {"mode": mode, "wall_s": round(wall, 1), "exit": done.returncode, "summary": summary,
            "benchmark_records": records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--runs", type=int, default=2, help="runs of each mode, alternating (default 2)")
    parser.add_argument("extra", nargs="*", help="more pytest arguments (after --)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from quantgate.hardware import environment

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.runs):
            for mode in ("process", "inline"):
                runs.append(run_gate(mode, Path(tmp), i, args.extra))
                print(json.dumps(runs[-1]), flush=True)
    median = {m: statistics.median(r["wall_s"] for r in runs if r["mode"] == m) for m in ("process", "inline")}
    payload = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "environment": environment("cpu"),
               "command": "pytest tests/gate -m 'not gpu' --qg-isolation MODE --benchmark-json=...",
               "runs": runs, "median_wall_s": median,
               "isolation_overhead": round(median["process"] / median["inline"] - 1, 3)}
    Path(args.out).write_text(json.dumps(payload, indent=2) + "\n")
    print(f"process {median['process']} s, inline {median['inline']} s: isolation costs "
          f"{payload['isolation_overhead']:+.1%}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
