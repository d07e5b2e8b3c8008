"""What a quantization backend is to the gate: one subclass of Backend per backend, registered in
quantgate.backends (or by any package through the entry point group `quantgate.backends`).

A backend declares its name, its pytest marker, the Python modules it imports and the packages whose
versions a result set records; the schema of its matrix `settings`; the routes (component,
pipeline) it takes; and whether it can quantize while loading onto the device. It builds the
diffusers/transformers quantization config from a matrix entry, may load a component itself (GGUF
single files), may act on the pipeline after loading (layerwise casting), and says which tensors it
holds quantized and how many bytes they really take.

Nothing here imports a backend's library at import time: a backend that fails to import fails its
own cases and nothing else (import_modules raises BackendImportError naming the module).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from quantgate.errors import BackendImportError, DataFileError
from quantgate.matrix.schema import Field, check_entry

if TYPE_CHECKING:
    import torch

    from quantgate.case.session import CaseSession
    from quantgate.families import Family
    from quantgate.matrix import Case

NOT_CONVERT = Field("modules_to_not_convert", list, required=False, item_kind=str)


def not_convert(settings: dict) -> dict:
    """The config keyword for the settings' modules_to_not_convert, where they name any."""
    modules = settings.get("modules_to_not_convert")
    return {"modules_to_not_convert": modules} if modules else {}
LIBRARIES = ("diffusers", "transformers")


class Backend:
    """One quantization backend. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    marker: ClassVar[str | None] = None            # pytest marker its cases carry (`-m "not torchao"`)
    marker_help: ClassVar[str] = ""
    modules: ClassVar[tuple[str, ...]] = ()        # imported before a case loads; a failure fails its cases
    preload_modules: ClassVar[tuple[str, ...]] = ()   # imported once by a CPU machine's fork server
    packages: ClassVar[tuple[str, ...]] = ()       # distributions whose versions results record
    settings_fields: ClassVar[tuple[Field, ...]] = ()
    routes: ClassVar[tuple[str, ...]] = ("component", "pipeline")
    quantizes_on_load: ClassVar[bool] = True       # from_pretrained(quantization_config=...) quantizes
    loads_on_device: ClassVar[bool] = True         # matrix load_on = "device" (a device_map) applies
    denoiser_only: ClassVar[bool] = False          # it replaces the denoiser alone (a GGUF file)
    own_checkpoint: ClassVar[bool] = False         # its source file is its checkpoint: no round trip to save

    # ------------------------------------------------------------------ the matrix entry
    def check_settings(self, settings: dict) -> tuple[str | None, str] | None:
        """Check a matrix entry's settings: (field, problem), or None where they are good."""
        try:
            values = check_entry("settings", self.name, settings, list(self.settings_fields))
        except DataFileError as exc:
            return exc.field, exc.problem
        return self.check_values(values)

    def check_values(self, values: dict) -> tuple[str | None, str] | None:
        """Rules across the settings' fields, once each field is valid."""
        return None

    def serves(self, family: Family) -> bool:
        """Whether the backend can quantize this family's denoiser at all (GGUF: a single-file loader)."""
        return True

    # ------------------------------------------------------------------ loading
    def import_modules(self) -> None:
        """Import every module the backend needs, or raise BackendImportError naming it."""
        for module in self.modules:
            try:
                importlib.import_module(module)
            except Exception as exc:  # an import can fail with anything, not only ImportError
                raise BackendImportError(
                    f"backend '{self.name}' failed to import {module}: {type(exc).__name__}: {exc}") from exc

    def config(self, settings: dict, library: str) -> Any:
        """The quantization config of one component of `library` ("diffusers" or "transformers")."""
        raise NotImplementedError(f"backend '{self.name}' builds no quantization config")

    def load_component(self, session: CaseSession, name: str, cls: type, qc: Any, dtype: torch.dtype):
        """Component `name` quantized with `qc`; None: the gate's default from_pretrained(subfolder=name)."""
        return None

    def after_load(self, pipe: Any, case: Case) -> None:
        """What follows from_pretrained for every load of a case of this backend."""

    def model_without(self, case: Case) -> tuple[str, ...]:
        """Components of the BF16 model folder the case does without (a GGUF file replaces them)."""
        return ()

    # ------------------------------------------------------------------ weights
    def is_quantized(self, t: torch.Tensor) -> bool:
        """Held in a form narrower than 16-bit floats: a tensor subclass, integers, or float8."""
        import torch

        if type(t) not in (torch.Tensor, torch.nn.Parameter):
            return True
        return not (t.dtype.is_floating_point or t.dtype.is_complex) or t.element_size() < 2

    def tensor_state(self, t: torch.Tensor) -> list[torch.Tensor]:
        """Tensors the backend keeps on a weight besides its storage (bitsandbytes' quantization state)."""
        return []

    def module_state(self, module: torch.nn.Module) -> list[torch.Tensor]:
        """Tensors a layer of the backend holds outside its parameters and buffers."""
        return []

    # ------------------------------------------------------------------ what it needs built
    prebuild_code: ClassVar[str | None] = None    # Python that builds its extension (quantgate.backends.prebuild)

    def needs_prebuild(self, case: Case) -> bool:
        """Whether the case needs the backend's extension (prebuild_code) built in the background."""
        return False

    def prebuilt(self) -> bool:
        """Whether that extension is already built in this environment (looked up without importing it)."""
        return self.prebuild_code is None

    def made_ahead(self, case: Case, cache_root: Path) -> bool:
        """Whether the case loads a checkpoint the suite makes first (AutoRound's) that is not made
        yet and can be made in the background while earlier cases run (make_ahead)."""
        return False

    def make_ahead(self, case: Case, cache_root: Path) -> None:
        """Make that checkpoint, in a background process of its own (quantgate.backends.prebuild)."""
