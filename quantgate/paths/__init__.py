"""The registry of regression paths: what a case does beyond quantize, generate, compare (a round
trip through saved checkpoints, ...). The built-in ones, and any package's through the entry point
group `quantgate.paths` (name = "module:PathClass"). The matrix names the paths each configuration
takes (`paths` in matrix.toml); each path's tests carry its name as a marker (`-m "not roundtrip"`)."""

from __future__ import annotations

from quantgate.paths.base import RegressionPath
from quantgate.registry import Registry

__all__ = ["RegressionPath", "names", "path"]

BUILT_IN = {
    "roundtrip": "quantgate.paths.roundtrip:RoundTrip",
    "lora": "quantgate.paths.lora:Lora",
    "compile": "quantgate.paths.compile:Compile",
    "previous": "quantgate.paths.previous:PreviousLock",
}
ENTRY_POINT_GROUP = "quantgate.paths"


_REGISTRY = Registry("regression path", ENTRY_POINT_GROUP, BUILT_IN, RegressionPath, "quantgate.paths.RegressionPath")


def names() -> tuple[str, ...]:
    return _REGISTRY.names()


def path(name: str) -> RegressionPath:
    """The regression path registered as `name`."""
    return _REGISTRY.get(name)
