"""torch.compile of the quantized denoiser: compiled with fullgraph=True (a graph break is an error);
its first call compiles what it needs, and the calls after it, with the same inputs, run under
torch._dynamo.config.error_on_recompile, so that a call with the same shapes that compiles again is
an error too. The path times the eager denoising call first, then the
first compiled call (the compile time a team waits for), then the compiled calls, and makes the
images with the compiled denoiser. The gate holds those images against the fresh (eager) load's and
records the speed-up (tests/gate/test_compile.py). Compiled torchao int8 dynamic broke on FLUX.2
(diffusers #14097); layerwise FP8 does not compile at all (the issue's probe: "Attempted to use
torch.nn.Parameter() constructor with Dynamo").

The compiler backend is data (matrix.toml compile_backend, per device): inductor on a GPU, the real
thing; on a CPU aot_eager, which traces the whole graph through Dynamo and AOTAutograd (graph
breaks, recompiles and a quantized tensor subclass that cannot be traced all show) but runs it
eagerly: inductor's C++ code generation took 65 s for tiny-flux's BF16 transformer alone on a 2-core
CPU (2026-12-02).

Why a compiled image is not the eager one, pixel for pixel (measured on tiny-flux, BF16, CPU,
2026-12-02): inductor keeps a fused kernel's intermediates in float32 where eager rounds every op's
output to BF16. One transformer forward in eager BF16 differs from the same forward in float32 by a
max abs of 1.94 (output std 1.21); inductor's differs from float32 by only 0.035. The compiled
output is the more exact one; the synthetic weights, which no training has tamed, amplify BF16's
rounding. aot_eager and Dynamo's eager backend give the eager output bit for bit. With inductor told
to round where eager does (emulate_precision_casts, matrix.toml compile_emulate_precision_casts, on by
default), its latents came within 0.44% (relative L2) of eager's (docs/paths.md), so the image floor
can be tight enough to see a compiled kernel that computes wrongly.
"""

from __future__ import annotations

import time
from pathlib import Path

from quantgate.paths.base import RegressionPath


def _emulated_casts(on: bool):
    """inductor told to round to BF16 where eager would (torch._inductor.config.emulate_precision_casts),
    so that the compiled images can be held close to eager's; a no-op context when `on` is false."""
    import contextlib

    if not on:
        return contextlib.nullcontext()
    import torch._inductor.config

    return torch._inductor.config.patch(emulate_precision_casts=True)


class Compile(RegressionPath):
    name = "compile"
    description = ("torch.compile of the denoiser with fullgraph=True and error_on_recompile: no graph break, "
                   "no recompilation, images close to eager, compile time and speed-up recorded")

    def run(self, session, folder: Path) -> dict:
        import torch

        from quantgate.matrix import load_defaults

        case = session.case
        defaults = load_defaults(case.model.fixtures_dir)
        backend = defaults["compile_backend"][case.device]
        rounds = case.model.timed_rounds(defaults)
        session.denoise()                                        # warm-up, as for every timed call
        eager = [session.denoise()["wall_s"] for _ in range(rounds)]
        figures: dict = {"backend": backend, "eager_s": eager, "errors": {}}
        denoiser = getattr(session.pipe, session.family.denoiser)
        torch._dynamo.reset()
        denoiser.compile(fullgraph=True, backend=backend)
        emulate = backend == "inductor" and defaults["compile_emulate_precision_casts"]
        figures["emulate_precision_casts"] = emulate
        started = time.perf_counter()
        try:
            with _emulated_casts(emulate):
                # the first call compiles what it meets (a pipeline with true CFG calls its denoiser
                # with two text lengths; GGUF's output comes back a GGUFParameter, another input type
                # from the second step on): each a graph, counted. Later calls, with the same inputs,
                # must compile nothing
                session.denoise()
                figures["compile_s"] = time.perf_counter() - started
                with torch._dynamo.config.patch(error_on_recompile=True):
                    figures["compiled_s"] = [session.denoise()["wall_s"] for _ in range(rounds)]
                # the images encode their prompt in the pipeline: another text length than the timed
                # call's precomputed embeddings (Qwen-Image's) is another shape, and may compile again
                made = session.generate(for_path=True)
        except Exception as exc:  # noqa: BLE001 (the compiler's refusal is the finding: the path's test reports it)
            kind = "recompile" if type(exc).__name__ == "RecompileError" else "compile"
            figures["errors"][kind] = " ".join(f"{type(exc).__name__}: {exc}".split())[:700]
            return {**figures, "images": {}}
        figures["speedup"] = min(eager) / min(figures["compiled_s"])
        figures["graphs"] = int(torch._dynamo.utils.counters["stats"]["unique_graphs"])
        return {**figures, "images": made["images"]}
