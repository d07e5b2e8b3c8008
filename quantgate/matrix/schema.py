"""Declarative checking of the TOML data files (matrix, models, expectations).

Each data file is a table of entries; each entry is checked against a list of `Field`s, so an
error always names the file, the entry and the field.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from quantgate.errors import DataFileError

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
               list: "a list", dict: "a table", (str, list): "a string or a list of strings"}


@dataclass(frozen=True)
class Field:
    name: str
    kind: type | tuple[type, ...]
    required: bool = True
    default: Any = None
    choices: tuple | None = None
    item_kind: type | None = None          # for lists: the type of each item
    check: Callable[[Any], str | None] | None = None   # returns a problem, or None

    def describe(self) -> str:
        text = _TYPE_NAMES[self.kind]
        if self.item_kind is not None:
            text += f" of {_TYPE_NAMES[self.item_kind].split(' ', 1)[1]}s"
        return text


def read_toml(path: Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise DataFileError(path, None, None, "file not found")
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise DataFileError(path, None, None, f"not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise DataFileError(path, None, None, f"not UTF-8 text, so not TOML ({exc.reason} at byte {exc.start})") from None


def _is_kind(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_entry(path: Path, entry_name: str, raw: Any, fields: list[Field]) -> dict:
    """Check one entry; return its values with defaults filled in."""
    if not isinstance(raw, dict):
        raise DataFileError(path, entry_name, None, f"must be a table, got {type(raw).__name__}")
    known = {f.name for f in fields}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise DataFileError(path, entry_name, unknown[0],
                            f"unknown field (known fields: {', '.join(sorted(known))})")
    out = {}
    for f in fields:
        if f.name not in raw:
            if f.required:
                raise DataFileError(path, entry_name, f.name, f"missing (must be {f.describe()})")
            out[f.name] = f.default() if callable(f.default) else f.default
            continue
        value = raw[f.name]
        if not _is_kind(value, f.kind):
            raise DataFileError(path, entry_name, f.name,
                                f"must be {f.describe()}, got {value!r} ({type(value).__name__})")
        if f.item_kind is not None:
            for item in value:
                if not _is_kind(item, f.item_kind):
                    raise DataFileError(path, entry_name, f.name,
                                        f"must be {f.describe()}, got item {item!r}")
        if f.choices is not None:
            values = value if isinstance(value, list) else [value]
            for v in values:
                if v not in f.choices:
                    raise DataFileError(path, entry_name, f.name,
                                        f"unknown value {v!r} (choose from: {', '.join(map(str, f.choices))})")
        if f.check is not None:
            problem = f.check(value)
            if problem:
                raise DataFileError(path, entry_name, f.name, problem)
        out[f.name] = float(value) if f.kind is float else value
    return out
