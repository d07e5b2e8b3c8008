"""A case's memory limit, and out-of-memory errors told with their numbers.

`memory_limit_gib` (matrix.toml, per configuration or in [defaults]) caps the memory a case's own
process may take on its device:
  cpu   the process's address space may grow by at most the limit past its size when the case
        starts (RLIMIT_AS), so an allocation past it fails inside the case instead of waking the
        kernel's out-of-memory killer for the whole machine;
  cuda  torch.cuda.set_per_process_memory_fraction(limit / total): the caching allocator refuses
        to hold more than the limit on the GPU.
Applied only where the case has a process of its own (a limit on the pytest process would limit
the whole session).

An out-of-memory error in a case is reported with what was asked for, the limit, and what the
device had free and in total, read in the case's process when the error happened.
"""

from __future__ import annotations

import re

from quantgate.units import BY_NAME, gib

_CPU_ASKED = re.compile(r"tried to allocate (\d+) bytes", re.IGNORECASE)
_NUMPY_ASKED = re.compile(r"Unable to allocate ([\d.]+) ([KMGT]i?B)", re.IGNORECASE)
_CUDA_ASKED = re.compile(r"Tried to allocate ([\d.]+) ([KMGT]i?B)")


def _vm_size() -> int:
    """The address space this process holds now (VmSize), in bytes."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    raise OSError("no VmSize in /proc/self/status")


def apply_memory_limit(device: str, limit_bytes: int | None) -> None:
    """Cap this (the case's) process at `limit_bytes` on `device`; None leaves it uncapped."""
    if not limit_bytes:
        return
    if device == "cuda":
        import torch

        total = torch.cuda.get_device_properties(torch.cuda.current_device()).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, limit_bytes / total))
        return
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _vm_size() + int(limit_bytes)
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))


def asked_bytes(message: str) -> int | None:
    """The size of the allocation that failed, as the error message gives it."""
    m = _CPU_ASKED.search(message)
    if m:
        return int(m.group(1))
    for pattern in (_CUDA_ASKED, _NUMPY_ASKED):
        m = pattern.search(message)
        if m:
            return int(float(m.group(1)) * BY_NAME[m.group(2).upper()])
    return None


def is_out_of_memory(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    try:
        import torch

        if isinstance(exc, torch.OutOfMemoryError):
            return True
    except ImportError:
        pass
    text = str(exc)
    return isinstance(exc, RuntimeError) and ("can't allocate memory" in text or "not enough memory" in text
                                              or "CUDA error: out of memory" in text)


def _host_memory() -> tuple[int | None, int | None]:
    """(available, total) bytes of the machine's memory, from /proc/meminfo."""
    values = {}
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                key, rest = line.split(":", 1)
                values[key] = int(rest.split()[0]) * 1024
    except (OSError, ValueError):
        return None, None
    return values.get("MemAvailable"), values.get("MemTotal")


def describe_out_of_memory(exc: BaseException, device: str, limit_bytes: int | None) -> str:
    """'out of memory on cuda: asked for 2.00 GiB; limit 8.00 GiB (memory_limit_gib); 1.20 GiB
    free of 79.19 GiB on NVIDIA H100 ...', from the error and the device's state now."""
    asked = asked_bytes(str(exc))
    parts = [f"asked for {gib(asked)}"]
    parts.append(f"limit {gib(limit_bytes)} (memory_limit_gib)" if limit_bytes else "no memory_limit_gib")
    if device == "cuda":
        import torch

        free, total = torch.cuda.mem_get_info()
        parts.append(f"{gib(free)} free of {gib(total)} on {torch.cuda.get_device_name()}; this process "
                     f"holds {gib(torch.cuda.memory_reserved())} reserved, "
                     f"{gib(torch.cuda.memory_allocated())} allocated")
    else:
        available, total = _host_memory()
        parts.append(f"{gib(available)} available of {gib(total)} on the host")
    first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"out of memory on {device}: {'; '.join(parts)} ({type(exc).__name__}: {first[:300]})"
