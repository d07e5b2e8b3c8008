"""Weights: every quantized component really shrank, and stays under its ceiling.

Bytes are counted from the storages the weights hold (quantgate.case.memory), never from
get_memory_footprint(), which reports torchao and quanto weights at their unquantized size.
"""

import pytest


def test_quantization_takes_effect(qg, qg_quantized_case):
    """Each quantized component shrank under shrink_ratio_max of its BF16 bytes, and holds tensors
    that its backend's rule (quantgate.backends: Backend.is_quantized) calls quantized."""
    record = qg.load(qg_quantized_case)
    shrink_max = qg.defaults()["shrink_ratio_max"]
    unshrunk: dict[str, str] = {}       # every component that did not shrink, not only the first
    for component in qg_quantized_case.components:
        held = record.weights[component]["bytes"]
        reference = record.reference_bytes.get(component)
        if not reference:
            pytest.fail(f"no BF16 reference bytes for {component}: the reference case did not load", pytrace=False)
        ratio = held / reference
        quantized = record.weights[component]["quantized_tensors"]      # by the backend's rule (Backend.is_quantized)
        if ratio > shrink_max or not quantized:
            unshrunk[component] = (f"it holds {held:,} bytes, {ratio:.1%} of its {reference:,} BF16 bytes; "
                                   f"{quantized} of {record.weights[component]['tensors']} tensors are quantized")
    assert not unshrunk, (f"quantization did not take effect on {', '.join(unshrunk)} (limit {shrink_max:.0%} of "
                          "BF16's bytes): " + "; ".join(f"{c}: {why}" for c, why in unshrunk.items()))


def test_weight_bytes_within_ceiling(qg, qg_case):
    record = qg.load(qg_case)
    expected = qg.expectation(qg_case)
    held = record.judged_bytes()
    what = "+".join(qg_case.components) or "the whole pipeline"
    if expected.weight_bytes_max is not None:
        assert held <= expected.weight_bytes_max, (
            f"memory grew: {what} holds {held:,} bytes, over the ceiling of {expected.weight_bytes_max:,} "
            f"({held / expected.weight_bytes_max - 1:+.1%})")
    if expected.weight_ratio_max is not None and qg_case.components:
        ratio = record.weight_ratio()
        assert ratio is not None and ratio <= expected.weight_ratio_max, (
            f"{what} holds {ratio:.3f} of its BF16 bytes, over the expected {expected.weight_ratio_max:.3f}")


def test_peak_gpu_memory_within_ceiling(qg, qg_cuda_case):
    """Peaks of the CUDA caching allocator's reserved bytes (what the process holds on the GPU, and
    what the blog reports) while loading and while making the model's images; each case runs in a
    fresh process, so no earlier case's memory is in them."""
    record = qg.load(qg_cuda_case)
    qg.images(qg_cuda_case)
    expected = qg.expectation(qg_cuda_case)
    checks = [("load", "load_peak_reserved", expected.peak_load_bytes_max),
              ("inference", "inference_peak_reserved", expected.peak_inference_bytes_max)]
    over = [f"{phase}: peak reserved {record.memory[key]:,} bytes > ceiling {limit:,} "
            f"({record.memory[key] / limit - 1:+.1%})"
            for phase, key, limit in checks if limit is not None and record.memory[key] > limit]
    assert not over, "GPU memory grew:\n  " + "\n  ".join(over)
