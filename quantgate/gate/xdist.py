"""pytest-xdist on one host: `pytest -m gpu -n <GPUs>` gives each worker one GPU.

- Each worker's CUDA_VISIBLE_DEVICES is set, in its pytest_configure, before anything in it starts
  CUDA (its cases' processes inherit it): worker gwK gets GPU K mod len(GPUs). The GPUs are QG_GPUS
  (a comma list), else the controller's CUDA_VISIBLE_DEVICES, else every GPU nvidia-smi lists; with
  none (a CPU-only host) nothing is pinned. With more workers than GPUs, workers share a GPU: each
  is told how many share its GPU (QG_GPU_SHARED_BY), so that its cases' timings are recorded but
  not gated, and the leak check reads no device-wide used memory that other workers move.
- All tests of one case go to one worker (an xdist_group per case, `--dist loadgroup`), so a case
  loads once.
- Each worker writes its own result set under <results>/workers/<gwK>/; the controller merges them
  into <results> (quantgate merge-results' rules) and writes the report.
- pytest-benchmark switches itself off under xdist: latency is then the denoising calls timed in
  each case's process (results.json's denoise_s, latency_rounds of them), which the ratio-to-BF16
  test and `quantgate compare` read.
"""

from __future__ import annotations

import os

from quantgate.hardware import GPU_SHARED_BY_ENV, cuda_visible_devices, nvidia_smi

WORKER_GPUS_ENV = "QG_GPUS"


def is_worker(config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config) -> bool:
    return not is_worker(config) and bool(getattr(config.option, "numprocesses", None)) \
        and getattr(config.option, "dist", "no") != "no"


def host_gpus() -> list[str]:
    """The GPUs workers are spread over (see the module's docstring)."""
    value = os.environ.get(WORKER_GPUS_ENV)
    if value and value.strip():
        return [v.strip() for v in value.split(",") if v.strip()]
    visible = cuda_visible_devices()
    if visible:
        return visible
    return [row[0] for row in nvidia_smi("index") or []]


def pin_worker(config) -> str | None:
    """Set this worker's CUDA_VISIBLE_DEVICES from what the controller sent; return it."""
    gpus = config.workerinput.get("qg_gpus") or []
    if not gpus:
        return None
    index = int(config.workerinput["workerid"].lstrip("gw") or 0)
    workers = int(config.workerinput.get("workercount") or 1)
    sharing = sum(1 for other in range(workers) if other % len(gpus) == index % len(gpus))
    if sharing > 1:
        os.environ[GPU_SHARED_BY_ENV] = str(sharing)
    else:
        os.environ.pop(GPU_SHARED_BY_ENV, None)
    os.environ["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
    return os.environ["CUDA_VISIBLE_DEVICES"]
