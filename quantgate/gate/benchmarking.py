"""pytest-benchmark wired for a gate that runs on several kinds of machine.

Storage per hardware class: with the ini option qg_benchmark_per_class, a file storage
(--benchmark-storage, default ./.benchmarks) gets the machine's hardware class appended
(`.benchmarks/cuda-sm90/Linux-CPython-3.12-64bit/0001_....json`), so `--benchmark-compare` and
`--benchmark-compare-fail` only ever compare runs of one class. The class is read without touching
CUDA in the pytest process: nvidia-smi's compute capability (`cuda-sm90`), else the CPU class
(`cpu-x86_64-avx2`, `cpu-x86_64-avx512-bf16`, ...).
"""

from __future__ import annotations

from quantgate.hardware import cpu_class, cuda_visible_devices, nvidia_smi


def machine_hardware_class() -> str:
    """This machine's class as the cases will report it: its first visible GPU's, else its CPU class
    (quantgate.hardware.cpu_class: a CPU's latency depends on its instruction set)."""
    caps = [row[0] for row in nvidia_smi("compute_cap") or []]
    if caps:
        visible = (cuda_visible_devices() or [""])[0]
        cap = caps[int(visible)] if visible.isdigit() and int(visible) < len(caps) else caps[0]
        return "cuda-sm" + cap.replace(".", "")
    return cpu_class()


def storage_per_class(config) -> None:
    storage = getattr(config.option, "benchmark_storage", None)
    if not storage or ("://" in storage and not storage.startswith("file://")):
        return                         # not a file storage (elasticsearch): left as the user gave it
    config.option.benchmark_storage = storage.rstrip("/") + "/" + machine_hardware_class()
