"""What running each case in its own process costs: the fork server's first start, each later
case's start, and the round trip of one call (the part of every latency record that is not the
denoising call itself).

    python benchmarks/case_process_overhead.py [--calls 500]
"""

import argparse
import json
import statistics
import time
from pathlib import Path

from quantgate.case.isolation import open_case
from quantgate.hardware import environment
from quantgate.matrix import build_cases, load_matrix, load_models
from quantgate.sources.cache import default_cache_root, ensure_synthetic


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--cases", type=int, default=5)
    args = parser.parse_args()
    fixtures = Path(__file__).resolve().parents[1] / "fixtures"
    models = load_models(fixtures)
    case = build_cases(models, load_matrix(fixtures, models))[0]
    root = default_cache_root()
    folder = ensure_synthetic(case.model, root)
    starts = []
    for _ in range(args.cases):
        handle = open_case(case, folder, root, "process")
        handle.call("ping")
        starts.append(handle.start_s)
        handle.close()
    handle = open_case(case, folder, root, "process")
    handle.call("ping")
    trips = []
    for _ in range(args.calls):
        t = time.perf_counter()
        handle.call("ping")
        trips.append(time.perf_counter() - t)
    handle.close()
    trips.sort()
    out = {
        "fork_server_first_start_s": starts[0],
        "case_start_s_median": statistics.median(starts[1:]),
        "round_trip_us_median": statistics.median(trips) * 1e6,
        "round_trip_us_p95": trips[int(0.95 * len(trips))] * 1e6,
        "calls": args.calls,
        "environment": environment("cpu"),
        "date": time.strftime("%Y-%m-%d"),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
