"""Why do torch.compile'd denoising latents differ from eager ones? (issue 16)

For one case (default tiny-flux bf16 on the CPU) it runs the model's timed denoising call (its
latency_steps, prompt embeddings precomputed, latents out) and compares, by max |a - b| and relative L2 norm:
  - eager against eager (run to run);
  - eager BF16 against the same call with the transformer in float32 (how far plain rounding moves it);
  - eager against compiled (transformer.compile(fullgraph=True));
  - eager against compiled with torch._inductor.config.emulate_precision_casts (inductor rounds its
    fused intermediates to BF16 where eager would).
Prints one line per comparison and writes them as JSON to --out.

    python benchmarks/compile_vs_eager.py --model tiny-flux --config bf16 --out results/compile-vs-eager.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="tiny-flux")
    ap.add_argument("--config", default="bf16")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", type=Path)
    args = ap.parse_args()

    import torch

    from quantgate.case.session import CaseSession
    from quantgate.hardware import environment
    from quantgate.matrix import build_cases, load_matrix, load_models
    from quantgate.sources.cache import default_cache_root, ensure_synthetic

    fixtures = Path("fixtures")
    models = load_models(fixtures)
    case = {c.id: c for c in build_cases(models, load_matrix(fixtures, models))}[f"{args.model}-{args.config}-{args.device}"]
    folder = ensure_synthetic(case.model, default_cache_root())
    session = CaseSession(case, str(folder), str(default_cache_root()))
    session.load()
    pipe = session.pipe
    embeds = session.family.encode(pipe, case.model, case.device)

    def latents() -> torch.Tensor:
        with torch.no_grad():
            out = pipe(**embeds, output_type="latent", generator=torch.Generator("cpu").manual_seed(case.model.seeds[0]),
                       **session.family.timed_kwargs(case.model))
        return (out.images if hasattr(out, "images") else out[0]).float().cpu()

    def diff(a: torch.Tensor, b: torch.Tensor) -> dict:
        return {"max_abs": float((a - b).abs().max()), "rel_l2": float((a - b).norm() / a.norm()),
                "scale": float(a.abs().max())}

    rows = {}
    eager = latents()
    rows["eager vs eager"] = diff(eager, latents())
    denoiser = getattr(pipe, session.family.denoiser)
    if args.config == "bf16":
        denoiser.to(torch.float32)
        embeds32 = {k: v.float() if torch.is_tensor(v) and v.is_floating_point() else v for k, v in embeds.items()}
        saved, embeds = embeds, embeds32
        rows["eager bf16 vs eager float32 denoiser"] = diff(eager, latents())
        embeds = saved
        denoiser.to(torch.bfloat16)
        rows["eager vs eager after the float32 detour"] = diff(eager, latents())
    import torch._inductor.config as inductor

    started = time.perf_counter()
    denoiser.compile(fullgraph=True)
    compiled = latents()
    rows["eager vs compiled"] = {**diff(eager, compiled), "first_call_s": time.perf_counter() - started}
    rows["compiled vs compiled"] = diff(compiled, latents())
    torch._dynamo.reset()
    inductor.emulate_precision_casts = True
    started = time.perf_counter()
    emulated = latents()
    rows["eager vs compiled, emulate_precision_casts"] = {**diff(eager, emulated), "first_call_s": time.perf_counter() - started}
    for name, row in rows.items():
        print(f"{name:45s} " + "  ".join(f"{k} {v:.6g}" for k, v in row.items()))
    if args.out:
        env = environment(case.device)
        args.out.write_text(json.dumps({"case": case.id, "date": time.strftime("%Y-%m-%d"), "cpu": env.get("cpu"),
                                        "gpu": env.get("gpu"), "packages": env.get("packages"), "rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
