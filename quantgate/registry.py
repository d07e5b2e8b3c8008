"""A registry of pluggable parts (pipeline families, regression paths): the built-in ones, and any
package's through an entry point group (name = "module:Class")."""

from __future__ import annotations

import importlib
from functools import cache, cached_property

from quantgate.errors import QuantgateError


class Registry:
    def __init__(self, what: str, group: str, built_in: dict[str, str], base: type, base_name: str):
        self.what, self.group, self.built_in, self.base, self.base_name = what, group, built_in, base, base_name
        self.get = cache(self._get)

    @cached_property
    def targets(self) -> dict[str, str]:
        """name -> "module:Class": the built-in ones, then the entry points' (a built-in name wins)."""
        from importlib.metadata import entry_points

        found = dict(self.built_in)
        for ep in entry_points(group=self.group):
            found.setdefault(ep.name, ep.value)
        return found

    def names(self) -> tuple[str, ...]:
        return tuple(sorted(self.targets))

    def _get(self, name: str):
        """An instance of the part registered as `name`."""
        target = self.targets.get(name)
        if target is None:
            raise QuantgateError(f"unknown {self.what} {name!r} (registered: {', '.join(self.names())}); a package "
                                 f"adds one through the entry point group '{self.group}'")
        module, _, attr = target.partition(":")
        cls = getattr(importlib.import_module(module), attr)
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise QuantgateError(f"{self.what} {name!r} ({target}) is not a subclass of {self.base_name}")
        return cls()
