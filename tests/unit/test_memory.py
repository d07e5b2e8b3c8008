"""Real bytes of quantized weights, per backend, against sizes worked out from each format.

A Linear of 512 outputs x 256 inputs holds 131,072 weights: 262,144 bytes in BF16.
"""

import pytest
import torch

from quantgate.backends import backend
from quantgate.case.memory import tensor_bytes, weight_bytes

OUT, IN = 512, 256
N = OUT * IN
BF16_BYTES = 2 * N


def _linear():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(IN, OUT, bias=False)).to(torch.bfloat16)


def test_plain_bf16_counts_two_bytes_per_weight():
    m = _linear()
    wb = weight_bytes(m)
    assert (wb.bytes, wb.tensors, wb.quantized_tensors) == (BF16_BYTES, 1, 0)


def test_shared_weights_are_counted_once():
    m = torch.nn.Sequential(torch.nn.Linear(IN, IN, bias=False), torch.nn.Linear(IN, IN, bias=False))
    m[1].weight = m[0].weight
    assert weight_bytes(m).bytes == IN * IN * 4


def test_torchao_int8_weight_only_counts_int8_data_and_row_scales():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    m = _linear()
    quantize_(m, Int8WeightOnlyConfig())
    w = m[0].weight
    assert type(w).__name__ != "Parameter"
    # torchao 0.18 Int8Tensor: int8 weights, a float32 scale and an int8 zero point per output row
    assert tensor_bytes(w) == N + OUT * 4 + OUT * 1


def test_torchao_subclass_fools_the_logical_size():
    pytest.importorskip("torchao")
    from torchao.quantization import Int8WeightOnlyConfig, quantize_

    m = _linear()
    quantize_(m, Int8WeightOnlyConfig())
    w = m[0].weight
    logical = w.numel() * w.element_size()        # what get_memory_footprint() adds up
    assert logical == BF16_BYTES
    assert tensor_bytes(w) < 0.51 * logical


def test_quanto_int4_counts_packed_nibbles_scales_and_shifts():
    pytest.importorskip("optimum.quanto")
    from optimum.quanto import freeze, qint4, quantize

    m = _linear()
    quantize(m, weights=qint4)
    freeze(m)
    w = m[0].weight
    inner, _ = w.__tensor_flatten__()
    group = 128                                   # quanto's int4 group size
    groups = N // group
    # two weights per byte, a BF16 scale and a BF16 shift per group
    assert tensor_bytes(w) == N // 2 + groups * 2 + groups * 2, inner


def test_quanto_int8_counts_int8_data_and_row_scales():
    pytest.importorskip("optimum.quanto")
    from optimum.quanto import freeze, qint8, quantize

    m = _linear()
    quantize(m, weights=qint8)
    freeze(m)
    assert tensor_bytes(m[0].weight) == N + OUT * 2


def test_bitsandbytes_nf4_counts_nibbles_and_quantization_state():
    bnb = pytest.importorskip("bitsandbytes")
    w = _linear()[0].weight.data
    p = bnb.nn.Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True)._quantize("cpu")
    state = p.quant_state
    blocks = N // state.blocksize                      # 64-weight blocks
    nested_blocks = -(-blocks // state.state2.blocksize)
    expected = (N // 2                                 # packed 4-bit weights
                + blocks                               # absmax, itself quantized to 8 bits
                + state.code.numel() * 4               # the NF4 code book (float32)
                + state.offset.numel() * 4             # nested-quantization offset
                + nested_blocks * 4                    # absmax of the absmax (float32)
                + state.state2.code.numel() * 4)       # 8-bit code book of the nested level
    bnb_rules = backend("bitsandbytes")              # the state is counted by the bitsandbytes backend's rules
    assert tensor_bytes(p, rules=bnb_rules) == expected
    assert tensor_bytes(p, rules=bnb_rules) < 0.3 * BF16_BYTES
    assert tensor_bytes(p) == N // 2                   # without them: the packed weights alone


def test_bitsandbytes_int8_counts_data_and_row_scales():
    bnb = pytest.importorskip("bitsandbytes")
    m = bnb.nn.Linear8bitLt(IN, OUT, bias=False, has_fp16_weights=False)
    m.load_state_dict(_linear()[0].float().state_dict())
    m = m.to("cpu")
    assert tensor_bytes(m.weight, rules=backend("bitsandbytes")) == N + OUT * 4    # int8 weights + float32 SCB per row



def test_bitsandbytes_int8_counts_the_same_after_its_first_call_moved_its_row_scales():
    """Linear8bitLt's first forward call moves SCB off its weight onto the layer (init_8bit_state):
    the H200 round trip counted its reload after its images, and found 4 bytes per row missing."""
    bnb = pytest.importorskip("bitsandbytes")
    m = bnb.nn.Linear8bitLt(IN, OUT, bias=False, has_fp16_weights=False)
    m.load_state_dict(_linear()[0].float().state_dict())
    m = m.to("cpu")
    rules = backend("bitsandbytes")
    before = weight_bytes(m, rules).bytes
    m(torch.randn(2, IN))
    assert m.weight.SCB is None and m.state.SCB is not None     # moved, as in bitsandbytes 0.50
    assert weight_bytes(m, rules).bytes == before == N + OUT * 4


def test_gguf_parameter_counts_its_packed_blocks():
    gguf = pytest.importorskip("gguf")
    from diffusers.quantizers.gguf.utils import GGUFParameter

    w = _linear()[0].weight.detach().float().numpy()
    packed = gguf.quants.quantize(w, gguf.GGMLQuantizationType.Q4_0)
    p = GGUFParameter(torch.from_numpy(packed), quant_type=gguf.GGMLQuantizationType.Q4_0)
    # Q4_0: blocks of 32 weights in 18 bytes (16 bytes of nibbles + an FP16 scale)
    assert tensor_bytes(p) == N // 32 * 18


def test_meta_tensors_hold_no_bytes():
    with torch.device("meta"):
        m = torch.nn.Linear(IN, OUT)
    assert weight_bytes(m).bytes == 0
