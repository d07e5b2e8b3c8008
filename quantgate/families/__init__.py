"""The registry of pipeline families: the built-in ones, and any package's through the entry point
group `quantgate.families` (name = "module:FamilyClass")."""

from __future__ import annotations

from quantgate.errors import QuantgateError
from quantgate.families.base import ROLES, Family, SynthComponent, SynthTokenizer, strip, unstrip
from quantgate.registry import Registry

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


_REGISTRY = Registry("pipeline family", ENTRY_POINT_GROUP, BUILT_IN, Family, "quantgate.families.Family")


def names() -> tuple[str, ...]:
    return _REGISTRY.names()


def family(name: str) -> Family:
    """The family registered as `name`."""
    return _REGISTRY.get(name)


def family_of_pipeline(pipeline_class: str) -> Family:
    """The family whose pipeline is `pipeline_class` (model_index.json's _class_name)."""
    for name in names():
        fam = family(name)
        if fam.pipeline == pipeline_class:
            return fam
    raise QuantgateError(f"no registered family runs {pipeline_class} (families: "
                         + ", ".join(f"{n} ({family(n).pipeline})" for n in names()) + ")")
