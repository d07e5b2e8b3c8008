"""Layerwise casting: diffusers' enable_layerwise_casting keeps weights in FP8 and computes in BF16.
No quantization config: the components load in BF16 and are cast after loading."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.backends.base import Backend
from quantgate.matrix.schema import Field

if TYPE_CHECKING:
    from quantgate.matrix import Case


class Layerwise(Backend):
    name = "layerwise"
    settings_fields = (Field("storage_dtype", str, choices=("float8_e4m3fn", "float8_e5m2")),)
    routes = ("component",)
    quantizes_on_load = False
    loads_on_device = False

    def after_load(self, pipe, case: Case) -> None:
        import torch

        for name in case.components:
            getattr(pipe, name).enable_layerwise_casting(
                storage_dtype=getattr(torch, case.config.settings["storage_dtype"]), compute_dtype=torch.bfloat16)
