"""optimum-quanto: weights in int8, int4, int2 or float8 (diffusers' and transformers' QuantoConfig)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from quantgate.backends.base import NOT_CONVERT, Backend, not_convert
from quantgate.matrix.schema import Field

if TYPE_CHECKING:
    from quantgate.matrix import Case


class Quanto(Backend):
    name = "quanto"
    marker, marker_help = "quanto", "uses the optimum-quanto backend"
    modules = ("optimum.quanto",)
    preload_modules = ("optimum.quanto",)
    packages = ("optimum-quanto",)
    settings_fields = (Field("weights_dtype", str, choices=("int8", "int4", "int2", "float8")), NOT_CONVERT)

    def config(self, settings: dict, library: str):
        extra = not_convert(settings)
        if library == "diffusers":
            from diffusers import QuantoConfig

            return QuantoConfig(weights_dtype=settings["weights_dtype"], **extra)
        from transformers import QuantoConfig

        return QuantoConfig(weights=settings["weights_dtype"], **extra)

    def needs_prebuild(self, case: Case) -> bool:
        """Its CPU int4 kernels are a C++ extension built on first use (quantgate.backends.prebuild)."""
        return case.device == "cpu" and case.config.settings.get("weights_dtype") == "int4"
