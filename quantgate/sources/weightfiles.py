"""Cheap integrity checks of weight files, before anything loads them.

A safetensors file is an 8-byte header length, a JSON header giving each tensor's byte range, then
the data: its size is fixed by its header, so a truncated or padded file is found by reading the
header alone (no 30 GB read).
"""

from __future__ import annotations

import json
import struct
from pathlib import Path


def safetensors_problem(path: Path) -> str | None:
    """What is wrong with a safetensors file's framing, or None."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            head = fh.read(8)
            if len(head) < 8:
                return f"{size} bytes: too short for a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return f"its header claims {length:,} bytes but the file has {size:,} in all (truncated)"
            header = json.loads(fh.read(length))
    except OSError as exc:
        return f"unreadable ({exc})"
    except ValueError as exc:
        return f"its header is not valid JSON ({exc})"
    if not isinstance(header, dict):
        return "its header is not a JSON object"
    ends = [entry["data_offsets"][1] for name, entry in header.items()
            if name != "__metadata__" and isinstance(entry, dict) and "data_offsets" in entry]
    expected = 8 + length + max(ends, default=0)
    if size != expected:
        return (f"{size:,} bytes, but its header describes {expected:,} "
                + ("(truncated)" if size < expected else "(extra bytes at the end)"))
    return None


def check_folder(folder: Path) -> list[str]:
    """'path: problem' for each damaged safetensors file under a folder."""
    return [f"{p}: {problem}" for p in sorted(Path(folder).rglob("*.safetensors"))
            if (problem := safetensors_problem(p)) is not None]
