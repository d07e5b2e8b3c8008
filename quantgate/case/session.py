"""Load one case's pipeline and measure it. Runs inside the case's own process (see isolation.py).

CaseSession is the whole life of a case: load (with the configuration's quantization, through
diffusers' public API), weight bytes per component, images (or a video's frames) for the model's
prompts and seeds, and timed denoising calls. What differs between pipelines (call arguments,
prompt encoding, the output's frames, the denoiser's name) is asked of the model's family
(quantgate.families).
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

import numpy as np

from quantgate.backends import backend, import_backend, pipeline_quantization_config, quantization_config
from quantgate.matrix import Case
from quantgate.units import gib


def _component_classes(model_dir: Path) -> tuple[type, dict[str, tuple[str, type]]]:
    """The pipeline class, and each component's library and class, as model_index.json names them."""
    index = json.loads((Path(model_dir) / "model_index.json").read_text())
    pipe_cls = getattr(importlib.import_module("diffusers"), index["_class_name"])
    classes = {}
    for name, value in index.items():
        if isinstance(value, list) and len(value) == 2 and value[0] in ("diffusers", "transformers"):
            classes[name] = (value[0], getattr(importlib.import_module(value[0]), value[1]))
    return pipe_cls, classes


def _sync(device: str) -> None:
    if device == "cuda":
        import torch

        torch.cuda.synchronize()


class CudaPhase:
    """Allocator figures of one phase (load, inference) on the current CUDA device: what was allocated
    when it started, and its peaks (reset when it starts) and final figures, read after a synchronize
    when it ends. A phase that follows others in one process starts from what they left (cuBLAS's
    workspace, for one): the phase's own share is after minus before."""

    def __init__(self, device: str, name: str, into: dict):
        self.device, self.name, self.into = device, name, into

    def __enter__(self):
        if self.device == "cuda":
            import torch

            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.into[f"before_{self.name}_allocated"] = torch.cuda.memory_allocated()
        return self

    def __exit__(self, *exc):
        if self.device == "cuda" and exc[0] is None:
            import torch

            torch.cuda.synchronize()
            self.into.update({
                f"{self.name}_peak_allocated": torch.cuda.max_memory_allocated(),
                f"{self.name}_peak_reserved": torch.cuda.max_memory_reserved(),
                f"after_{self.name}_allocated": torch.cuda.memory_allocated(),
                f"after_{self.name}_reserved": torch.cuda.memory_reserved(),
            })
        return False


def place(pipe, placement: str, device: str, denoiser: str = "transformer") -> None:
    """Put the pipeline where it runs: on the device, or with one of diffusers' offloading modes
    (group offload: of the denoiser, leaf level, with a CUDA stream; the rest on the device)."""
    if placement == "device":
        pipe.to(device)
    elif placement == "model_cpu_offload":
        pipe.enable_model_cpu_offload()
    elif placement == "group_offload":
        import torch

        onload = torch.device(device)
        getattr(pipe, denoiser).enable_group_offload(onload_device=onload, offload_device=torch.device("cpu"),
                                                     offload_type="leaf_level", use_stream=True)
        for name, module in pipe.components.items():
            if name != denoiser and isinstance(module, torch.nn.Module):
                module.to(onload)
    else:
        raise ValueError(f"unknown placement {placement!r}")


class CaseSession:
    def __init__(self, case: Case, model_dir: str, cache_root: str):
        self.case = case
        self.model_dir = Path(model_dir)
        self.cache_root = Path(cache_root)
        self.family = case.model.pipeline_family
        self.pipe = None
        self._embeds = None
        self.memory: dict = {}
        if case.device == "cuda":
            import torch

            torch.cuda.init()         # now: a process that cannot use CUDA fails its start, not its load
        if case.device == "cpu" and case.model.cpu_threads:
            import torch

            torch.set_num_threads(case.model.cpu_threads)

    # -------------------------------------------------------------- load
    def check_fits(self, needed_bytes: int | None) -> None:
        """Refuse, with the numbers, a CUDA case whose measured peak exceeds the free GPU memory."""
        if self.case.device != "cuda" or not needed_bytes:
            return
        import torch

        from quantgate.errors import DoesNotFit

        free, total = torch.cuda.mem_get_info()
        if needed_bytes > free:
            raise DoesNotFit(
                f"{self.case.id} does not fit: it needs {gib(needed_bytes)} of GPU memory (its "
                f"peak_inference_bytes_max in expectations), and {gib(free)} of "
                f"{gib(total)} are free on {torch.cuda.get_device_name()}")

    def load(self, needed_bytes: int | None = None) -> dict:
        import torch

        cfg = self.case.config
        self.check_fits(needed_bytes)
        import_backend(cfg.backend)
        started = time.perf_counter()
        pipe_cls, classes = _component_classes(self.model_dir)
        if pipe_cls.__name__ != self.family.pipeline:
            from quantgate.errors import QuantgateError

            raise QuantgateError(f"{self.model_dir / 'model_index.json'} holds a {pipe_cls.__name__}, but model "
                                 f"'{self.case.model.name}' is of family '{self.family.name}' ({self.family.pipeline}): "
                                 "set its family in models.toml to the checkpoint's")
        components = self.case.components
        dtype = torch.bfloat16
        with CudaPhase(self.case.device, "load", self.memory):
            if not backend(cfg.backend).quantizes_on_load:
                pipe = pipe_cls.from_pretrained(self.model_dir, dtype=dtype)
            elif cfg.route == "pipeline":
                qc = pipeline_quantization_config(cfg.backend, cfg.settings,
                                                  {name: classes[name][0] for name in components})
                # a device name as the pipeline's device_map: every component loads (and is quantized) there
                extra = {"device_map": self.case.device} if cfg.load_on == "device" else {}
                pipe = pipe_cls.from_pretrained(self.model_dir, dtype=dtype, quantization_config=qc, **extra)
            else:
                parts = {name: self._load_component(name, *classes[name], dtype) for name in components}
                pipe = pipe_cls.from_pretrained(self.model_dir, dtype=dtype, **parts)
            self.finish(pipe)
        from quantgate.case.precision import component_dtypes
        from quantgate.hardware import environment

        return {"load_s": time.perf_counter() - started, "components": self.weights(),
                "memory": dict(self.memory), "environment": environment(self.case.device),
                "dtypes": component_dtypes(pipe)}

    def finish(self, pipe) -> None:
        """What follows from_pretrained for every load of the case: the backend's own step (FP8
        layerwise casting), components kept in float32 on this device, placement; `pipe` becomes the
        session's pipeline."""
        from quantgate.case.precision import run_in_float32

        cfg = self.case.config
        backend(cfg.backend).after_load(pipe, self.case)
        for name in self.case.model.float32_components(self.case.device):
            run_in_float32(getattr(pipe, name))
        place(pipe, cfg.placement, self.case.device, self.family.denoiser)
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self._embeds = None

    def drop_pipeline(self) -> None:
        """Let the pipeline go and give its memory back (before a load that replaces it)."""
        import gc

        self.pipe, self._embeds = None, None
        gc.collect()
        if self.case.device == "cuda":
            import torch

            torch.cuda.empty_cache()

    def save_component(self, name: str, folder: Path, max_shard_size: int) -> None:
        """Save component `name` as it is now (quantized) into `folder`, as safetensors shards."""
        getattr(self.pipe, name).save_pretrained(folder, safe_serialization=True, max_shard_size=max_shard_size)

    def load_saved_component(self, name: str, folder: Path):
        """Component `name` loaded from what save_component wrote (its quantization config read back
        from its config.json), on the device where the case loads it."""
        import torch

        _, classes = _component_classes(self.model_dir)
        extra = {"device_map": {"": self.case.device}} if self.case.config.load_on == "device" else {}
        return classes[name][1].from_pretrained(folder, dtype=torch.bfloat16, **extra)

    def run_path(self, name: str, folder: str) -> dict:
        """Take regression path `name` (quantgate.paths) in this process, in scratch folder `folder`."""
        from quantgate.paths import path

        return path(name).run(self, Path(folder))

    def _load_component(self, name: str, library: str, cls: type, dtype):
        cfg = self.case.config
        qc = quantization_config(cfg.backend, cfg.settings, library)
        own = backend(cfg.backend).load_component(self, name, cls, qc, dtype)
        if own is not None:
            return own
        extra = {"device_map": {"": self.case.device}} if cfg.load_on == "device" else {}
        return cls.from_pretrained(self.model_dir, subfolder=name, quantization_config=qc, dtype=dtype, **extra)

    # -------------------------------------------------------------- measurements
    def load_saved_pipeline(self, folder: Path) -> tuple[float, dict]:
        """Let the pipeline go and load it again, its quantized components from what save_component
        wrote into `folder`/<component>: (seconds, the load phase's GPU memory figures)."""
        import torch

        self.drop_pipeline()
        pipe_cls, _ = _component_classes(self.model_dir)
        memory: dict = {}
        started = time.perf_counter()
        with CudaPhase(self.case.device, "load", memory):
            parts = {name: self.load_saved_component(name, Path(folder) / name) for name in self.case.components}
            self.finish(pipe_cls.from_pretrained(self.model_dir, dtype=torch.bfloat16, **parts))
        return time.perf_counter() - started, memory

    def weights(self) -> dict:
        """Real bytes per component: {name: {bytes, tensors, quantized_tensors}}."""
        from quantgate.case.memory import weight_bytes

        out = {}
        rules = backend(self.case.config.backend)
        for name, module in self.pipe.components.items():
            if hasattr(module, "named_parameters"):
                out[name] = weight_bytes(module, rules).as_dict()
        return out

    def _call_kwargs(self) -> dict:
        return self.family.call_kwargs(self.case.model)

    def generate(self, for_path: bool = False) -> dict:
        """8-bit RGB images for every (prompt, seed) of the model, or (`for_path`) those a regression
        path makes (ModelSpec.path_images_pairs): {key: array}; a video's frames side by side in one
        image (quantgate.families.strip)."""
        import torch

        from quantgate.families import strip

        images, seconds = {}, []
        with CudaPhase(self.case.device, "inference", self.memory):
            for prompt, seed in (self.case.model.path_images_pairs() if for_path else self.case.model.images()):
                started = time.perf_counter()
                out = self.family.output_frames(
                    self.pipe(prompt.text, generator=torch.Generator("cpu").manual_seed(seed), output_type="np",
                              **self._call_kwargs()))
                _sync(self.case.device)
                seconds.append(time.perf_counter() - started)
                if not np.isfinite(out).all():
                    raise FloatingPointError(f"image for prompt '{prompt.id}', seed {seed} has non-finite values")
                images[image_key(prompt.id, seed)] = strip((np.clip(out, 0.0, 1.0) * 255.0).round().astype(np.uint8))
        return {"images": images, "seconds": seconds, "memory": dict(self.memory)}

    def denoise(self) -> dict:
        """One denoising call of the model's timed_steps (transformer loop + scheduler, prompt
        embeddings precomputed, no VAE): {"wall_s": its seconds, the device synchronized before the
        clock is read, "cpu_s": the CPU time this process spent in it}."""
        cpu_started = time.process_time()
        wall = self._denoise()
        return {"wall_s": wall, "cpu_s": time.process_time() - cpu_started}

    def _denoise(self) -> float:
        import torch

        if self._embeds is None:
            with torch.no_grad():
                self._embeds = self.family.encode(self.pipe, self.case.model, self.case.device)
        _sync(self.case.device)
        started = time.perf_counter()
        self.pipe(**self._embeds, output_type="latent",
                  generator=torch.Generator("cpu").manual_seed(self.case.model.seeds[0]),
                  **self.family.timed_kwargs(self.case.model))
        _sync(self.case.device)
        return time.perf_counter() - started

    def ping(self) -> str:
        return "pong"


DEFAULT_SESSION = "quantgate.case.session:CaseSession"


def session_class(factory: str) -> type:
    """The class named 'module:Class' that runs a case: CaseSession or a subclass of it, so a
    project can gate its own pipelines with its own loading code."""
    module, _, name = factory.partition(":")
    if not module or not name:
        raise ValueError(f"case session {factory!r} must be written as 'module:Class'")
    cls = getattr(importlib.import_module(module), name, None)
    if not (isinstance(cls, type) and issubclass(cls, CaseSession)):
        raise TypeError(f"case session {factory!r} is not a subclass of quantgate.case.session.CaseSession")
    return cls


def image_key(prompt_id: str, seed: int) -> str:
    return f"{prompt_id}-s{seed}"
