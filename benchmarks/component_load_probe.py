"""Where a slow quantized load spends its time: each quantized component of one configuration loaded
on its own, the way the gate loads it, timed in two stages ("load": from_pretrained, which
quantizes, or from_single_file for GGUF; "to_device": the move to the device), with a line printed
as each stage ends, so a run cut off by a time limit still says where it
was.

    python benchmarks/component_load_probe.py --model flux-dev-synth --config quanto-int4-pipeline \
        [--device cuda] [--cache-dir DIR] > probe.jsonl

One JSON line per stage: {"component", "stage", "seconds", "rss_gib"} and, on CUDA, the allocator's
reserved GiB. The model must be built already (`quantgate build-model`).
"""

import argparse
import json
import resource
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _line(**fields) -> None:
    import torch

    fields["rss_gib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3)
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        fields["reserved_gib"] = round(torch.cuda.memory_reserved() / 2**30, 3)
    print(json.dumps(fields), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--cache-dir")
    parser.add_argument("--fixtures", default="fixtures")
    args = parser.parse_args()

    import torch

    from quantgate.backends import import_backend
    from quantgate.case.session import CaseSession, _component_classes
    from quantgate.matrix import Case, load_matrix, load_models
    from quantgate.sources.cache import default_cache_root, model_dir

    models = load_models(args.fixtures)
    configs = {c.id: c for c in load_matrix(args.fixtures, models)}
    cfg = configs[args.config]
    cache_root = Path(args.cache_dir) if args.cache_dir else default_cache_root()
    folder = model_dir(models[args.model], cache_root)
    # the gate's own component load (quantization config, GGUF file, load_on), one component at a time
    case = Case(models[args.model], cfg, args.device)
    session = CaseSession(case, str(folder), str(cache_root))
    import_backend(cfg.backend)
    _, classes = _component_classes(folder)
    for name in case.components:
        started = time.perf_counter()
        module = session._load_component(name, *classes[name], torch.bfloat16)
        _line(component=name, stage="load", seconds=round(time.perf_counter() - started, 2))
        started = time.perf_counter()
        module.to(args.device)
        if args.device == "cuda":
            torch.cuda.synchronize()
        _line(component=name, stage="to_device", seconds=round(time.perf_counter() - started, 2))
        del module
        if args.device == "cuda":
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
