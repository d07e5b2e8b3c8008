"""torchao: any torchao.quantization config class, named in the matrix with its keyword arguments
(TOML strings become torch dtypes and granularities: 'torch.int4', 'PerGroup(64)', 'PerRow()'). A
config outside torchao.quantization is named by its module under torchao:
'prototype.mx_formats.NVFP4WeightOnlyConfig'."""

from __future__ import annotations

import re

from quantgate.backends.base import NOT_CONVERT, Backend, not_convert
from quantgate.matrix.schema import Field

_CONFIG = re.compile(r"([a-z_]\w*\.)*[A-Z]\w*Config")
_GRANULARITY = re.compile(r"^(PerGroup|PerAxis|PerTensor|PerRow)\((-?\d*)\)$")


def resolve_value(value):
    """Turn the strings a TOML file can hold into torch/torchao objects: 'torch.int4', 'PerGroup(64)'."""
    import torch

    if isinstance(value, str):
        if value.startswith("torch."):
            dtype = getattr(torch, value[len("torch."):], None)
            if not isinstance(dtype, torch.dtype):
                raise ValueError(f"unknown torch dtype {value!r}")
            return dtype
        m = _GRANULARITY.match(value)
        if m:
            import torchao.quantization.granularity as granularity

            cls = getattr(granularity, m.group(1))
            return cls(int(m.group(2))) if m.group(2) else cls()
    if isinstance(value, list):
        return [resolve_value(v) for v in value]
    return value


class TorchAO(Backend):
    name = "torchao"
    marker, marker_help = "torchao", "uses the torchao backend"
    modules = ("torchao",)
    preload_modules = ("torchao", "torchao.quantization")
    packages = ("torchao",)
    settings_fields = (
        Field("config", str, check=lambda v: None if _CONFIG.fullmatch(v)
              else "must name a torchao.quantization config class, like 'Int8WeightOnlyConfig', or one in a module "
                   "under torchao, like 'prototype.mx_formats.NVFP4WeightOnlyConfig'"),
        Field("kwargs", dict, required=False, default=dict),
        NOT_CONVERT,
    )

    def config(self, settings: dict, library: str):
        import importlib

        from quantgate.backends import installed_version

        where, _, name = settings["config"].rpartition(".")
        module = f"torchao.{where or 'quantization'}"
        try:
            cls = getattr(importlib.import_module(module), name, None)
        except ModuleNotFoundError:
            cls = None
        if cls is None:
            raise ValueError(f"torchao {installed_version('torchao')} has no config {name!r} in {module}")
        quant_type = cls(**{k: resolve_value(v) for k, v in settings.get("kwargs", {}).items()})
        extra = not_convert(settings)
        if library == "diffusers":
            from diffusers import TorchAoConfig
        else:
            from transformers import TorchAoConfig
        return TorchAoConfig(quant_type, **extra)
