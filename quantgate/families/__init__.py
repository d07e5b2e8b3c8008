"""The registry of pipeline families: the built-in ones, and any package's through the entry point
group `quantgate.families` (name = "module:FamilyClass")."""

from __future__ import annotations

import importlib
from functools import cache

from quantgate.errors import QuantgateError
from quantgate.families.base import ROLES, Family, SynthComponent, SynthTokenizer, strip, unstrip

__all__ = ["ROLES", "Family", "SynthComponent", "SynthTokenizer", "family", "family_of_pipeline", "names",
           "strip", "unstrip"]

BUILT_IN = {
    "flux": "quantgate.families.flux:Flux",
    "sd3": "quantgate.families.sd3:SD3",
    "sdxl": "quantgate.families.sdxl:SDXL",
    "qwenimage": "quantgate.families.qwenimage:QwenImage",
    "wan": "quantgate.families.wan:Wan",
}
ENTRY_POINT_GROUP = "quantgate.families"


@cache
def _registry() -> dict[str, str]:
    from importlib.metadata import entry_points

    found = dict(BUILT_IN)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        found.setdefault(ep.name, ep.value)
    return found


def names() -> tuple[str, ...]:
    return tuple(sorted(_registry()))


@cache
def family(name: str) -> Family:
    """The family registered as `name`."""
    target = _registry().get(name)
    if target is None:
        raise QuantgateError(f"unknown pipeline family {name!r} (registered: {', '.join(names())}); a package "
                             f"adds one through the entry point group '{ENTRY_POINT_GROUP}'")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise QuantgateError(f"family {name!r} ({target}) is not a subclass of quantgate.families.Family")
    return cls()


def family_of_pipeline(pipeline_class: str) -> Family:
    """The family whose pipeline is `pipeline_class` (model_index.json's _class_name)."""
    for name in names():
        fam = family(name)
        if fam.pipeline == pipeline_class:
            return fam
    raise QuantgateError(f"no registered family runs {pipeline_class} (families: "
                         + ", ".join(f"{n} ({family(n).pipeline})" for n in names()) + ")")
