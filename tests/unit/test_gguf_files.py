"""GGUF files written by the suite: the right types, values within the format's error, atomic."""

import numpy as np
import pytest
from safetensors.torch import load_file

from quantgate.errors import QuantgateError
from quantgate.matrix import load_models
from quantgate.sources.cache import ensure_synthetic
from quantgate.sources.gguf_files import ensure_denoiser_gguf, gguf_path, is_valid, write_denoiser_gguf

from .conftest import REPO

gguf = pytest.importorskip("gguf")


@pytest.fixture(scope="module")
def built(shared_cache):
    return ensure_synthetic(load_models(REPO / "fixtures")["tiny-flux"], shared_cache)


# K types: the largest error over the tensors, measured, was 0.019 (Q6_K), 0.038 (Q5_K), 0.079 (Q4_K),
# 0.156 (Q3_K) and 0.330 (Q2_K).
@pytest.mark.parametrize("qtype, rel_error", [
    ("Q8_0", 0.01), ("Q5_1", 0.05), ("Q4_0", 0.12),
    ("Q6_K", 0.021), ("Q5_K", 0.042), ("Q4_K", 0.085), ("Q3_K", 0.17), ("Q2_K", 0.35)])
def test_round_trip_is_within_the_formats_error(built, tmp_path, qtype, rel_error):
    path = write_denoiser_gguf(built, qtype, tmp_path / f"t-{qtype}.gguf")
    original = load_file(built / "transformer" / "diffusion_pytorch_model.safetensors")
    reader = gguf.GGUFReader(path)
    assert {t.name for t in reader.tensors} == set(original)
    block, _ = gguf.GGML_QUANT_SIZES[getattr(gguf.GGMLQuantizationType, qtype)]
    quantized = 0
    for t in reader.tensors:
        ref = original[t.name].float().numpy()
        if t.tensor_type == getattr(gguf.GGMLQuantizationType, qtype):
            quantized += 1
            back = gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape)
            err = np.linalg.norm(back - ref) / np.linalg.norm(ref)
            assert err < rel_error, (t.name, err)
        elif ref.ndim == 1:
            assert t.tensor_type == gguf.GGMLQuantizationType.F32
            assert np.array_equal(np.asarray(t.data).reshape(ref.shape), ref)
        else:   # rows that are not whole blocks (64 or 128 values for the K types' 256)
            assert ref.shape[-1] % block != 0, t.name
            assert t.tensor_type == gguf.GGMLQuantizationType.BF16, t.name
            assert np.array_equal(gguf.quants.dequantize(t.data, t.tensor_type).reshape(ref.shape), ref)
    assert quantized == sum(1 for v in original.values() if v.ndim == 2 and v.shape[-1] % block == 0)


def test_truncated_file_is_detected_and_rewritten(built, tmp_path):
    path = ensure_denoiser_gguf(built, "Q8_0", tmp_path)
    assert path == gguf_path(built, "Q8_0", tmp_path)
    good = path.read_bytes()
    path.write_bytes(good[: len(good) // 3])
    assert not is_valid(path)
    ensure_denoiser_gguf(built, "Q8_0", tmp_path)
    assert path.read_bytes() == good


def test_a_failed_write_leaves_no_file(built, tmp_path, monkeypatch):
    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(gguf.quants, "quantize", boom)
    out = tmp_path / "x.gguf"
    with pytest.raises(RuntimeError, match="disk full"):
        write_denoiser_gguf(built, "Q4_0", out)
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------- a synthetic model's GGUF files on a small disk
@pytest.fixture
def sdxl(tmp_path):
    """tiny-sdxl (a UNet: convolution kernels as well as Linear weights) built into a cache of its own."""
    spec = load_models(REPO / "fixtures")["tiny-sdxl"]
    return spec, tmp_path / "cache", ensure_synthetic(spec, tmp_path / "cache")


@pytest.mark.parametrize("qtype", ["Q4_0", "Q4_K"])
def test_a_synthetic_models_gguf_drawn_from_its_generator_is_the_file_from_its_weights(sdxl, tmp_path, qtype):
    spec, cache, built = sdxl
    from_weights = write_denoiser_gguf(built, qtype, tmp_path / "weights.gguf", "unet", "sdxl")
    drawn = ensure_denoiser_gguf(built, qtype, cache, "unet", "sdxl", spec=spec)
    assert drawn.read_bytes() == from_weights.read_bytes()


def test_a_short_disk_evicts_the_bf16_denoiser_and_a_case_that_loads_it_restores_it(sdxl, monkeypatch, capsys):
    from quantgate.sources import cache as cache_module
    from quantgate.sources.checkpoints import identity

    spec, cache, built = sdxl
    weights = built / "unet" / "diffusion_pytorch_model.safetensors"
    original, before = weights.read_bytes(), identity(spec, built)

    def free(path):           # 1 GiB free, too little beside the 1 GiB margin; 3 GiB once the UNet is gone
        return 2**30 + (0 if weights.exists() else 2 * 2**30)

    monkeypatch.setattr(cache_module, "free_bytes", free)
    path = ensure_denoiser_gguf(built, "Q8_0", cache, "unet", "sdxl", spec=spec)
    assert is_valid(path) and not weights.exists()
    assert "evicted the BF16 unet of tiny-sdxl" in capsys.readouterr().out
    assert ensure_synthetic(spec, cache, without=("unet",)) == built and not weights.exists()   # the GGUF case's view
    assert ensure_synthetic(spec, cache) == built                                           # any other case's
    assert weights.read_bytes() == original and identity(spec, built) == before


def test_with_no_room_even_after_eviction_the_error_gives_the_sizes(sdxl, monkeypatch):
    from quantgate.sources import cache as cache_module

    spec, cache, built = sdxl
    monkeypatch.setattr(cache_module, "free_bytes", lambda path: 2**10)
    with pytest.raises(QuantgateError, match=r"unet-Q8_0\.w\d\.gguf needs .* MiB and 1\.00 GiB to spare, but "
                                             r"0\.00 MiB are free .*--qg-cache-dir"):
        ensure_denoiser_gguf(built, "Q8_0", cache, "unet", "sdxl", spec=spec)
    assert not gguf_path(built, "Q8_0", cache, "unet").exists()
    # the evicted weights are restored only where they fit, and the message says what to delete
    with pytest.raises(QuantgateError, match=r"the unet of tiny-sdxl was evicted .* must be written again .* "
                                             r"delete GGUF files under"):
        ensure_synthetic(spec, cache)
    monkeypatch.undo()
    assert ensure_synthetic(spec, cache) == built and (built / "unet" / "diffusion_pytorch_model.safetensors").exists()


def test_restoring_the_denoiser_deletes_the_models_gguf_files_where_both_do_not_fit(sdxl, monkeypatch, capsys):
    from quantgate.sources import cache as cache_module

    spec, cache, built = sdxl
    weights = built / "unet" / "diffusion_pytorch_model.safetensors"
    size = weights.stat().st_size
    monkeypatch.setattr(cache_module, "free_bytes", lambda path: 0 if weights.exists() else 2**40)
    gguf_file = ensure_denoiser_gguf(built, "Q4_0", cache, "unet", "sdxl", spec=spec)   # evicts the UNet
    assert not weights.exists()
    # room for the UNet only once the GGUF file is gone: a disk of the GGUF file's and the UNet's size
    monkeypatch.setattr(cache_module, "free_bytes", lambda path: size if not gguf_file.exists() else size - 1)
    assert ensure_synthetic(spec, cache) == built and weights.exists() and not gguf_file.exists()
    assert f"deleted {gguf_file.name} of tiny-sdxl to restore its unet" in capsys.readouterr().out
