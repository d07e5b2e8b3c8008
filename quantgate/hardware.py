"""Hardware class (keys baselines, expectations and benchmark storage) and environment facts."""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version

# limits on the instruction sets torch, oneDNN and MKL use: recorded when set (with the first two,
# any x86-64 CPU runs the AVX2 kernels: how this project measures the AVX2 class on other machines)
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS")

STACK_PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors")
TOOL_PACKAGES = ("numpy", "scikit-image", "pytest", "pytest-benchmark")


def backend_packages() -> tuple[str, ...]:
    """Every registered backend's distributions (quantgate.backends: Backend.packages)."""
    from quantgate.backends import backend, names

    return tuple(dict.fromkeys(p for name in names() for p in backend(name).packages))


def tracked_packages() -> tuple[str, ...]:
    """The distributions whose versions a result set records: the stack, every registered backend's,
    and the gate's tools."""
    return tuple(dict.fromkeys((*STACK_PACKAGES, *backend_packages(), *TOOL_PACKAGES)))


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in tracked_packages():
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
    """'cpu-x86_64', 'cuda-sm90', ...: keys baselines, image floors and weight ceilings; one class's
    numbers are never judged against another's. On a CPU, what varies with its instruction set
    (speed) is keyed by the finer cpu_class()."""
    if device == "cpu":
        return f"cpu-{platform.machine()}"
    import torch

    major, minor = torch.cuda.get_device_capability()
    return f"cuda-sm{major}{minor}"


# oneDNN ISA limits (ONEDNN_MAX_CPU_ISA) under which its AMX kernels are still allowed
_AMX_ISAS = {"ALL", "DEFAULT", "AVX512_CORE_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX",
             "AVX10_1_512_AMX_FP16", "AVX10_2_512_AMX_2"}


def cpu_features() -> dict:
    """What this process's torch really runs on the CPU: ATen's vector capability (after any
    ATEN_CPU_CAPABILITY limit), the BF16 instructions the processor has (AVX512_BF16, AMX tiles),
    whether oneDNN's fast BF16 kernels are in use (after any ONEDNN_MAX_CPU_ISA limit), and from
    those whether BF16 matmuls and convolutions run natively. Without native BF16, oneDNN has no
    BF16 convolution kernel and torch falls back to slow reference code (measured: tiny-flux's VAE
    decode 42 s in BF16 against 0.16 s in float32 with AVX2 kernels)."""
    import torch

    capability = torch.backends.cpu.get_cpu_capability()
    cpu = getattr(torch, "cpu", None)

    def has(name: str) -> bool:
        probe = getattr(cpu, name, None)
        try:
            return bool(probe()) if probe is not None else False
        except Exception:
            return False

    try:
        onednn_bf16 = bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except Exception:
        onednn_bf16 = False
    isa = (os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA") or "ALL").upper()
    avx512_bf16, amx = has("_is_avx512_bf16_supported"), has("_is_amx_tile_supported") and isa in _AMX_ISAS
    native = capability.startswith("AVX512") and onednn_bf16 and (avx512_bf16 or amx)
    return {"capability": capability, "avx512_bf16": avx512_bf16, "amx": amx, "onednn_bf16": onednn_bf16,
            "bf16_native": native}


def cpu_class(features: dict | None = None) -> str:
    """The CPU's class for what depends on its instruction set, latency above all:
    'cpu-x86_64-avx512-amx', 'cpu-x86_64-avx512-bf16' (native BF16 without AMX), 'cpu-x86_64-avx512',
    'cpu-x86_64-avx2', ... Two machines of one class run the same kernels."""
    f = features or cpu_features()
    name = f"cpu-{platform.machine()}-{f['capability'].lower()}"
    if f["bf16_native"]:
        name += "-amx" if f["amx"] else "-bf16"
    return name


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
    if device == "cuda" and gpu_shared_by() > 1:
        env["gpu_shared_by"] = gpu_shared_by()
    features = cpu_features()
    env["cpu_features"] = features
    env["cpu_class"] = cpu_class(features)
    env["isa_limits"] = {k: os.environ[k] for k in ISA_LIMITS if os.environ.get(k)}
    import torch

    env["torch_threads"] = torch.get_num_threads()
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


GPU_SHARED_BY_ENV = "QG_GPU_SHARED_BY"


def gpu_shared_by() -> int:
    """How many pytest-xdist workers share this process's GPU (set by quantgate.gate.xdist when a
    host has fewer GPUs than workers); 1 where the GPU is this session's alone. Timings and the
    GPU's used memory are then not one case's own."""
    try:
        return max(1, int(os.environ.get(GPU_SHARED_BY_ENV) or 1))
    except ValueError:
        return 1


def cuda_visible_devices() -> list[str] | None:
    """CUDA_VISIBLE_DEVICES as a list (indices or UUIDs); None where it is unset or empty."""
    value = os.environ.get("CUDA_VISIBLE_DEVICES")
    if value is None or not value.strip():
        return None
    return [v.strip() for v in value.split(",") if v.strip()]
