"""A deterministic split of the matrix into N shards, for N machines (or N device calls) that each
run one: `--qg-shard I/N`, then `quantgate merge-results` over the shards' result sets.

What is split is what the run would run otherwise (after --qg-config, -m and -k). The quantized
cases are dealt out in matrix order: the k-th goes to shard (k mod N) + 1. The
reference cases' own tests run in shard 1; every other shard still loads a reference once, for the
weight ratios of its cases (merge-results keeps one record of it and checks that the shards
measured it identically). The same matrix and N always give the same split, on any machine.
"""

from __future__ import annotations

import re

from quantgate.errors import QuantgateError
from quantgate.matrix import Case

_SPEC = re.compile(r"^(\d+)/(\d+)$")


def parse_shard(spec: str) -> tuple[int, int]:
    m = _SPEC.match(spec.strip())
    if not m or not 1 <= int(m.group(1)) <= int(m.group(2)):
        raise QuantgateError(f"--qg-shard {spec!r}: write it as I/N with 1 <= I <= N (e.g. 2/4)")
    return int(m.group(1)), int(m.group(2))


def shard_cases(cases: list[Case], index: int, count: int) -> list[Case]:
    """The cases of shard `index` (1-based) of `count`."""
    quantized = [c for c in cases if not c.config.is_reference]
    mine = {c.id for k, c in enumerate(quantized) if k % count == index - 1}
    return [c for c in cases if (c.config.is_reference and index == 1) or c.id in mine]
