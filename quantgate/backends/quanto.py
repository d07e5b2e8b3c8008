"""optimum-quanto: weights in int8, int4, int2 or float8 (diffusers' and transformers' QuantoConfig)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
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

    # its CPU int4 kernels are a C++ extension that optimum-quanto builds the first time a process uses it
    prebuild_code = "from optimum.quanto.library.extensions.cpp import ext; ext.lib"

    def needs_prebuild(self, case: Case) -> bool:
        return case.device == "cpu" and case.config.settings.get("weights_dtype") == "int4"

    def prebuilt(self) -> bool:
        """The extension's build folder holds the library and the torch version it was built for."""
        spec = importlib.util.find_spec("optimum")
        for root in (spec.submodule_search_locations or []) if spec else []:
            build = Path(root) / "quanto" / "library" / "extensions" / "cpp" / "build"
            if (build / "quanto_cpp.so").is_file() and (build / "pytorch_version.txt").is_file():
                return True
        return False
