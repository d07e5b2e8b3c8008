"""torchao: any torchao.quantization config class, named in the matrix with its keyword arguments
(TOML strings become torch dtypes and granularities: 'torch.int4', 'PerGroup(64)', 'PerRow()')."""

from __future__ import annotations

import re

from quantgate.backends.base import NOT_CONVERT, Backend, not_convert
from quantgate.matrix.schema import Field

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
        Field("config", str, check=lambda v: None if re.fullmatch(r"[A-Z]\w*Config", v)
              else "must name a torchao.quantization config class, like 'Int8WeightOnlyConfig'"),
        Field("kwargs", dict, required=False, default=dict),
        NOT_CONVERT,
    )

    def config(self, settings: dict, library: str):
        import torchao.quantization

        from quantgate.backends import installed_version

        cls = getattr(torchao.quantization, settings["config"], None)
        if cls is None:
            raise ValueError(f"torchao {installed_version('torchao')} has no config {settings['config']!r} "
                             "in torchao.quantization")
        quant_type = cls(**{k: resolve_value(v) for k, v in settings.get("kwargs", {}).items()})
        extra = not_convert(settings)
        if library == "diffusers":
            from diffusers import TorchAoConfig
        else:
            from transformers import TorchAoConfig
        return TorchAoConfig(quant_type, **extra)
