"""What the gate reads from nvidia-smi without touching CUDA in the pytest process: the GPUs' used
memory (the leak check), their compute capability (benchmark storage per class) and their indices
(a GPU per xdist worker). A stand-in nvidia-smi on PATH plays a two-GPU host."""

import os
import stat

import pytest

from quantgate import hardware
from quantgate.case import leaks
from quantgate.gate import benchmarking
from quantgate.gate import xdist as workers

FAKE = """#!/bin/sh
case "$1" in
  --query-gpu=index,uuid,memory.used) printf '0, GPU-aaa, 4\\n1, GPU-bbb, 1000\\n' ;;
  --query-gpu=compute_cap) printf '9.0\\n8.0\\n' ;;
  --query-gpu=index) printf '0\\n1\\n' ;;
  --query-gpu=driver_version) printf '580.159.04\\n580.159.04\\n' ;;
  *) exit 6 ;;
esac
"""


@pytest.fixture
def two_gpu_host(tmp_path, monkeypatch):
    smi = tmp_path / "nvidia-smi"
    smi.write_text(FAKE)
    smi.chmod(smi.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    for name in ("CUDA_VISIBLE_DEVICES", "QG_GPUS", hardware.GPU_SHARED_BY_ENV):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


def test_used_memory_counts_only_the_gpus_this_process_may_use(two_gpu_host):
    assert leaks.gpu_used_bytes() == (4 + 1000) * 2**20
    two_gpu_host.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert leaks.gpu_used_bytes() == 1000 * 2**20
    two_gpu_host.setenv("CUDA_VISIBLE_DEVICES", "GPU-aaa")
    assert leaks.gpu_used_bytes() == 4 * 2**20


def test_the_hardware_class_is_the_first_visible_gpus(two_gpu_host):
    assert benchmarking.machine_hardware_class() == "cuda-sm90"
    two_gpu_host.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert benchmarking.machine_hardware_class() == "cuda-sm80"


def test_workers_are_spread_over_qg_gpus_else_the_visible_gpus_else_every_gpu(two_gpu_host):
    assert workers.host_gpus() == ["0", "1"]
    two_gpu_host.setenv("CUDA_VISIBLE_DEVICES", "1")
    assert workers.host_gpus() == ["1"]
    two_gpu_host.setenv("QG_GPUS", "3, 2")
    assert workers.host_gpus() == ["3", "2"]


class _Worker:
    def __init__(self, index: int, count: int, gpus: list[str]):
        self.workerinput = {"workerid": f"gw{index}", "workercount": count, "qg_gpus": gpus}


@pytest.mark.parametrize("count, gpus, pinned, shared_by", [
    (2, ["0", "1"], ["0", "1"], [None, None]),          # a GPU each: timings and used memory are its own
    (4, ["0"], ["0"] * 4, ["4"] * 4),                   # four workers on one GPU
    (3, ["0", "1"], ["0", "1", "0"], ["2", None, "2"]),  # gw0 and gw2 share GPU 0, gw1 has GPU 1 alone
])
def test_each_worker_knows_how_many_workers_share_its_gpu(two_gpu_host, count, gpus, pinned, shared_by):
    seen = []
    for index in range(count):
        two_gpu_host.delenv("CUDA_VISIBLE_DEVICES", raising=False)
        two_gpu_host.setenv(hardware.GPU_SHARED_BY_ENV, "9")      # left over from elsewhere: replaced
        workers.pin_worker(_Worker(index, count, gpus))
        seen.append((os.environ["CUDA_VISIBLE_DEVICES"], os.environ.get(hardware.GPU_SHARED_BY_ENV)))
        assert hardware.gpu_shared_by() == int(shared_by[index] or 1)
    assert seen == list(zip(pinned, shared_by))


def test_the_driver_is_read_from_the_first_gpu(two_gpu_host):
    assert hardware._nvidia_driver() == "580.159.04"


def test_without_nvidia_smi_nothing_is_claimed(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))          # an empty folder: no nvidia-smi
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("QG_GPUS", raising=False)
    assert hardware.nvidia_smi("index") is None
    assert leaks.gpu_used_bytes() is None
    assert workers.host_gpus() == []
    assert benchmarking.machine_hardware_class().startswith("cpu-")
