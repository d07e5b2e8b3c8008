"""The registry of quantization backends: one module per backend (quantgate.backends.<name>, a
subclass of quantgate.backends.base.Backend), and any package's through the entry point group
`quantgate.backends` (name = "module:BackendClass").

Components of diffusers (a transformer, a unet, a vae) get diffusers' config classes; the text
encoders are transformers models and get transformers' classes: which library a component belongs to
is read from the pipeline's model_index.json. Imports of a backend's library happen in its module,
lazily, so that a backend that fails to import fails its own cases and nothing else.
"""

from __future__ import annotations

from quantgate.backends.base import LIBRARIES, Backend
from quantgate.registry import Registry

__all__ = ["Backend", "backend", "check_settings", "import_backend", "installed_version", "names",
           "pipeline_quantization_config", "quantization_config"]

BUILT_IN = {
    "none": "quantgate.backends.reference:Reference",
    "torchao": "quantgate.backends.torchao:TorchAO",
    "quanto": "quantgate.backends.quanto:Quanto",
    "gguf": "quantgate.backends.gguf:GGUF",
    "bitsandbytes": "quantgate.backends.bitsandbytes:BitsAndBytes",
    "layerwise": "quantgate.backends.layerwise:Layerwise",
    "sdnq": "quantgate.backends.sdnq:SDNQ",
    "modelopt": "quantgate.backends.modelopt:ModelOpt",
    "autoround": "quantgate.backends.autoround:AutoRound",
    "nunchaku": "quantgate.backends.nunchaku:Nunchaku",
}
ENTRY_POINT_GROUP = "quantgate.backends"

_REGISTRY = Registry("quantization backend", ENTRY_POINT_GROUP, BUILT_IN, Backend, "quantgate.backends.Backend")


def names() -> tuple[str, ...]:
    return _REGISTRY.names()


def backend(name: str) -> Backend:
    """The backend registered as `name`."""
    return _REGISTRY.get(name)


def check_settings(name: str, settings: dict) -> tuple[str | None, str] | None:
    """Check a matrix entry's settings for backend `name`; return (field, problem) or None."""
    return backend(name).check_settings(settings)


def import_backend(name: str) -> None:
    """Import every module the backend needs, or raise BackendImportError naming it."""
    backend(name).import_modules()


def quantization_config(name: str, settings: dict, library: str):
    """The quantization config object for one component of `library` ("diffusers" or "transformers")."""
    if library not in LIBRARIES:
        raise ValueError(f"a component of library {library!r} cannot be quantized (diffusers or transformers)")
    return backend(name).config(settings, library)


def pipeline_quantization_config(name: str, settings: dict, libraries: dict[str, str]):
    """A diffusers PipelineQuantizationConfig over several components.

    quant_mapping is used for every backend: quant_backend= with shared kwargs fails for torchao
    and quanto, whose diffusers and transformers config signatures differ. `libraries` maps each
    component to quantize to its library, as model_index.json names it.
    """
    from diffusers import PipelineQuantizationConfig

    return PipelineQuantizationConfig(
        quant_mapping={c: quantization_config(name, settings, lib) for c, lib in libraries.items()})


def installed_version(dist: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(dist)
    except PackageNotFoundError:
        return "(not installed)"
