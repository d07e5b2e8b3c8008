"""Hardware class (keys baselines, expectations and benchmark storage) and environment facts."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

TRACKED_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "torchao",
                    "optimum-quanto", "bitsandbytes", "gguf", "numpy", "scikit-image", "pytest",
                    "pytest-benchmark")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in TRACKED_PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def hardware_class(device: str) -> str:
    """'cpu-x86_64', 'cuda-sm90', ...: one class's numbers are never judged against another's."""
    if device == "cpu":
        return f"cpu-{platform.machine()}"
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"cuda-sm{major}{minor}"


def environment(device: str) -> dict:
    """What a result or a baseline was made with."""
    env = {
        "hardware": hardware_class(device),
        "device": device,
        "cpu": cpu_model(),
        "cores": _cores(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": package_versions(),
        "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
    }
    if device == "cuda":
        import torch

        env["gpu"] = torch.cuda.get_device_name()
        env["cuda"] = torch.version.cuda
        env["driver"] = _nvidia_driver()
    return env


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def _nvidia_driver() -> str | None:
    rows = nvidia_smi("driver_version")
    return rows[0][0] if rows else None


def nvidia_smi(*fields: str) -> list[list[str]] | None:
    """`nvidia-smi --query-gpu=<fields>`: one row per GPU, each the fields' values (no units); None
    where nvidia-smi is missing or fails. Asking it never initialises CUDA in this process."""
    smi = shutil.which("nvidia-smi")
    if smi is None:
        return None
    try:
        out = subprocess.run([smi, f"--query-gpu={','.join(fields)}", "--format=csv,noheader,nounits"],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return [[part.strip() for part in line.split(",")] for line in out.stdout.splitlines() if line.strip()]


def cuda_visible_devices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (indices or UUIDs); None where it is unset or empty."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]
