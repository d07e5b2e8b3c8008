"""Lock files (pip constraints): the current lock, and candidates that move some packages.

A candidate lock is the current lock with the named packages at other versions, written whole (pip
cannot take two constraints that pin one package twice), with a header saying what moved.
"""

from __future__ import annotations

import re
from pathlib import Path

from quantgate.errors import QuantgateError

_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """{normalized name: version} of every `name==version` line."""
    if not Path(path).is_file():
        raise QuantgateError(f"no lock at {path}")
    pins = {}
    for line in Path(path).read_text().splitlines():
        m = _PIN.match(line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def candidate_lock(base: Path, moves: list[str], out: Path) -> Path:
    parsed = []
    for move in moves:
        m = _PIN.match(move)
        if not m or m.end() != len(move.strip()):
            raise QuantgateError(f"{move!r}: give each package as NAME==VERSION")
        parsed.append((_norm(m.group(1)), m.group(2)))
    pins = read_lock(base)
    unknown = [name for name, _ in parsed if name not in pins]
    if unknown:
        raise QuantgateError(f"{', '.join(unknown)} not in {base} (pinned there: {', '.join(sorted(pins))})")
    if Path(out).resolve() == Path(base).resolve():
        raise QuantgateError(f"the candidate lock would overwrite the current lock {base}: choose another --out")
    moved = dict(parsed)
    lines = [f"# Candidate lock: {base} with " + ", ".join(f"{n} {pins[n]} -> {v}" for n, v in parsed),
             f"# written by: quantgate candidate-lock {' '.join(moves)}"]
    for line in Path(base).read_text().splitlines():
        m = _PIN.match(line)
        if m and _norm(m.group(1)) in moved:
            line = f"{m.group(1)}=={moved[_norm(m.group(1))]}"
        lines.append(line)
    from quantgate.io import atomic_write

    atomic_write(Path(out), "\n".join(lines) + "\n")
    return Path(out)
