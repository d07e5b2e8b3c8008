"""Where a matrix run's wall time goes, from its result set: per case, the process start, loading
(from_pretrained, quantization, placement), the images, the timed denoising calls, and the
harness's own share (the rest of the case's wall time: baseline checks, SSIM, result writing,
process teardown); and for the session, the time outside any case (collection, model builds
before the first case, pytest).

    python benchmarks/matrix_wall_time.py RESULTS.json [RESULTS.json ...] > split.md

Several result sets (parts of one pass) are summed. Loading and quantizing happen inside one
from_pretrained call in diffusers, so 'quantize' is estimated as a configuration's load time minus
the reference's load time in the same result set.
"""

import argparse
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from quantgate.results.record import read_results  # noqa: E402


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    print("| case | wall s | start s | load s | of which quantize s (est.) | images s | denoise s | harness s |")
    print("|---|---|---|---|---|---|---|---|")
    totals = dict(session=0.0, wall=0.0, start=0.0, load=0.0, quantize=0.0, images=0.0, denoise=0.0, harness=0.0)
    for path in args.results:
        data, records = read_results(Path(path))
        totals["session"] += _seconds(data["started"], data["finished"])
        reference = next((r.load_s for r in records if not r.components and r.load_s), None)
        for r in records:
            if r.wall_s is None:
                continue
            start, load = r.start_s or 0.0, r.load_s or 0.0
            images, denoise = sum(r.image_seconds), sum(r.denoise_s)
            quantize = max(0.0, load - reference) if r.components and reference is not None else 0.0
            harness = r.wall_s - start - load - images - denoise
            for key, value in (("wall", r.wall_s), ("start", start), ("load", load), ("quantize", quantize),
                               ("images", images), ("denoise", denoise), ("harness", harness)):
                totals[key] += value
            print(f"| {r.case} | {r.wall_s:.1f} | {start:.1f} | {load:.1f} | {quantize:.1f} | {images:.1f} | "
                  f"{denoise:.1f} | {harness:.1f} |")
    outside = totals["session"] - totals["wall"]
    print(f"\nSession wall time {totals['session']:.0f} s: cases {totals['wall']:.0f} s (process start "
          f"{totals['start']:.0f}, loading {totals['load']:.0f} of which quantizing about {totals['quantize']:.0f}, "
          f"images {totals['images']:.0f}, timed denoising {totals['denoise']:.0f}, harness {totals['harness']:.0f}); "
          f"outside the cases {outside:.0f} s (collection, model builds, pytest).")


if __name__ == "__main__":
    main()
