"""What a CPU-only machine's fork server imports besides quantgate.case.worker: the pipeline and
component classes of the session's families, and the quantization backends, so that each case's
process starts with them imported (a few seconds a case otherwise: `from diffusers import
FluxPipeline` alone takes about 3 s).

The families are those of the cases the session kept (GateSession sets PRELOAD_ENV before the first
case starts; unset, every registered family). Importing this module preloads, so only the fork
server imports it: PRELOAD_ENV lives in quantgate.case.isolation (the pytest process imported this
module for it once, and with it every family: 2.7 s of each gate run). Only where no CUDA device is
visible (isolation.py decides): these imports initialise CUDA where there is one, and a process forked from a server that
did so cannot use CUDA. Each import is tried on its own and a failure is swallowed here: a broken
backend must fail its own cases, with its own message, when they import it again.
"""

from __future__ import annotations

import importlib
import os

from quantgate.case.isolation import PRELOAD_ENV

QUANTIZER_MODULES = ("diffusers.quantizers",)


def _backend_modules() -> list[str]:
    """Every registered backend's preload_modules (quantgate.backends), after diffusers' quantizers."""
    from quantgate.backends import backend, names

    return [m for name in names() for m in backend(name).preload_modules]


def _classes_of(name: str) -> list[tuple[str, str]]:
    """(library, class name) of a family's pipeline and synthetic components."""
    from quantgate.families import family

    fam = family(name)
    return [("diffusers", fam.pipeline)] + [(c.library, c.cls) for c in fam.synthetic]


def preload(families: list[str]) -> None:
    for library, cls in [pair for name in families for pair in _try(_classes_of, name) or []]:
        _try(lambda: getattr(importlib.import_module(library), cls))
    for module in _try(_backend_modules) or []:
        _try(importlib.import_module, module)
    for module in QUANTIZER_MODULES:
        _try(importlib.import_module, module)


def _try(fn, *args):
    try:
        return fn(*args)
    except BaseException:  # noqa: BLE001 (anything: the fork server must start whatever a backend does)
        return None


def _families() -> list[str]:
    asked = os.environ.get(PRELOAD_ENV)
    if asked:
        return [n for n in asked.split(",") if n]
    from quantgate.families import names

    return list(names())


preload(_families())
