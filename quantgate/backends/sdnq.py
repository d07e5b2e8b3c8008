"""SDNQ (SD.Next Quantization): weights in int8, 4-bit and other narrow integer or float types, with
an optional SVD low-rank correction and quantized matmuls. diffusers' SDNQConfig hands over to the
`sdnq` package's own config and quantizer, which also registers itself with transformers."""

from __future__ import annotations

import re

from quantgate.backends.base import NOT_CONVERT, Backend
from quantgate.matrix.schema import Field

_DTYPE = re.compile(r"^(u?int\d+|u?fp\d+|float\d+_e\d+m\d+\w*|bf16|bfloat16|float16|float32)$")


class SDNQ(Backend):
    name = "sdnq"
    marker, marker_help = "sdnq", "uses the SDNQ backend"
    modules = ("sdnq",)
    # not preloaded by the CPU fork server: importing sdnq raises torch._dynamo's recompile and cache
    # limits to 8192 and compiles a probe function (sdnq/common.py), which every other case's process
    # would inherit (a torchao float8 compile counted 2 graphs instead of 1); its own cases import it
    packages = ("sdnq",)
    settings_fields = (
        Field("weights_dtype", str, check=lambda v: None if _DTYPE.match(v) else
              "must name an SDNQ weights dtype (sdnq.common.accepted_weight_dtypes), like 'int8', 'uint4' or "
              "'float8_e4m3fn'"),
        Field("group_size", int, required=False),
        Field("use_svd", bool, required=False),
        Field("use_quantized_matmul", bool, required=False),
        NOT_CONVERT,
    )

    def config(self, settings: dict, library: str):
        kwargs = {k: v for k, v in settings.items() if v is not None}
        if library == "diffusers":
            from diffusers import SDNQConfig
        else:
            from sdnq import SDNQConfig
        return SDNQConfig(**kwargs)
