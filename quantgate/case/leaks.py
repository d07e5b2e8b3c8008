"""What a case leaves behind once it is closed: processes, and memory on its device.

A case's process is gone when the case closes, and the operating system takes back its memory
(the GPU driver too). What can survive it is a process it started (a compiler, a worker pool, a
daemon) and, with it, the GPU memory that process holds. So a case is checked clean when
  - every process of its process tree, read just before it was closed, has ended, and
  - on CUDA, the GPU's used memory (nvidia-smi) is back within a tolerance of what it was before
    the case's process started (waiting a little: the driver frees a dead process's memory
    asynchronously).
In inline mode (no process of its own) the check is torch's allocated bytes on the GPU, before the
case and after it is dropped; host memory is not checked there.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from quantgate.hardware import cuda_visible_devices, nvidia_smi
from quantgate.units import MIB

DEFAULT_TOLERANCE = 64 * MIB   # GPU memory a closed case may leave in use (leak_tolerance_mib)
SETTLE_S = 15.0        # how long freed GPU memory may take to show as free
POLL_S = 0.25


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, start time in clock ticks) of a process, or None if it does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as fh:
            text = fh.read()
    except OSError:
        return None
    rest = text[text.rindex(")") + 2:].split()     # fields after the command name
    return rest[0], int(rest[19])


def process_tree(pid: int) -> list[tuple[int, int]]:
    """Every descendant of `pid` as (pid, start time), read from /proc (Linux); [] elsewhere."""
    out, todo = [], [pid]
    while todo:
        parent = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{parent}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{parent}/task/{tid}/children") as fh:
                    children = [int(c) for c in fh.read().split()]
            except OSError:
                continue
            for child in children:
                info = _stat(child)
                if info is not None:
                    out.append((child, info[1]))
                    todo.append(child)
    return out


def survivors(tree: list[tuple[int, int]]) -> list[int]:
    """The processes of a tree still running (the same process: same pid and start time; zombies
    count as ended)."""
    left = []
    for pid, started in tree:
        info = _stat(pid)
        if info is not None and info[1] == started and info[0] != "Z":
            left.append(pid)
    return left


def gpu_used_bytes() -> int | None:
    """Used memory of the GPUs this process may use, from nvidia-smi; None if it cannot tell."""
    rows = nvidia_smi("index", "uuid", "memory.used")
    if rows is None:
        return None
    visible = cuda_visible_devices()
    return sum(int(used) * MIB for index, uuid, used in rows
               if visible is None or index in visible or uuid in visible)


@dataclass
class Release:
    """How a case's process ended and what it left behind."""
    case: str
    exitcode: int | None = None
    processes_left: list[int] = field(default_factory=list)
    gpu_before: int | None = None        # bytes used on the GPU before the case started
    gpu_after: int | None = None         # and after it was closed (settled)
    tolerance: int = DEFAULT_TOLERANCE
    checked: list[str] = field(default_factory=list)     # what was checked

    @property
    def gpu_left(self) -> int | None:
        if self.gpu_before is None or self.gpu_after is None:
            return None
        return self.gpu_after - self.gpu_before

    def problems(self) -> list[str]:
        out = []
        if self.processes_left:
            out.append(f"{len(self.processes_left)} process(es) it started still run after its own process "
                       f"ended: pid {', '.join(map(str, self.processes_left))}")
        left = self.gpu_left
        if left is not None and left > self.tolerance:
            out.append(f"{left / MIB:,.0f} MiB more GPU memory is in use than before it started "
                       f"({self.gpu_before / MIB:,.0f} -> {self.gpu_after / MIB:,.0f} MiB; tolerance "
                       f"{self.tolerance / MIB:,.0f} MiB)")
        return out

    def as_dict(self) -> dict:
        return {"exitcode": self.exitcode, "processes_left": self.processes_left, "gpu_before": self.gpu_before,
                "gpu_after": self.gpu_after, "checked": self.checked}


def settle_gpu(before: int | None, tolerance: int, read=gpu_used_bytes, settle_s: float = SETTLE_S) -> int | None:
    """GPU used bytes once they are back within `tolerance` of `before`, or the last reading after
    `settle_s` seconds."""
    if before is None:
        return None
    deadline = time.monotonic() + settle_s
    while True:
        now = read()
        if now is None or now - before <= tolerance or time.monotonic() >= deadline:
            return now
        time.sleep(POLL_S)
