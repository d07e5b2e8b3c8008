"""GGUF: the denoiser loaded from a single GGUF file of the wanted quant type, which the suite writes
from the BF16 weights (quantgate.sources.gguf_files) as its users download one. The file is the
checkpoint, so its load is its round trip; the BF16 denoiser is not needed in the model folder."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.backends.base import Backend
from quantgate.matrix.schema import Field

if TYPE_CHECKING:
    from quantgate.families import Family
    from quantgate.matrix import Case

GGUF_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")


class GGUF(Backend):
    name = "gguf"
    marker, marker_help = "gguf", "uses GGUF files"
    modules = ("gguf",)
    preload_modules = ("gguf",)
    packages = ("gguf",)
    settings_fields = (Field("quant_type", str, choices=GGUF_TYPES),)
    routes = ("component",)
    loads_on_device = False
    denoiser_only = True
    own_checkpoint = True

    def serves(self, family: Family) -> bool:
        return family.gguf_arch is not None

    def config(self, settings: dict, library: str):
        import torch
        from diffusers import GGUFQuantizationConfig

        return GGUFQuantizationConfig(compute_dtype=torch.bfloat16)

    def load_component(self, session, name, cls, qc, dtype):
        from quantgate.sources.gguf_files import ensure_denoiser_gguf

        path = ensure_denoiser_gguf(session.model_dir, session.case.config.settings["quant_type"], session.cache_root,
                                    name, session.family.gguf_arch, spec=session.case.model)
        return cls.from_single_file(str(path), config=str(session.model_dir), subfolder=name,
                                    quantization_config=qc, dtype=dtype)

    def model_without(self, case: Case) -> tuple[str, ...]:
        return tuple(case.components)
