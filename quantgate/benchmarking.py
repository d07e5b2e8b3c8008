"""pytest-benchmark wired for a gate that runs on several kinds of machine.

Storage per hardware class: with the ini option qg_benchmark_per_class, a file storage
(--benchmark-storage, default ./.benchmarks) gets the machine's hardware class appended
(`.benchmarks/cuda-sm90/Linux-CPython-3.12-64bit/0001_....json`), so `--benchmark-compare` and
`--benchmark-compare-fail` only ever compare runs of one class. The class is read without touching
CUDA in the pytest process: nvidia-smi's compute capability (`cuda-sm90`), else `cpu-<arch>`.
"""

from __future__ import annotations

import platform
import shutil
import subprocess


def machine_hardware_class() -> str:
    """This machine's class as the cases will report it: its first visible GPU's, else its CPU's."""
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                                 text=True, timeout=30)
            caps = [line.strip() for line in out.stdout.splitlines() if line.strip()]
            if out.returncode == 0 and caps:
                import os

                visible = os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",")[0].strip()
                cap = caps[int(visible)] if visible.isdigit() and int(visible) < len(caps) else caps[0]
                return "cuda-sm" + cap.replace(".", "")
        except (OSError, subprocess.SubprocessError, ValueError):
            pass
    return f"cpu-{platform.machine()}"


def storage_per_class(config) -> None:
    storage = getattr(config.option, "benchmark_storage", None)
    if not storage or ("://" in storage and not storage.startswith("file://")):
        return                         # not a file storage (elasticsearch): left as the user gave it
    config.option.benchmark_storage = storage.rstrip("/") + "/" + machine_hardware_class()
