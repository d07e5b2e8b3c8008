"""GGUF files of a pipeline's denoiser (a transformer, or SDXL's unet), written by the suite from its
BF16 safetensors, under the family's GGUF architecture name.

Tensors keep diffusers' key names: diffusers' single-file loading uses a file whose keys are exactly
the model's as they are (and its conversion of original FLUX key names hard-codes the full model's
width). 2-D weights whose rows fit the type's blocks are quantized with the `gguf`
package (the K types, which it can only decode, with quantgate.sources.kquants); biases and norms (1-D) are
stored as F32, as common FLUX GGUF files do (diffusers' GGUFLinear dequantizes the weight only, so
a BF16-coded bias would reach the matmul as raw bytes), and so are convolution kernels (diffusers
loads F32 and F16 tensors as plain tensors, every other type as raw bytes that only GGUFLinear
decodes); other 2-D tensors whose rows do not fit the
blocks are stored as BF16. Tensors are streamed one at a time, and the file is renamed into place only
when complete.

The tensors come from the denoiser's safetensors, or, for a synthetic build, from the generator that
built them (the same values bit for bit, so the same file): then the BF16 weights need not be on the
disk. Where the disk cannot hold the GGUF file beside a synthetic model, its BF16 denoiser is evicted
first (quantgate.sources.cache.evict) and restored when a case loads it again.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np

from quantgate.units import GIB

WRITER_VERSION = 4   # part of the file name: a changed writer never reuses an older file
                     # (4: tensors of more than 2 dimensions as F32, not BF16)


def gguf_folder(model_dir: Path, cache_root: Path) -> Path:
    """Where the GGUF files of the model in `model_dir` are kept."""
    return Path(cache_root) / "gguf" / Path(model_dir).resolve().as_posix().strip("/").replace("/", "_")


def gguf_path(model_dir: Path, quant_type: str, cache_root: Path, component: str = "transformer") -> Path:
    return gguf_folder(model_dir, cache_root) / f"{component}-{quant_type}.w{WRITER_VERSION}.gguf"


def is_valid(path: Path) -> bool:
    import gguf

    try:
        reader = gguf.GGUFReader(path)
        return len(reader.tensors) > 0
    except Exception:
        return False


def tensor_type(shape: tuple[int, ...], qtype):
    """The GGML type a tensor of this shape is stored as, for a file of type `qtype`."""
    import gguf

    if len(shape) != 2:        # biases, norms, and convolution kernels (SD3's and Wan's patch embedding,
        return gguf.GGMLQuantizationType.F32   # SDXL's UNet): F32 loads as a plain tensor, BF16 would stay raw bytes
    block, _ = gguf.GGML_QUANT_SIZES[qtype]
    if len(shape) == 2 and shape[-1] % block == 0:
        return qtype
    return gguf.GGMLQuantizationType.BF16


def quantize(data: np.ndarray, qtype) -> np.ndarray:
    """`data` encoded as `qtype`: K types by quantgate.sources.kquants, the others by the `gguf` package."""
    import gguf

    from quantgate.sources.kquants import K_TYPES, quantize_k

    if qtype in K_TYPES:
        return quantize_k(data, qtype)
    return gguf.quants.quantize(data, qtype)


class SafetensorsTensors:
    """The denoiser's tensors, read from its safetensors files."""

    def __init__(self, folder: Path):
        from safetensors import safe_open

        self.files = sorted(Path(folder).glob("*.safetensors"))
        if not self.files:
            raise FileNotFoundError(f"no safetensors files in {folder}")
        self._where = {}
        for f in self.files:
            with safe_open(f, framework="pt") as sf:
                for name in sf.keys():
                    self._where[name] = (f, tuple(sf.get_slice(name).get_shape()))

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, self._where[name][1]) for name in sorted(self._where)]

    def get(self, name: str):
        from safetensors import safe_open

        with safe_open(self._where[name][0], framework="pt") as sf:
            return sf.get_tensor(name)


class SyntheticTensors:
    """A synthetic model's denoiser tensors, drawn as its build drew them (no file read)."""

    def __init__(self, spec, component: str):
        from quantgate.sources.synthetic import component_tensors

        self.spec, self.component = spec, component
        self._tensors = dict(component_tensors(spec.pipeline_family, spec.config_dir, component))

    def shapes(self) -> list[tuple[str, tuple[int, ...]]]:
        return [(name, tuple(self._tensors[name].shape)) for name in sorted(self._tensors)]

    def get(self, name: str):
        from quantgate.sources.synthetic import synthetic_value

        return synthetic_value(name, self._tensors[name], self.component, self.spec.seed)


def file_bytes(tensors, quant_type: str) -> int:
    """The tensor data a GGUF file of `quant_type` holds for these tensors (its header aside)."""
    import gguf

    qtype = getattr(gguf.GGMLQuantizationType, quant_type)
    return sum(int(np.prod(gguf.quant_shape_to_byte_shape(shape, tensor_type(shape, qtype))))
               for _, shape in tensors.shapes())


def write_denoiser_gguf(model_dir: Path, quant_type: str, out: Path, component: str = "transformer",
                        arch: str = "flux", tensors=None) -> Path:
    """Encode the denoiser's tensors (`tensors`: SafetensorsTensors of model_dir's by default) as one
    GGUF file of architecture `arch` (tensors encoded on several threads, written in order; a
    progress bar for large models), swapped into place when complete."""
    from concurrent.futures import ThreadPoolExecutor

    import gguf
    import torch
    from tqdm.auto import tqdm

    qtype = getattr(gguf.GGMLQuantizationType, quant_type)
    plain = {gguf.GGMLQuantizationType.BF16: torch.bfloat16, gguf.GGMLQuantizationType.F32: torch.float32}
    tensors = tensors or SafetensorsTensors(Path(model_dir) / component)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", dir=out.parent)
    os.close(fd)
    try:
        writer = gguf.GGUFWriter(tmp_name, arch=arch)
        writer.add_type(gguf.GGUFType.MODEL)
        writer.add_file_type(int(qtype))
        plan = []
        for name, shape in tensors.shapes():
            ttype = tensor_type(shape, qtype)
            nbytes = gguf.quant_shape_to_byte_shape(shape, ttype)
            writer.add_tensor_info(name, nbytes, np.dtype(np.uint8), int(np.prod(nbytes)), raw_dtype=ttype)
            plan.append((name, ttype, shape))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        def encode(item):
            name, ttype, _ = item
            t = tensors.get(name)
            if ttype in plain:
                data = t.to(plain[ttype]).contiguous().view(torch.uint8).numpy()
            else:
                data = quantize(t.float().numpy(), ttype)
            return t.numel(), data.reshape(gguf.quant_shape_to_byte_shape(tuple(t.shape), ttype))

        total = sum(int(np.prod(shape)) for *_, shape in plan)
        workers = min(16, os.cpu_count() or 1)       # numpy releases the GIL while it encodes
        with ThreadPoolExecutor(max_workers=workers) as pool, \
                tqdm(total=total, unit="param", unit_scale=True, desc=f"writing {out.name}",
                     disable=total < 2**28) as bar:
            for start in range(0, len(plan), 2 * workers):         # a bounded window in flight, in order
                for count, data in pool.map(encode, plan[start:start + 2 * workers]):
                    writer.write_tensor_data(data)
                    bar.update(count)
        writer.close()
        os.replace(tmp_name, out)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)
    return out


MARGIN = GIB         # free disk a GGUF file must leave beside it


def ensure_denoiser_gguf(model_dir: Path, quant_type: str, cache_root: Path, component: str = "transformer",
                         arch: str = "flux", spec=None) -> Path:
    """The GGUF file for this model's denoiser and type, written first if missing or unreadable. A
    synthetic model (`spec`) is drawn from its generator, and where the disk is short its BF16
    denoiser is evicted first."""
    from quantgate.locks import exclusive

    path = gguf_path(model_dir, quant_type, cache_root, component)
    if path.exists() and is_valid(path):
        return path
    with exclusive(path.parent / f".{path.name}.lock", f"the GGUF file {path.name}"):
        if path.exists() and is_valid(path):     # written by another process while this one waited
            return path
        synthetic = spec is not None and spec.source == "synthetic"
        tensors = SyntheticTensors(spec, component) if synthetic else SafetensorsTensors(Path(model_dir) / component)
        _make_room(path, file_bytes(tensors, quant_type), spec if synthetic else None, cache_root, component)
        return write_denoiser_gguf(model_dir, quant_type, path, component, arch, tensors)


def _make_room(path: Path, needed: int, spec, cache_root: Path, component: str) -> None:
    """Free disk for a GGUF file of `needed` bytes: evict the synthetic model's BF16 denoiser if
    that is what it takes; else say what is short."""
    from quantgate.errors import QuantgateError
    from quantgate.sources.cache import evict, free_bytes
    from quantgate.units import gib

    free = free_bytes(path.parent)
    if free >= needed + MARGIN:
        return
    if spec is not None:
        freed = evict(spec, cache_root, component)
        print(f"quantgate: {gib(free)} free for a {gib(needed)} GGUF file: evicted the BF16 {component} of "
              f"{spec.name} ({gib(freed)}; restored when a case loads it)", flush=True)
        free = free_bytes(path.parent)
    if free < needed + MARGIN:
        raise QuantgateError(f"{path.name} needs {gib(needed)} and {gib(MARGIN)} to spare, but {gib(free)} are free "
                             f"on the disk of {path.parent}: free some, or point the cache elsewhere (--qg-cache-dir)")
