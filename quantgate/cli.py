"""Command line: build models, regenerate baselines, propose expectations from measurements,
merge result sets.

  quantgate build-model [--model NAME]
  quantgate regen-baselines --model NAME [--device cpu|cuda]
  quantgate propose-expectations RESULTS.json [RESULTS.json ...] [--ssim-margin ...]
  quantgate merge-results OUT_DIR RESULTS.json [RESULTS.json ...]
  quantgate compare BASE CANDIDATE [--thresholds fixtures/compare.toml] [--markdown OUT.md]
  quantgate report RESULTS [--base BASE] [--previous PREVIOUS] [--out report.html]
  quantgate candidate-lock NAME==VERSION [...] [--base constraints/current.txt] [--out constraints/candidate.txt]
  quantgate reference-table RESULTS.json [--reference fixtures/reference/blog-flux-dev-h100.toml]
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.status import Status


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fixtures", default="fixtures", help="fixtures folder (default: ./fixtures)")
    parser.add_argument("--cache-dir", help="model cache (default: $QUANTGATE_CACHE_DIR or ~/.cache/quantgate)")


def _cache_root(args) -> Path:
    from quantgate.sources.cache import default_cache_root

    return Path(args.cache_dir).expanduser().resolve() if args.cache_dir else default_cache_root()


def _models(args):
    from quantgate.matrix import load_models
    from quantgate.sources.checkpoints import select_models

    wanted = getattr(args, "model", None)
    return select_models(load_models(Path(args.fixtures)), [wanted] if wanted else [],
                         getattr(args, "model_settings", None), Path(args.fixtures) / "models.toml")


def cmd_build_model(args) -> int:
    from quantgate.sources.cache import model_dir

    for name, spec in _models(args).items():
        print(f"{name}: {model_dir(spec, _cache_root(args))}")
    return 0


def cmd_regen_baselines(args) -> int:
    """Run the reference configuration in its own process and write its images as the baselines."""
    from quantgate.case.runner import Runner
    from quantgate.matrix import Case, load_matrix, reference_config
    from quantgate.results.baselines import BaselineStore
    from quantgate.sources.checkpoints import identity

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    models = _models(args)
    configs = load_matrix(Path(args.fixtures), models)
    reference = reference_config(configs)
    store = BaselineStore(Path(args.baselines))
    from tqdm.auto import tqdm

    runner = Runner(_cache_root(args), args.isolation)
    try:
        for spec in models.values():
            case = Case(spec, reference, args.device)
            with tqdm(total=3, desc=f"baselines of {spec.name}", unit="step") as bar:
                bar.set_postfix_str("building or finding the model")
                folder = runner.model_dir(case)
                bar.update()
                bar.set_postfix_str(f"loading '{reference.id}' and making {len(spec.images())} image(s)")
                images = runner.images(case)
                variants = {}
                if spec.takes_path("lora"):
                    bar.set_postfix_str("the same with the lora path's synthetic LoRA")
                    variants["lora"] = runner.take_path(case, "lora")["images"]["lora"]
                bar.update()
                record = runner.record(case)
                bar.set_postfix_str("writing the set")
                written = store.write_set(spec, reference, record.hardware, images, record.environment,
                                          identity(spec, folder), variants)
                bar.update()
            lora = f" and {len(variants['lora'])} with the LoRA" if variants else " (the model takes no lora path)"
            print(f"{spec.name}: {len(images)} baseline(s){lora} from '{reference.id}' written to {written}")
    finally:
        runner.close()
    return 0


def _floor(values: list[float], margin: float, digits: int) -> float | None:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    if not finite:
        return None
    scale = 10 ** digits
    return math.floor((min(finite) - margin) * scale) / scale


def _spread(values: list) -> float:
    finite = [v for v in values if v is not None and math.isfinite(v)]
    return max(finite) - min(finite) if finite else 0.0


def cmd_propose_expectations(args) -> int:
    """Print expectation tables for one or more result sets (repeated runs of one matrix, on one or
    more machines): floors = lowest measured value - margin; ceilings = highest measured value +
    margin. A hardware class's table holds what every machine of it shares (bytes, GPU memory, image
    floors over all its machines); on a CPU, a CPU class's table holds its latency ceilings, and image
    floors where that class alone measured them higher by more than the margin. Each table's basis
    states how many runs it rests on and the spread between them."""
    from quantgate.matrix import expectation_classes
    from quantgate.results.record import latency_ratio, read_results, references_by_case

    runs: dict[tuple[str, str], list] = {}
    ratios_of: dict[tuple[str, str], list] = {}
    dates = []
    for path in args.results:
        data, records = read_results(Path(path))
        refs = references_by_case(records)
        dates.append(data["started"][:10])
        env = data["environment"]
        print(f"# from {path} ({data['started']}, {env.get('cpu')}"
              + (f", {env['cpu_class']}" if env.get("cpu_class") and not env.get("gpu") else "")
              + f", {env.get('gpu') or 'no GPU'})")
        for r in records:
            if r.status != Status.OK:
                continue
            runs.setdefault((r.hardware, r.config), []).append(r)
            ratio = latency_ratio(r, refs.get(r.case))
            if ratio is not None:
                ratios_of.setdefault((expectation_classes(r.hardware, r.environment)[-1], r.config), []).append(ratio)
    print(f"# margins: SSIM -{args.ssim_margin}, PSNR -{args.psnr_margin} dB, bytes +{args.bytes_margin:.1%}, "
          f"GPU peak reserved +{args.peak_margin:.0%}"
          + (f", step time x BF16 +{args.latency_margin:.0%}" if args.latency_margin is not None else
             "; step time ratios not gated (no --latency-margin)"))
    latency = args.latency_margin is not None
    by_class: dict[tuple[str, str], tuple[list[str], list[str]]] = {}   # CPU class tables: (lines, basis)
    for (hardware, config), recs in runs.items():
        lines, basis = _floors(recs, args)
        held = [r.judged_bytes() for r in recs]
        if all(held):
            lines.append(f"weight_bytes_max = {math.ceil(max(held) * (1 + args.bytes_margin))}")
            basis.append(f"{max(held):,} bytes (spread {_spread(held):,.0f})")
        ratios = [r.weight_ratio() for r in recs]
        if all(x is not None for x in ratios):
            lines.append(f"weight_ratio_max = {math.ceil(max(ratios) * (1 + args.bytes_margin) * 1000) / 1000}")
        for phase in ("load", "inference"):
            values = [r.memory[f"{phase}_peak_reserved"] for r in recs if r.memory.get(f"{phase}_peak_reserved")]
            if values:                # a run that did not measure a phase (reference loaded only) is left out
                lines.append(f"peak_{phase}_bytes_max = {math.ceil(max(values) * (1 + args.peak_margin))}")
                basis.append(f"peak {phase} reserved {max(values):,} (spread {_spread(values):,.0f})")
        ratios = ratios_of.pop((hardware, config), [])       # a CPU's ratios go to its CPU class's table
        if ratios and latency:
            lines.append(f"latency_ratio_max = {_ceiling(ratios, args.latency_margin)}")
            basis.append(f"step {min(ratios):.2f}-{max(ratios):.2f}x BF16")
        _print_table(hardware, config, lines, [f"{len(recs)} run(s)"] + basis, dates)
        classes: dict[str, list] = {}
        for r in recs:
            if r.device == "cpu" and r.environment.get("cpu_class"):
                classes.setdefault(r.environment["cpu_class"], []).append(r)
        if len(classes) > 1:       # floors that one class alone holds higher than the hardware class's
            general = _floor_values(recs, args)
            for cpu_class, own in classes.items():
                mine = _floor_values(own, args)
                sharper = [k for k in mine if mine[k] is not None and general[k] is not None
                           and mine[k] - general[k] >= (args.ssim_margin if k.startswith("ssim") else args.psnr_margin)]
                if sharper:
                    own_lines, own_basis = _floors(own, args)
                    by_class[(cpu_class, config)] = ([ln for ln in own_lines if ln.split(" = ")[0] in sharper],
                                                     [f"{len(own)} run(s)"] + own_basis)
    if latency:
        for key, ratios in ratios_of.items():
            lines, basis = by_class.setdefault(key, ([], [f"{len(ratios)} run(s)"]))
            lines.insert(0, f"latency_ratio_max = {_ceiling(ratios, args.latency_margin)}")
            basis.append(f"step {min(ratios):.2f}-{max(ratios):.2f}x BF16")
    for (cpu_class, config), (lines, basis) in by_class.items():
        _print_table(cpu_class, config, lines, basis, dates)
    return 0


def _floor_values(recs: list, args) -> dict[str, float | None]:
    """SSIM and PSNR floors; for videos also the worst frame's (ssim_frame_min, psnr_frame_min)."""
    sims = [v for r in recs for v in r.similarity.values()]
    out = {}
    for key, field, margin, digits in (("ssim_min", "ssim", args.ssim_margin, 4), ("psnr_min", "psnr", args.psnr_margin, 2),
                                       ("ssim_frame_min", "ssim_worst", args.ssim_margin, 4),
                                       ("psnr_frame_min", "psnr_worst", args.psnr_margin, 2)):
        values = [v.get(field) for v in sims if field in v]
        if field in ("ssim", "psnr") or values:
            out[key] = None if all(v is None for v in values) else _floor(values, margin, digits)
    return out


def _temporal_bounds(recs: list, args) -> list[str]:
    """A video's consecutive-frame change over the baseline's: floor and ceiling, +-temporal margin."""
    ratios = [v["temporal_ratio"] for r in recs for v in r.similarity.values() if v.get("temporal_ratio") is not None]
    if not ratios:
        return []
    low = math.floor(min(ratios) * (1 - args.temporal_margin) * 1000) / 1000
    high = math.ceil(max(ratios) * (1 + args.temporal_margin) * 1000) / 1000
    return [f"temporal_ratio_min = {low}", f"temporal_ratio_max = {high}"]


def _floors(recs: list, args) -> tuple[list[str], list[str]]:
    """The image floors of `recs` as TOML lines, and what they rest on."""
    lines = [f"{k} = {v}" for k, v in _floor_values(recs, args).items() if v is not None]
    lines += _temporal_bounds(recs, args)
    per_run = [r.min_similarity("ssim") for r in recs if r.similarity]
    basis = [f"SSIM {min(per_run):.4f} (spread {_spread(per_run):.4f})"] if per_run else []
    return lines, basis


def _print_table(hardware: str, config: str, lines: list[str], basis: list[str], dates: list[str]) -> None:
    print(f'\n["{hardware}"."{config}"]')
    for line in lines:
        print(line)
    print(f'basis = "{", ".join(basis)}, {_period(dates)}"')


def _ceiling(ratios: list[float], margin: float) -> float:
    return math.ceil(max(ratios) * (1 + margin) * 100) / 100


def _period(dates: list[str]) -> str:
    return min(dates) if min(dates) == max(dates) else f"{min(dates)}..{max(dates)}"


def cmd_reference_table(args) -> int:
    from quantgate.results.record import read_results
    from quantgate.results.reference_table import OFF_BY, table

    data, records = read_results(Path(args.results))
    text, flagged = table(Path(args.reference), records, data["environment"], data["started"])
    print(text, end="")
    if flagged:
        print(f"\n{len(flagged)} row(s) off by more than {OFF_BY:.0%}: {', '.join(flagged)}; "
              "each needs an explanation",
              file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    """Exit 0 when no threshold is crossed, 1 on a regression (2 on bad input)."""
    from quantgate.results.compare import compare_runs, load_run, load_thresholds, markdown

    thresholds = load_thresholds(Path(args.thresholds) if args.thresholds else None)
    base, cand = load_run(Path(args.base)), load_run(Path(args.candidate))
    findings = compare_runs(base, cand, thresholds)
    text = markdown(base, cand, thresholds, findings)
    if args.markdown:
        from quantgate.io import atomic_write

        atomic_write(Path(args.markdown), text)
    print(text, end="")
    return 1 if any(f.regression for f in findings) else 0


def cmd_report(args) -> int:
    from quantgate.results.compare import resolve
    from quantgate.results.report import write

    results = resolve(Path(args.results))
    out = Path(args.out) if args.out else results.parent / "report.html"
    write(results, out, Path(args.baselines), Path(args.fixtures),
          resolve(Path(args.base)) if args.base else None, resolve(Path(args.previous)) if args.previous else None)
    print(f"wrote {out}")
    return 0


def cmd_candidate_lock(args) -> int:
    from quantgate.locks_files import candidate_lock

    out = candidate_lock(Path(args.base), args.packages, Path(args.out))
    print(f"wrote {out}")
    return 0


def cmd_merge_results(args) -> int:
    from quantgate.results.merge import merge_results

    out, repeated = merge_results([Path(p) for p in args.results], Path(args.out))
    print(f"merged {len(args.results)} result set(s) into {out}"
          + (f"; ran in more than one, with identical figures: {', '.join(repeated)}" if repeated else ""))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="quantgate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build-model", help="build synthetic models into the cache")
    p.add_argument("--model", help="only this model (a name from models.toml, or a checkpoint folder or hub id)")
    p.add_argument("--model-settings", help="for a checkpoint: the models.toml model whose settings it borrows")
    _common(p)
    p.set_defaults(func=cmd_build_model)
    p = sub.add_parser("regen-baselines", help="write BF16 baseline images (only from the reference)")
    p.add_argument("--model", required=True,
                   help="a name from models.toml, or a checkpoint: a local folder or a hub id in the local cache")
    p.add_argument("--model-settings", help="for a checkpoint: the models.toml model whose settings it borrows "
                   "(default: flux-dev-synth)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    p.add_argument("--baselines", default="baselines", help="baseline folder (default: ./baselines)")
    p.add_argument("--isolation", default="process", choices=("process", "inline"))
    _common(p)
    p.set_defaults(func=cmd_regen_baselines)
    p = sub.add_parser("propose-expectations", help="expectation tables from a result set")
    p.add_argument("results", nargs="+", help="results.json files written by the gate (repeated runs)")
    p.add_argument("--ssim-margin", type=float, default=0.002)
    p.add_argument("--psnr-margin", type=float, default=0.5)
    p.add_argument("--temporal-margin", type=float, default=0.05,
                   help="a video's consecutive-frame change ratio: bounds = measured range -/+ this share")
    p.add_argument("--bytes-margin", type=float, default=0.01)
    p.add_argument("--peak-margin", type=float, default=0.05,
                   help="margin on GPU peak reserved bytes (allocator blocks are 2 MiB and up)")
    p.add_argument("--latency-margin", type=float, default=None,
                   help="margin on step time as a ratio to BF16 (e.g. 0.25); without it no latency_ratio_max is "
                   "proposed (step times of tiny models on GPUs are launch-bound and not repeatable)")
    p.set_defaults(func=cmd_propose_expectations)
    p = sub.add_parser("reference-table", help="published figures side by side with a result set's")
    p.add_argument("results", help="a results.json written by the gate")
    p.add_argument("--reference", default="fixtures/reference/blog-flux-dev-h100.toml",
                   help="the published figures (default: the diffusers quantization blog's FLUX.1-dev table)")
    p.set_defaults(func=cmd_reference_table)
    p = sub.add_parser("compare", help="compare a candidate's result set with a base's (a version bump); "
                       "exit 1 on a regression")
    p.add_argument("base", help="base results: a results.json, its folder, or a --qg-run-name folder (its latest run)")
    p.add_argument("candidate", help="candidate results, the same forms")
    p.add_argument("--thresholds", default=None,
                   help="a TOML file with a [thresholds] table (see fixtures/compare.toml; default: its defaults)")
    p.add_argument("--markdown", help="also write the report to this file (e.g. $GITHUB_STEP_SUMMARY's content)")
    p.set_defaults(func=cmd_compare)
    p = sub.add_parser("report", help="one self-contained HTML report of a result set")
    p.add_argument("results", help="a results.json, its folder, or a --qg-run-name folder")
    p.add_argument("--out", help="the HTML file (default: report.html beside results.json)")
    p.add_argument("--base", help="a base result set (a version bump): its figures beside each case's")
    p.add_argument("--previous", help="a previous run: step times against it")
    p.add_argument("--baselines", default="baselines", help="baseline folder (default: ./baselines)")
    p.add_argument("--fixtures", default="fixtures", help="fixtures folder, for the ceilings (default: ./fixtures)")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("candidate-lock", help="write a candidate lock: the current lock with some packages at "
                       "other versions")
    p.add_argument("packages", nargs="+", help="NAME==VERSION for each package that differs")
    p.add_argument("--base", default="constraints/current.txt", help="the current lock (default: %(default)s)")
    p.add_argument("--out", default="constraints/candidate.txt", help="where to write it (default: %(default)s)")
    p.set_defaults(func=cmd_candidate_lock)
    p = sub.add_parser("merge-results", help="merge result sets of one matrix run in parts into one")
    p.add_argument("out", help="a new folder for the merged results.json and results.md")
    p.add_argument("results", nargs="+", help="the parts' results.json files")
    p.set_defaults(func=cmd_merge_results)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except QuantgateError as exc:
        print(f"quantgate: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
