"""The registry of regression paths: what a case does beyond quantize, generate, compare (a round
trip through saved checkpoints, ...). The built-in ones, and any package's through the entry point
group `quantgate.paths` (name = "module:PathClass"). The matrix names the paths each configuration
takes (`paths` in matrix.toml); each path's tests carry its name as a marker (`-m "not roundtrip"`)."""

from __future__ import annotations

import importlib
from functools import cache

from quantgate.errors import QuantgateError
from quantgate.paths.base import RegressionPath

__all__ = ["RegressionPath", "names", "path"]

BUILT_IN = {
    "roundtrip": "quantgate.paths.roundtrip:RoundTrip",
}
ENTRY_POINT_GROUP = "quantgate.paths"


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
def path(name: str) -> RegressionPath:
    """The regression path registered as `name`."""
    target = _registry().get(name)
    if target is None:
        raise QuantgateError(f"unknown regression path {name!r} (registered: {', '.join(names())}); a package "
                             f"adds one through the entry point group '{ENTRY_POINT_GROUP}'")
    module, _, attr = target.partition(":")
    cls = getattr(importlib.import_module(module), attr)
    if not (isinstance(cls, type) and issubclass(cls, RegressionPath)):
        raise QuantgateError(f"regression path {name!r} ({target}) is not a subclass of quantgate.paths.RegressionPath")
    return cls()
