"""GGUF files written by the suite: the right types, values within the format's error, atomic."""

import numpy as np
import pytest
from safetensors.torch import load_file

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
