"""How a CUDA case's process can start, and what each way costs: a spawned interpreter (imports
everything itself) or a fork of a fork server that imported the stack first. A fork is only usable
if nothing in the server initialised CUDA, including the driver-level initialisation that
torch.cuda.is_available() performs unless PYTORCH_NVML_BASED_CUDA_CHECK=1.

    python benchmarks/cuda_case_start.py [--children 3] > out.json

For each way: the seconds from start to a child that has imported the stack and run a CUDA matmul,
and whether CUDA worked in the child at all (with the error if not).
"""

import argparse
import json
import multiprocessing as mp
import os
import statistics
import subprocess
import sys
import time

STACK = ["quantgate.case.worker"]
BACKENDS = ["torchao", "optimum.quanto", "bitsandbytes", "gguf"]


def child(conn, modules):
    import importlib

    for name in modules:
        importlib.import_module(name)
    import torch

    inherited = torch.cuda.is_initialized()
    try:
        x = torch.ones(512, 512, device="cuda")
        value = float((x @ x).sum().item())
        conn.send({"ok": value == 512.0 ** 3, "inherited_cuda_init": inherited})
    except Exception as exc:  # reported: this is what the probe is for
        conn.send({"ok": False, "inherited_cuda_init": inherited, "error": f"{type(exc).__name__}: {exc}"[:400]})


def probe(method: str, preload: list[str], import_in_child: list[str], children: int, nvml: bool) -> dict:
    if nvml:
        os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = "1"
    else:
        os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    ctx = mp.get_context(method)
    if method == "forkserver":
        ctx.set_forkserver_preload(preload)
    runs = []
    for _ in range(children):
        started = time.perf_counter()
        parent, kid = ctx.Pipe()
        proc = ctx.Process(target=child, args=(kid, import_in_child))
        proc.start()
        kid.close()
        report = parent.recv() if parent.poll(300) else {"ok": False, "error": "no answer in 300 s"}
        report["seconds"] = time.perf_counter() - started
        proc.join(30)
        runs.append(report)
    return {"method": method, "preload": preload, "nvml_check": nvml, "children": runs,
            "later_child_s_median": statistics.median(r["seconds"] for r in runs[1:]) if len(runs) > 1 else None}


WAYS = {
    "spawn": ("spawn", [], STACK + BACKENDS, True),
    "fork-stack-nvml": ("forkserver", STACK, STACK + BACKENDS, True),
    "fork-stack-backends-nvml": ("forkserver", STACK + BACKENDS, STACK + BACKENDS, True),
    "fork-stack": ("forkserver", STACK, STACK + BACKENDS, False),
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--children", type=int, default=3)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--one", help=argparse.SUPPRESS)   # run one way in this process
    args = parser.parse_args()
    if args.one:
        method, preload, in_child, nvml = WAYS[args.one]
        print(json.dumps({"way": args.one, **probe(method, preload, in_child, args.children, nvml)}))
        return
    for name in args.ways.split(","):      # one interpreter per way: one fork server each
        done = subprocess.run([sys.executable, __file__, "--one", name, "--children", str(args.children)],
                              capture_output=True, text=True, timeout=900)
        print(done.stdout.strip() or json.dumps({"way": name, "error": done.stderr[-800:]}), flush=True)


if __name__ == "__main__":
    main()
