"""The K-quant encoders: what gguf's own dequantizers read back is the input within the format's error."""

import numpy as np
import pytest

from quantgate.sources.kquants import K_TYPES, quantize_k

gguf = pytest.importorskip("gguf")
T = gguf.GGMLQuantizationType


def rel_error(x, qtype, encode=quantize_k):
    back = gguf.quants.dequantize(encode(x, qtype), qtype).reshape(x.shape)
    return np.linalg.norm(back - x) / np.linalg.norm(x)


def normal():
    return np.random.default_rng(0).standard_normal((64, 512)).astype(np.float32)


def with_outliers():
    x = normal()
    rng = np.random.default_rng(1)
    where = rng.choice(x.size, 20, replace=False)
    x.flat[where] = rng.choice([-1, 1], 20) * rng.uniform(20, 50, 20)
    return x


def uneven_sub_blocks():
    """Each 16-value sub-block of a super-block at its own magnitude (1/8 to 8): a scale stored
    in the wrong sub-block's slot shows as a large error."""
    rng = np.random.default_rng(2)
    gains = 2.0 ** rng.permutation(np.linspace(-3, 3, 16))
    return (rng.standard_normal((64, 512)) * np.tile(np.repeat(gains, 16), 2)).astype(np.float32)


# Upper bounds on the relative L2 error for (normal, outliers, uneven) data, a little above the
# errors measured with these seeds: Q2_K 0.329 0.293 0.334, Q3_K 0.156 0.135 0.156,
# Q4_K 0.078 0.097 0.088, Q5_K 0.038 0.047 0.044, Q6_K 0.019 0.028 0.019
# (gguf's Q4_0 and Q5_0 give 0.086 and 0.043 on the normal data).
BOUNDS = {
    "Q2_K": (0.35, 0.31, 0.35),
    "Q3_K": (0.17, 0.15, 0.17),
    "Q4_K": (0.085, 0.105, 0.095),
    "Q5_K": (0.042, 0.052, 0.048),
    "Q6_K": (0.021, 0.031, 0.021),
}
DATA = {"normal": normal, "outliers": with_outliers, "uneven": uneven_sub_blocks}


@pytest.mark.parametrize("data", list(DATA))
@pytest.mark.parametrize("qtype", list(BOUNDS))
def test_round_trip_is_within_the_formats_error(qtype, data):
    bound = BOUNDS[qtype][list(DATA).index(data)]
    err = rel_error(DATA[data](), T[qtype])
    assert err < bound, (qtype, data, err)


@pytest.mark.parametrize("k_type, legacy", [("Q4_K", "Q4_0"), ("Q5_K", "Q5_0")])
def test_not_clearly_worse_than_the_legacy_type_of_the_same_bits(k_type, legacy):
    x = normal()
    assert rel_error(x, T[k_type]) < 1.5 * rel_error(x, T[legacy], gguf.quants.quantize)


@pytest.mark.parametrize("qtype", K_TYPES)
@pytest.mark.parametrize("shape", [(64, 512), (3, 2, 256), (768,)])
def test_output_has_the_formats_byte_layout(qtype, shape):
    out = quantize_k(np.ones(shape, dtype=np.float32), qtype)
    assert out.dtype == np.uint8
    assert out.shape == gguf.quant_shape_to_byte_shape(shape, qtype)
    assert out.shape[-1] == shape[-1] // 256 * gguf.GGML_QUANT_SIZES[qtype][1]


@pytest.mark.parametrize("qtype", K_TYPES)
def test_all_zero_input_comes_back_as_zeros(qtype):
    back = gguf.quants.dequantize(quantize_k(np.zeros((4, 512), dtype=np.float32), qtype), qtype)
    assert np.array_equal(back, np.zeros((4, 512), dtype=np.float32))


@pytest.mark.parametrize("qtype", K_TYPES)
@pytest.mark.parametrize("value", [1.0, -0.25, 300.0])
def test_a_constant_comes_back_within_one_percent(qtype, value):
    x = np.full((2, 256), value, dtype=np.float32)
    back = gguf.quants.dequantize(quantize_k(x, qtype), qtype)
    np.testing.assert_allclose(back, x, rtol=0.01)


def test_rows_that_are_not_whole_super_blocks_are_refused():
    with pytest.raises(ValueError, match="last dimension of shape \\(4, 320\\) is not a multiple of 256"):
        quantize_k(np.zeros((4, 320), dtype=np.float32), T.Q4_K)


def test_non_k_types_are_refused():
    with pytest.raises(ValueError, match="Q4_0 is not a K-quant type"):
        quantize_k(np.zeros((4, 256), dtype=np.float32), T.Q4_0)
