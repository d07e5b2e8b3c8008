"""Latency of the denoising call, tracked with pytest-benchmark.

The timed call runs in the case's process (prompt embeddings precomputed, VAE left out, the model's
latency_steps) and synchronizes the device before the clock stops; the round trip to that process is
inside the timing. Compare runs with pytest-benchmark's --benchmark-compare; no wall-clock limit is
asserted here, since a timed unit test is no performance claim. What is gated is each configuration's
step time as a ratio to BF16's in the same session, where expectations give a ceiling measured on that
hardware (on a CPU: that CPU class), and not where pytest-xdist workers share one GPU. Where the
matrix's latency_yardstick names the device, each timed call of a case follows one of its BF16
reference, timed in a second process kept open beside it, so a neighbour that comes and goes slows
both alike.
"""

import pytest

from quantgate.units import distinct_digits


def test_denoise_latency(qg, qg_case, benchmark):
    record = qg.load(qg_case)
    qg.denoise(qg_case, record=False)        # warm-up: first-call allocations, kernel selection
    rounds = qg.latency_rounds(qg_case)
    beside = qg.reference_beside(qg_case)    # before each timed call: one call of the BF16 reference
    benchmark.extra_info.update({
        "case": qg_case.id, "hardware": record.hardware, "cpu_class": record.environment.get("cpu_class"),
        "steps": record.steps, "height": qg_case.model.height, "width": qg_case.model.width,
        "backend": qg_case.config.backend})
    timed_before = len(record.denoise_s)
    benchmark.pedantic(qg.denoise, args=(qg_case,), setup=beside, rounds=rounds, iterations=1, warmup_rounds=0)
    if benchmark.disabled:        # --benchmark-disable runs the call once: the ratio to BF16 needs them all
        for _ in range(rounds - 1):
            if beside is not None:
                beside()
            qg.denoise(qg_case)
    timed = record.denoise_s[timed_before:]
    assert len(timed) == rounds
    assert all(0 < s < float("inf") for s in timed), f"denoising times are not finite and positive: {timed}"
    if beside is not None:
        assert len(record.yardstick_s) == rounds, f"the reference was timed {len(record.yardstick_s)} times beside it"


def test_latency_ratio_to_bf16_within_ceiling(qg, qg_quantized_case):
    """The case's fastest denoising call over BF16's fastest, both timed in this session: a ratio
    holds on noisy runners where absolute times do not. On a CPU the calls run on one thread and the
    ratio is of their CPU time, which a busy neighbour barely moves (wall time it doubles). Gated where
    expectations give latency_ratio_max (from measured runs); elsewhere the ratio is recorded, not judged."""
    record = qg.load(qg_quantized_case)
    expected = qg.expectation(qg_quantized_case)
    measured = qg.latency_ratio(qg_quantized_case)
    shared = record.environment.get("gpu_shared_by")
    if shared:
        pytest.skip(f"latency is recorded, not gated, on a GPU shared by {shared} pytest-xdist workers: "
                    f"{measured.ratio:.2f}x BF16 (give each worker a GPU of its own, or run without -n, to gate it)")
    if expected.latency_ratio_max is None:
        where = record.environment.get("cpu_class") if qg_quantized_case.device == "cpu" else record.hardware
        pytest.skip(f"latency is recorded, not gated, on {where}: {measured.ratio:.2f}x BF16 "
                    "(no latency_ratio_max in its expectations)")
    ceiling = expected.latency_ratio_max
    first = measured
    if measured.ratio > ceiling:       # a slowdown must show again in a second window of calls
        measured = min(measured, qg.latency_ratio_again(qg_quantized_case), key=lambda m: m.ratio)
    digits = distinct_digits(measured.ratio, ceiling)      # never "3.77x, over the ceiling of 3.77x"
    assert measured.ratio <= ceiling, (
        f"denoising slowed down: {measured.describe(digits)} in this session, over the ceiling of "
        f"{ceiling:.{digits}f}x ({measured.ratio / ceiling - 1:+.1%}), in both windows of timed calls "
        f"(the first {first.ratio:.{digits}f}x)")
