"""Components run in float32 while the rest of a pipeline computes in BF16.

A model may name components that no configuration quantizes and that are not under test
(models.toml's `cpu_float32`, the VAE of the tiny models): on a CPU without native BF16, oneDNN has
no BF16 convolution kernel, and tiny-flux's VAE decode took 42-56 s in BF16 against 0.2-1.7 s in
float32 (docs/cpu-classes.md). The same components run in float32 for the reference and every
quantized case, on every CPU, so images stay comparable between configurations and between CPUs.

Such a component's weights are cast to float32 and the floating-point tensors handed to it (the
pipeline's BF16 latents) are cast on the way in; what it returns stays float32, which diffusers'
image post-processing takes as it is.
"""

from __future__ import annotations

import functools

ENTRY_POINTS = ("forward", "encode", "decode")     # AutoencoderKL is called through encode/decode


def _to_float32(value):
    import torch

    if isinstance(value, torch.Tensor) and value.is_floating_point() and value.dtype != torch.float32:
        return value.to(torch.float32)
    return value


def run_in_float32(module) -> None:
    """Cast `module` to float32 and cast the floating-point tensor arguments of its entry points."""
    import torch

    module.to(torch.float32)
    for name in ENTRY_POINTS:
        method = getattr(module, name, None)
        if method is None or getattr(method, "_quantgate_float32", False):
            continue

        @functools.wraps(method)
        def entry(*args, _method=method, **kwargs):
            return _method(*(_to_float32(a) for a in args), **{k: _to_float32(v) for k, v in kwargs.items()})

        entry._quantgate_float32 = True
        setattr(module, name, entry)


def component_dtypes(pipe) -> dict[str, str]:
    """Each module component's compute dtype as the pipeline sees it (`module.dtype`)."""
    out = {}
    for name, module in pipe.components.items():
        dtype = getattr(module, "dtype", None)
        if dtype is not None and hasattr(module, "named_parameters"):
            out[name] = str(dtype).removeprefix("torch.")
    return out
