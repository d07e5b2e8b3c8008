"""On a CUDA machine: a case that runs out of GPU memory fails only itself, and the cases after it
measure what they measure in a clean run.

    python scripts/gpu-oom-check.py OUT_DIR [--oom torchao-int8wo] [--after torchao-float8wo quanto-int8]
                                            [--limit-gib 0.01]

Runs the GPU tier of tiny-flux twice, in two sessions: a clean one with the --after configurations
alone, then one on a copy of the fixtures in which the --oom configuration has
memory_limit_gib = --limit-gib (the caching allocator's share of the GPU, so loading fails with
torch.OutOfMemoryError), followed by the same --after configurations. Writes OUT_DIR/clean/ and
OUT_DIR/faults/ (the gate's results), their logs, and OUT_DIR/oom-check.md: the out-of-memory case's
status and message, and each later case's allocator figures and weight bytes beside the clean run's.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out")
    parser.add_argument("--oom", default="torchao-int8wo")
    parser.add_argument("--after", nargs="+", default=["torchao-float8wo", "quanto-int8"])
    parser.add_argument("--limit-gib", type=float, default=0.01)
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    base = [sys.executable, "-m", "pytest", "tests/gate", "-m", "gpu", "-p", "no:cacheprovider", "-q",
            "--benchmark-disable", "--qg-model", "tiny-flux"]
    after = [arg for config in args.after for arg in ("--qg-config", config)]
    clean_log = subprocess.run(base + ["--qg-results-dir", str(out / "clean")] + after,
                               cwd=REPO, capture_output=True, text=True)
    (out / "clean.log").write_text(clean_log.stdout + clean_log.stderr)
    with tempfile.TemporaryDirectory() as tmp:
        fixtures = Path(tmp) / "fixtures"
        shutil.copytree(REPO / "fixtures", fixtures)
        matrix = fixtures / "matrix.toml"
        anchor = f'id = "{args.oom}"\n'
        matrix.write_text(matrix.read_text().replace(anchor, anchor + f"memory_limit_gib = {args.limit_gib}\n", 1))
        cmd = base + ["--qg-fixtures", str(fixtures), "--qg-results-dir", str(out / "faults"),
                      "--qg-config", args.oom] + after
        log = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        (out / "faults.log").write_text(log.stdout + log.stderr)
    got = {c["config"]: c for c in json.loads((out / "faults" / "results.json").read_text())["cases"]}
    clean = {c["config"]: c for c in json.loads((out / "clean" / "results.json").read_text())["cases"]}
    oom = got[args.oom]
    lines = ["# A CUDA out-of-memory case fails only itself", "",
             f"- {args.oom} with memory_limit_gib = {args.limit_gib}: status **{oom['status']}**",
             f"- its message: `{(oom.get('error') or '').splitlines()[0] if oom.get('error') else '-'}`",
             f"- session exit {log.returncode}; last line: `{log.stdout.strip().splitlines()[-1] if log.stdout.strip() else ''}`",
             "", "| case | figure | this run | clean run | equal |", "|---|---|---|---|---|"]
    ok = oom["status"] == "out of memory"
    for config in args.after:
        mine, theirs = got.get(config), clean.get(config)
        if mine is None or theirs is None:
            lines.append(f"| {config} | (missing) | {mine is not None} | {theirs is not None} | no |")
            ok = False
            continue
        figures = [("weights", mine["weights"], theirs["weights"])]
        figures += [(k, mine["memory"].get(k), theirs["memory"].get(k)) for k in sorted(theirs["memory"])]
        for name, a, b in figures:
            same = a == b
            ok &= same
            show = (lambda v: f"{v:,}" if isinstance(v, int) else "(per component)")
            lines.append(f"| {config} | {name} | {show(a)} | {show(b)} | {'yes' if same else '**no**'} |")
        lines.append(f"| {config} | status, release | {mine['status']}, {mine.get('release')} | {theirs['status']} | |")
    lines += ["", f"Verdict: {'the out-of-memory case failed alone; the next cases match the clean run' if ok else 'NOT as expected'}"]
    (out / "oom-check.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
