"""Byte units, and how the suite writes sizes for people: the one home of MiB and GiB."""

from __future__ import annotations

KIB = 2**10
MIB = 2**20
GIB = 2**30
TIB = 2**40

# the units an error message may give a size in (torch, numpy, the CUDA caching allocator)
BY_NAME = {"B": 1, "KIB": KIB, "MIB": MIB, "GIB": GIB, "TIB": TIB,
           "KB": KIB, "MB": MIB, "GB": GIB, "TB": TIB}


def gib(value: int | float | None) -> str:
    """Bytes in GiB, or in MiB below 0.1 GiB (a 2 MiB block would read '0.00 GiB'); '?' for None."""
    if value is None:
        return "?"
    return f"{value / GIB:.2f} GiB" if value >= GIB / 10 else f"{value / MIB:.2f} MiB"


def distinct_digits(value: float, bound: float, least: int = 2, most: int = 6) -> int:
    """The fewest decimals (at least `least`) at which `value` and `bound` read differently, so that
    a failure never says "3.77x, over the ceiling of 3.77x"; `most` where they agree that far."""
    return next((d for d in range(least, most + 1) if f"{value:.{d}f}" != f"{bound:.{d}f}"), most)
