"""One small function per backend: a matrix entry -> the diffusers/transformers quantization config.

Components of diffusers (a transformer, a unet, a vae) get diffusers' config classes; the text
encoders are transformers models and get transformers' classes: which library a component belongs to
is read from the pipeline's model_index.json. Imports of the backends happen here, lazily, so
that a backend that fails to import fails its own cases and nothing else.
"""

from __future__ import annotations

import importlib
import re

from quantgate.errors import BackendImportError, DataFileError
from quantgate.matrix.schema import Field, check_entry

GGUF_TYPES = ("Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K")
_NOT_CONVERT = Field("modules_to_not_convert", list, required=False, item_kind=str)
SETTINGS_FIELDS = {
    "none": [],
    "torchao": [
        Field("config", str, check=lambda v: None if re.fullmatch(r"[A-Z]\w*Config", v)
              else "must name a torchao.quantization config class, like 'Int8WeightOnlyConfig'"),
        Field("kwargs", dict, required=False, default=dict),
        _NOT_CONVERT,
    ],
    "quanto": [Field("weights_dtype", str, choices=("int8", "int4", "int2", "float8")), _NOT_CONVERT],
    "gguf": [Field("quant_type", str, choices=GGUF_TYPES)],
    "layerwise": [Field("storage_dtype", str, choices=("float8_e4m3fn", "float8_e5m2"))],
    "bitsandbytes": [
        Field("load_in_4bit", bool, required=False, default=False),
        Field("load_in_8bit", bool, required=False, default=False),
        Field("bnb_4bit_quant_type", str, required=False, choices=("nf4", "fp4")),
        Field("bnb_4bit_use_double_quant", bool, required=False),
        Field("bnb_4bit_compute_dtype", str, required=False, choices=("bfloat16", "float16", "float32")),
        _NOT_CONVERT,
    ],
}
# The modules a backend needs; an import failure of any of them fails the backend's cases.
REQUIRED_MODULES = {
    "none": (),
    "torchao": ("torchao",),
    "quanto": ("optimum.quanto",),
    "gguf": ("gguf",),
    "bitsandbytes": ("bitsandbytes",),
    "layerwise": (),
}


def check_settings(backend: str, settings: dict) -> tuple[str | None, str] | None:
    """Check a matrix entry's settings; return (field, problem) or None."""
    try:
        values = check_entry("settings", backend, settings, SETTINGS_FIELDS[backend])
    except DataFileError as exc:
        return exc.field, exc.problem
    if backend == "bitsandbytes" and values["load_in_4bit"] == values["load_in_8bit"]:
        return "load_in_4bit", "set exactly one of load_in_4bit and load_in_8bit to true"
    return None


def import_backend(backend: str) -> None:
    """Import every module the backend needs, or raise BackendImportError naming it."""
    for name in REQUIRED_MODULES[backend]:
        try:
            importlib.import_module(name)
        except Exception as exc:  # an import can fail with anything, not only ImportError
            raise BackendImportError(
                f"backend '{backend}' failed to import {name}: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- value resolution

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


def _dtype(name: str | None):
    import torch

    return getattr(torch, name) if name else None


# ---------------------------------------------------------------- one function per backend

def torchao_config(settings: dict, library: str):
    import torchao.quantization

    cls = getattr(torchao.quantization, settings["config"], None)
    if cls is None:
        raise ValueError(f"torchao {_version('torchao')} has no config {settings['config']!r} "
                         "in torchao.quantization")
    quant_type = cls(**{k: resolve_value(v) for k, v in settings.get("kwargs", {}).items()})
    extra = {"modules_to_not_convert": settings["modules_to_not_convert"]} if settings.get("modules_to_not_convert") else {}
    if library == "diffusers":
        from diffusers import TorchAoConfig
    else:
        from transformers import TorchAoConfig
    return TorchAoConfig(quant_type, **extra)


def quanto_config(settings: dict, library: str):
    extra = {"modules_to_not_convert": settings["modules_to_not_convert"]} if settings.get("modules_to_not_convert") else {}
    if library == "diffusers":
        from diffusers import QuantoConfig

        return QuantoConfig(weights_dtype=settings["weights_dtype"], **extra)
    from transformers import QuantoConfig

    return QuantoConfig(weights=settings["weights_dtype"], **extra)


def bitsandbytes_config(settings: dict, library: str):
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


def gguf_config(settings: dict, library: str):
    import torch
    from diffusers import GGUFQuantizationConfig

    return GGUFQuantizationConfig(compute_dtype=torch.bfloat16)


BUILDERS = {"torchao": torchao_config, "quanto": quanto_config,
            "bitsandbytes": bitsandbytes_config, "gguf": gguf_config}


def quantization_config(backend: str, settings: dict, library: str):
    """The quantization config object for one component of `library` ("diffusers" or "transformers")."""
    if library not in ("diffusers", "transformers"):
        raise ValueError(f"a component of library {library!r} cannot be quantized (diffusers or transformers)")
    return BUILDERS[backend](settings, library)


def pipeline_quantization_config(backend: str, settings: dict, libraries: dict[str, str]):
    """A diffusers PipelineQuantizationConfig over several components.

    quant_mapping is used for every backend: quant_backend= with shared kwargs fails for torchao
    and quanto, whose diffusers and transformers config signatures differ. `libraries` maps each
    component to quantize to its library, as model_index.json names it.
    """
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_mapping={c: quantization_config(backend, settings, lib) for c, lib in libraries.items()})


def _version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"
