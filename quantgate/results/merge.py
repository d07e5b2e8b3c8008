"""Merge result sets of one matrix that ran in parts (halves of a pass, shards, GPUs) into one.

Every part must come from the same hardware class and package versions. A case that several parts
ran (the reference is run by every part that needs its bytes) is kept once, and only if its
measured figures agree everywhere: a case's figures must not depend on what else ran in its session.
A part that loaded the reference only for its bytes measured fewer figures (no images, no inference
memory): the figures both parts have must agree, and the fuller record is kept.
"""

from __future__ import annotations

from pathlib import Path

from quantgate.errors import QuantgateError
from quantgate.results.record import CaseRecord, read_results, write_results

# figures that must be identical wherever a case ran; timings are not among them
MEASURED = ("status", "weights", "reference_bytes", "similarity", "memory")


class MergeError(QuantgateError):
    """Result sets that cannot be merged into one."""


def _identity(env: dict) -> dict:
    return {"hardware": env.get("hardware"), "gpu": env.get("gpu"), "driver": env.get("driver"),
            "packages": env.get("packages"), "cpu_class": None if env.get("gpu") else env.get("cpu_class")}


def _measured(rec: CaseRecord) -> dict:
    """The record's measured figures, leaving out those it did not measure (None, empty)."""
    out = {}
    for field in MEASURED:
        value = getattr(rec, field)
        if isinstance(value, dict):
            value = {k: v for k, v in value.items() if v is not None}
        if value not in (None, {}):
            out[field] = value
    return out


def _disagree(a: dict, b: dict) -> list[str]:
    """The fields whose figures both records measured and that differ."""
    out = []
    for field in a.keys() & b.keys():
        x, y = a[field], b[field]
        if field == "memory":                # compare the allocator figures both measured
            if any(x[k] != y[k] for k in x.keys() & y.keys()):
                out.append(field)
        elif x != y:
            out.append(field)
    return sorted(out, key=MEASURED.index)


def _size(measured: dict) -> int:
    return sum(len(v) if isinstance(v, dict) else 1 for v in measured.values())


def merge_results(parts: list[Path], out: Path) -> tuple[Path, list[str]]:
    """Write the merged set to `out`; return it and the cases found in more than one part."""
    if (out / "results.json").exists():
        raise MergeError(f"{out} already holds a result set (results.json); choose a new folder")
    merged: dict[str, tuple[CaseRecord, Path]] = {}
    repeated: list[str] = []
    first_env, started, finished, first_path = None, [], [], None
    for path in parts:
        data, records = read_results(path)
        if first_env is None:
            first_env, first_path = data["environment"], path
        else:
            mine, theirs = _identity(data["environment"]), _identity(first_env)
            diff = [f"{k}: {theirs[k]} vs {mine[k]}" for k in mine if mine[k] != theirs[k]]
            if diff:
                raise MergeError(f"{path} ran on other hardware or versions than {first_path}: {'; '.join(diff)}")
        started.append(data["started"])
        finished.append(data.get("finished") or data["started"])
        for rec in records:
            if rec.case not in merged:
                merged[rec.case] = (rec, path)
                continue
            kept, where = merged[rec.case]
            mine, theirs = _measured(kept), _measured(rec)
            differ = _disagree(mine, theirs)
            if differ:
                raise MergeError(f"{rec.case} was measured differently in {where} and {path} "
                                 f"({', '.join(differ)}); a case's figures must not depend on what ran with it")
            if _size(theirs) > _size(mine):       # keep the fuller record; its test outcomes come first
                merged[rec.case] = (rec, path)
                kept, rec = rec, kept
            for test, outcome in rec.tests.items():
                kept.tests.setdefault(test, outcome)
            repeated.append(rec.case)
    if first_env is None:
        raise MergeError("no result sets to merge")
    write_results(out, [rec for rec, _ in merged.values()], first_env, min(started), max(finished))
    return out, sorted(set(repeated))
