"""Command line: build models, regenerate baselines, propose expectations from measurements.

  quantgate build-model [--model NAME]
  quantgate regen-baselines --model NAME [--device cpu|cuda]
  quantgate propose-expectations RESULTS.json [--ssim-margin ...]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from .errors import QuantgateError


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fixtures", default="fixtures", help="fixtures folder (default: ./fixtures)")
    parser.add_argument("--cache-dir", help="model cache (default: $QUANTGATE_CACHE_DIR or ~/.cache/quantgate)")


def _cache_root(args) -> Path:
    from .modelcache import default_cache_root

    return Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_root()


def _models(args):
    from .matrix import load_models

    models = load_models(Path(args.fixtures))
    wanted = getattr(args, "model", None)
    if wanted:
        if wanted not in models:
            raise QuantgateError(f"unknown model {wanted!r} (in {Path(args.fixtures) / 'models.toml'}: "
                                 f"{', '.join(models)})")
        return {wanted: models[wanted]}
    return models


def cmd_build_model(args) -> int:
    from .modelcache import model_dir

    for name, spec in _models(args).items():
        print(f"{name}: {model_dir(spec, _cache_root(args))}")
    return 0


def cmd_regen_baselines(args) -> int:
    """Run the reference configuration in its own process and write its images as the baselines."""
    from .baselines import BaselineStore
    from .matrix import Case, load_matrix, reference_config
    from .runner import Runner

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = _models(args)
    configs = load_matrix(Path(args.fixtures), models)
    reference = reference_config(configs)
    store = BaselineStore(Path(args.baselines))
    runner = Runner(_cache_root(args), args.isolation)
    try:
        for spec in models.values():
            case = Case(spec, reference, args.device)
            images = runner.images(case)
            record = runner.record(case)
            folder = store.write_set(spec, reference, record.hardware, images, record.environment)
            print(f"{spec.name}: {len(images)} baseline(s) from '{reference.id}' written to {folder}")
    finally:
        runner.close()
    return 0


def _floor(values: list[float], margin: float, digits: int) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    scale = 10 ** digits
    return math.floor((min(finite) - margin) * scale) / scale


def cmd_propose_expectations(args) -> int:
    """Print expectation tables for a result set: floors = measured minimum - margin; ceilings = + margin."""
    from .results import read_results

    data, records = read_results(Path(args.results))
    print(f"# proposed from {args.results} ({data['started']}, {data['environment'].get('cpu')}, "
          f"{data['environment'].get('gpu') or 'no GPU'})")
    print(f"# margins: SSIM -{args.ssim_margin}, PSNR -{args.psnr_margin} dB, bytes +{args.bytes_margin:.1%}")
    for r in records:
        if r.status != "ok":
            continue
        ssim = _floor([v["ssim"] for v in r.similarity.values()], args.ssim_margin, 4)
        psnr_values = [v["psnr"] for v in r.similarity.values()]
        psnr = None if all(v is None for v in psnr_values) else _floor(psnr_values, args.psnr_margin, 2)
        held = r.judged_bytes()
        print(f'\n["{r.hardware}"."{r.config}"]')
        if ssim is not None:
            print(f"ssim_min = {ssim}")
        if psnr is not None:
            print(f"psnr_min = {psnr}")
        if held:
            print(f"weight_bytes_max = {math.ceil(held * (1 + args.bytes_margin))}")
        ratio = r.weight_ratio()
        if ratio is not None:
            print(f"weight_ratio_max = {math.ceil(ratio * (1 + args.bytes_margin) * 1000) / 1000}")
        for phase in ("load", "inference"):
            peak = r.memory.get(f"{phase}_peak_reserved")
            if peak:
                print(f"peak_{phase}_bytes_max = {math.ceil(peak * (1 + args.peak_margin))}")
        basis = (f"measured SSIM {r.min_similarity('ssim'):.4f}" if r.similarity else "measured")
        basis += f", {held:,} bytes" if held else ""
        print(f'basis = "{basis}, {data["started"][:10]}"')
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantgate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build-model", help="build synthetic models into the cache")
    p.add_argument("--model", help="only this model")
    _common(p)
    p.set_defaults(func=cmd_build_model)
    p = sub.add_parser("regen-baselines", help="write BF16 baseline images (only from the reference)")
    p.add_argument("--model", required=True)
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--baselines", default="baselines", help="baseline folder (default: ./baselines)")
    p.add_argument("--isolation", default="process", choices=("process", "inline"))
    _common(p)
    p.set_defaults(func=cmd_regen_baselines)
    p = sub.add_parser("propose-expectations", help="expectation tables from a result set")
    p.add_argument("results", help="a results.json written by the gate")
    p.add_argument("--ssim-margin", type=float, default=0.002)
    p.add_argument("--psnr-margin", type=float, default=0.5)
    p.add_argument("--bytes-margin", type=float, default=0.01)
    p.add_argument("--peak-margin", type=float, default=0.05,
                   help="margin on GPU peak reserved bytes (allocator blocks are 2 MiB and up)")
    p.set_defaults(func=cmd_propose_expectations)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QuantgateError as exc:
        print(f"quantgate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
