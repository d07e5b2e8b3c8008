"""bitsandbytes: 4-bit (nf4, fp4, optionally double-quantized) or LLM.int8() weights.

Its quantized weights keep state beside their storage, which the real bytes of a weight include:
Params4bit's quant_state (absmax, the code book, the nested level's), Int8Params' SCB, and, once a
Linear8bitLt layer has run, the CB/SCB its MatmulLtState holds (init_8bit_state moves SCB off the
weight onto the layer), so that a layer counts the same before and after it has run.
"""

from __future__ import annotations

from quantgate.backends.base import NOT_CONVERT, Backend
from quantgate.matrix.schema import Field


def _dtype(name: str | None):
    import torch

    return getattr(torch, name) if name else None


def _state_tensors(state) -> list:
    import torch

    out = [v for v in (getattr(state, name, None) for name in ("absmax", "code", "offset"))
           if isinstance(v, torch.Tensor)]
    nested = getattr(state, "state2", None)
    return out + (_state_tensors(nested) if nested is not None else [])


class BitsAndBytes(Backend):
    name = "bitsandbytes"
    marker, marker_help = "bitsandbytes", "uses the bitsandbytes backend"
    modules = ("bitsandbytes",)
    packages = ("bitsandbytes",)
    settings_fields = (
        Field("load_in_4bit", bool, required=False, default=False),
        Field("load_in_8bit", bool, required=False, default=False),
        Field("bnb_4bit_quant_type", str, required=False, choices=("nf4", "fp4")),
        Field("bnb_4bit_use_double_quant", bool, required=False),
        Field("bnb_4bit_compute_dtype", str, required=False, choices=("bfloat16", "float16", "float32")),
        NOT_CONVERT,
    )

    def check_values(self, values: dict):
        if values["load_in_4bit"] == values["load_in_8bit"]:
            return "load_in_4bit", "set exactly one of load_in_4bit and load_in_8bit to true"
        return None

    def config(self, settings: dict, library: str):
        kwargs = {k: v for k, v in settings.items() if v is not None}
        if "bnb_4bit_compute_dtype" in kwargs:
            kwargs["bnb_4bit_compute_dtype"] = _dtype(kwargs["bnb_4bit_compute_dtype"])
        if "modules_to_not_convert" in kwargs:
            kwargs["llm_int8_skip_modules"] = kwargs.pop("modules_to_not_convert")
        if library == "diffusers":
            from diffusers import BitsAndBytesConfig
        else:
            from transformers import BitsAndBytesConfig
        return BitsAndBytesConfig(**kwargs)

    def tensor_state(self, t):
        import torch

        out = []
        state = getattr(t, "quant_state", None)          # Params4bit
        if state is not None:
            out += _state_tensors(state)
        scb = getattr(t, "SCB", None)                    # Int8Params
        if isinstance(scb, torch.Tensor):
            out.append(scb)
        return out

    def module_state(self, module):
        import torch

        state = getattr(module, "state", None)           # MatmulLtState
        if state is None:
            return []
        return [v for v in (getattr(state, name, None) for name in ("CB", "SCB")) if isinstance(v, torch.Tensor)]
