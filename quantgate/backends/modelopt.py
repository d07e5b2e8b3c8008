"""NVIDIA ModelOpt (nvidia-modelopt): diffusers' NVIDIAModelOptConfig inserts ModelOpt's quantizers
into every Linear, calibrates each weight's scale as it loads ("max" by default) and compresses it
into FP8, INT8, INT4, NF4 or NVFP4 storage (`mtq.compress`). diffusers components only: transformers
has no ModelOpt config class for the text encoders."""

from __future__ import annotations

from quantgate.backends.base import NOT_CONVERT, Backend
from quantgate.matrix.schema import Field

QUANT_TYPES = ("FP8", "INT8", "INT4", "NF4", "NVFP4")


def _quant_type_problem(value: str) -> str | None:
    """diffusers logs a warning and falls back to FP8 for a type it does not know: refuse it here."""
    parts = value.split("_")
    if len(parts) > 2 or any(p not in QUANT_TYPES for p in parts):
        return (f"must be a ModelOpt weight type, optionally with an activation type after '_' "
                f"({', '.join(QUANT_TYPES)}; e.g. 'FP8' or 'FP8_FP8'); diffusers would quietly use FP8 instead")
    return None


class ModelOpt(Backend):
    name = "modelopt"
    marker, marker_help = "modelopt", "uses the NVIDIA ModelOpt backend"
    modules = ("modelopt.torch.quantization",)
    # not preloaded by the CPU fork server: modelopt patches torch and transformers classes as it imports
    packages = ("nvidia-modelopt",)
    routes = ("component",)
    settings_fields = (
        Field("quant_type", str, check=_quant_type_problem),
        Field("weight_only", bool, required=False),
        Field("channel_quantize", int, required=False),
        Field("block_quantize", int, required=False),
        Field("scale_channel_quantize", int, required=False),
        Field("scale_block_quantize", int, required=False),
        Field("disable_conv_quantization", bool, required=False),
        NOT_CONVERT,
    )

    def check_values(self, values: dict) -> tuple[str | None, str] | None:
        if values.get("block_quantize") is not None and values.get("channel_quantize") is None:
            return "block_quantize", "needs channel_quantize too (ModelOpt blocks one axis: channel_quantize = -1)"
        return None

    def config(self, settings: dict, library: str):
        if library != "diffusers":
            raise ValueError("ModelOpt quantizes diffusers components only (NVIDIAModelOptConfig); transformers "
                             "has no ModelOpt config for a text encoder: quantize the denoiser")
        from diffusers import NVIDIAModelOptConfig

        return NVIDIAModelOptConfig(**{k: v for k, v in settings.items() if v is not None})
