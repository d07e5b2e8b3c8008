"""What a CPU-only machine's fork server imports besides quantgate.case.worker: diffusers' pipelines, the
model classes and the quantization backends, so that each case's process starts with them imported
(a few seconds a case otherwise: `from diffusers import FluxPipeline` alone takes about 3 s).

Only where no CUDA device is visible (isolation.py decides): these imports initialise CUDA where
there is one, and a process forked from a server that did so cannot use CUDA. Each import is tried
on its own and a failure is swallowed here: a broken backend must fail its own cases, with its own
message, when they import it again.
"""

from __future__ import annotations

import importlib

MODULES = ("diffusers.pipelines.flux.pipeline_flux", "diffusers.models.transformers.transformer_flux",
           "diffusers.models.autoencoders.autoencoder_kl", "transformers.models.clip.modeling_clip",
           "transformers.models.t5.modeling_t5", "torchao", "torchao.quantization", "optimum.quanto", "gguf",
           "diffusers.quantizers")

for _name in MODULES:
    try:
        importlib.import_module(_name)
    except BaseException:  # noqa: BLE001 (anything: the fork server must start whatever a backend does)
        pass
