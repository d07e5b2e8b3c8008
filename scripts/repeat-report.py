"""Compare repeated runs of one matrix: are the measured figures identical, and how far do step
times move? Writes Markdown to stdout.

    python scripts/repeat-report.py FIRST.json SECOND.json [--alone ALONE.json ...] [--matrix FULL.json ...]

FIRST and SECOND are two full passes (merged with `quantgate merge-results` if they ran in parts);
each ALONE result set ran one configuration by itself and is compared with that configuration in
the full passes given with --matrix (default: FIRST and SECOND).
"""

import argparse
import statistics
from pathlib import Path

from quantgate.results.merge import MEASURED as FIGURES  # what must be identical wherever a case ran
from quantgate.results.record import read_results


def _by_case(path):
    data, records = read_results(Path(path))
    return data, {r.case: r for r in records}


def _ms(r):
    return statistics.median(r.denoise_s) / r.steps * 1e3 if r.denoise_s and r.steps else None


def _range(r):
    return (max(r.denoise_s) - min(r.denoise_s)) / statistics.median(r.denoise_s)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("first")
    parser.add_argument("second")
    parser.add_argument("--alone", nargs="*", default=[])
    parser.add_argument("--matrix", nargs="*")
    args = parser.parse_args()
    d1, first = _by_case(args.first)
    d2, second = _by_case(args.second)
    env = d1["environment"]
    print(f"# Repeated runs: {Path(args.first).name} ({d1['started']}) vs {Path(args.second).name} ({d2['started']})\n")
    print(f"GPU {env.get('gpu')}, driver {env.get('driver')}, CUDA {env.get('cuda')}; "
          + ", ".join(f"{k} {v}" for k, v in sorted(env.get("packages", {}).items())) + "\n")
    print("Identical: status, real weight bytes per component (and the reference's), CUDA allocator figures (peaks "
          "and after-phase, load and inference) and SSIM/PSNR of every image, compared exactly. Step ms: median of "
          "the case's timed denoising calls / steps. Within-run range: (slowest - fastest) / median of one run's timed calls.\n")
    print("| case | identical figures | step ms, first | step ms, second | change | within-run range, first / second |")
    print("|---|---|---|---|---|---|")
    changes, same = [], 0
    for case, a in first.items():
        b = second.get(case)
        if b is None or a.status != "ok":
            continue
        diff = [f for f in FIGURES if getattr(a, f) != getattr(b, f)]
        same += not diff
        ms_a, ms_b = _ms(a), _ms(b)
        change = ""
        if ms_a and ms_b:
            changes.append(abs(ms_b - ms_a) / ms_a)
            change = f"{(ms_b - ms_a) / ms_a:+.0%}"
        print(f"| {case} | {'yes' if not diff else 'NO: ' + ', '.join(diff)} | {ms_a:.2f} | {ms_b:.2f} | {change} | "
              f"{_range(a):.0%} / {_range(b):.0%} |")
    compared = sum(1 for c, a in first.items() if c in second and a.status == "ok")
    print(f"\n{same} of {compared} cases identical in every measured figure. Step time change between the runs: "
          f"median {statistics.median(changes):.0%}, largest {max(changes):.0%}.\n")
    if args.alone:
        full = [_by_case(p)[1] for p in (args.matrix or [args.first, args.second])]
        print("## One configuration alone vs inside the full matrix\n")
        print("| case | alone run | identical to the full passes |")
        print("|---|---|---|")
        for path in args.alone:
            _, alone = _by_case(path)
            for case, r in alone.items():
                if not r.similarity:         # the reference, loaded only for its bytes
                    continue
                verdicts = [[f for f in FIGURES if getattr(r, f) != getattr(m[case], f)] for m in full if case in m]
                ok = all(not v for v in verdicts)
                print(f"| {case} | {Path(path).name} | {'yes' if ok else 'NO'} ({len(verdicts)} pass(es)) |")


if __name__ == "__main__":
    main()
