"""The LoRA path (quantgate.paths.lora): its synthetic LoRA is deterministic and in the format
diffusers reads; on the gate, a LoRA that is loaded but silently not applied fails the test that
says so, and an unchanged one passes and is recorded."""

import pytest

from quantgate.matrix import build_cases, load_matrix, load_models
from quantgate.paths.lora import RANK, TARGETS, lora_state_dict

from .conftest import REPO


def test_every_configuration_but_the_reference_takes_the_lora_path_after_compile_before_the_round_trip():
    models = load_models(REPO / "fixtures")
    for case in build_cases(models, load_matrix(REPO / "fixtures", models)):
        if case.config.is_reference:
            assert case.config.paths == (), case.id
        else:
            assert case.config.paths[1] == "lora" and "lora" not in case.config.paths[2:], case.id


def test_the_synthetic_lora_is_the_same_every_time_and_in_diffusers_layout():
    import torch

    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.to_q, self.to_k, self.to_v = (torch.nn.Linear(8, 8) for _ in range(3))
            self.to_out = torch.nn.ModuleList([torch.nn.Linear(8, 12)])
            self.proj = torch.nn.Linear(8, 8)              # not an attention projection: no LoRA

    tree = torch.nn.ModuleDict({"block": Attention()})
    first, again = lora_state_dict(tree, "transformer", 0.5), lora_state_dict(tree, "transformer", 0.5)
    assert sorted(first) == sorted(f"transformer.block.{t}.lora_{ab}.weight" for t in TARGETS for ab in "AB")
    assert all(torch.equal(first[k], again[k]) for k in first)
    assert first["transformer.block.to_out.0.lora_A.weight"].shape == (RANK, 8)
    assert first["transformer.block.to_out.0.lora_B.weight"].shape == (12, RANK)
    with pytest.raises(ValueError, match="has no attention projection"):
        lora_state_dict(torch.nn.Linear(4, 4), "transformer", 0.5)


def test_a_lora_that_is_silently_not_applied_fails_with_the_figure(planted_paths):
    stdout, _, _ = planted_paths
    node = "test_lora_loads_onto_the_quantized_pipeline_and_moves_its_images[tiny-flux-torchao-int8wo-cpu]"
    assert any(line.startswith("FAILED") and node in line for line in stdout.splitlines()), stdout[-3000:]
    assert ("with the LoRA loaded the images are at SSIM 1.0000 of the fresh load's, above the" in stdout
            and "the LoRA is not applied" in stdout)
    # and its images are not BF16's with the same LoRA: the test against that baseline fails too, with the figures
    node = "test_lora_moves_the_images_as_it_moves_bf16s[tiny-flux-torchao-int8wo-cpu]"
    assert any(line.startswith("FAILED") and node in line for line in stdout.splitlines()), stdout[-3000:]
    assert "the lora path's images (lora) drifted from BF16's with the same lora (baselines lora/)" in stdout
    assert "fox-s0: SSIM 0." in stdout and "< floor" in stdout


def test_an_applied_lora_passes_and_is_recorded(planted_paths):
    stdout, records, md = planted_paths
    assert "float8wo" not in "".join(line for line in stdout.splitlines() if line.startswith("FAILED"))
    tests = {t: outcome for t, outcome in records["torchao-float8wo"]["tests"].items() if "lora" in t}
    assert set(tests.values()) == {"passed"} and len(tests) == 4, tests
    lora = records["torchao-float8wo"]["paths"]["lora"]
    assert lora["adapter_bytes"] == 81_920 and lora["unloaded_bytes"] == 0     # rank-4 A and B of every attention projection, in BF16
    assert "| tiny-flux-torchao-float8wo-cpu | 0.9" in md.split("## LoRA")[1]
    to_bf16 = lora["similarity_lora_to_bf16"]["fox-s0"]["ssim"]         # BF16 with the same LoRA: close, not equal
    assert 0.99 < to_bf16 < 1.0, to_bf16


def _fuse_floor(case_ssim_min: float | None, moved: float) -> float:
    """GateSession.lora_fused_floor for a case with image floor `case_ssim_min` whose LoRA moved its
    images to SSIM `moved`, under the shipped matrix's defaults."""
    import types

    from quantgate.gate.session import GateSession
    from quantgate.matrix import load_defaults

    gate = GateSession.__new__(GateSession)
    defaults = load_defaults(REPO / "fixtures")
    gate.defaults = lambda: defaults
    gate.expectation = lambda case: types.SimpleNamespace(ssim_min=case_ssim_min)
    gate.path_moved_ssim = lambda case, name, step: moved
    return gate.lora_fused_floor(None)


@pytest.mark.parametrize(("case_ssim_min", "moved", "fused", "passes"), [
    (0.9957, 0.78, 0.9964, True),    # int8 (tiny-sdxl bnb-int8, H200): rounds little, held near 0.99
    (0.9957, 0.78, 0.95, False),     # ... so an int8 fuse that drifts to 0.95 fails
    (0.8798, 0.7452, 0.9294, True),  # bnb fp4 (tiny-sdxl, H200): re-quantizing W + BA rounds as far as 4 bits do
    (0.8798, 0.7452, 0.7452, False),  # ... but a fuse that is not applied reads the LoRA's move, and fails
    (0.9032, 0.9364, 0.9364, False),  # bnb nf4 on tiny-sd3, whose LoRA moves little: not applied still fails
    (None, 0.60, 0.99, True),        # no image floor (the reference): the matrix's 0.99
])
def test_the_fuse_floor_passes_rounding_and_fails_a_fuse_that_is_not_applied(case_ssim_min, moved, fused, passes):
    assert (fused >= _fuse_floor(case_ssim_min, moved)) is passes
