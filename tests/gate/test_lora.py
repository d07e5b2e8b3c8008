"""LoRA on the quantized pipeline (quantgate.paths.lora): a synthetic LoRA loads onto it and moves
its images; at weight 0, and once unloaded, the fresh load's images come back; fusing and unfusing
work. Its tests run after the case's other tests and carry the marker `lora`."""

import pytest

pytestmark = pytest.mark.lora


def test_lora_loads_onto_the_quantized_pipeline_and_moves_its_images(qg, qg_lora_case):
    moved = qg.path_moved_ssim(qg_lora_case, "lora", "lora")
    ceiling = qg.defaults()["lora_moved_ssim_max"]
    assert moved <= ceiling, (
        f"with the LoRA loaded the images are at SSIM {moved:.4f} of the fresh load's, above the {ceiling} a "
        "LoRA that is applied moves them below (matrix.toml lora_moved_ssim_max): the LoRA is not applied")


def test_lora_moves_the_images_as_it_moves_bf16s(qg, qg_lora_case):
    qg.check_path_images_against_baseline(qg_lora_case, "lora", "lora", variant="lora")


def test_lora_at_weight_zero_and_unloaded_gives_the_fresh_images_back(qg, qg_lora_case):
    qg.check_path_images(qg_lora_case, "lora", "weight_zero")
    qg.check_path_images(qg_lora_case, "lora", "unloaded")


def test_lora_fuses_into_the_weights_and_unfuses(qg, qg_lora_case):
    errors = qg.take_path(qg_lora_case, "lora")["errors"]
    assert "fuse" not in errors, f"fuse_lora/unfuse_lora failed: {errors.get('fuse')}"
    floor = qg.lora_fused_floor(qg_lora_case)     # fusing rounds W + BA into the weights' own format
    qg.check_path_images(qg_lora_case, "lora", "fused", against="lora", ssim_min=floor)
    qg.check_path_images(qg_lora_case, "lora", "unfused", against="lora", ssim_min=floor)
    qg.check_path_images(qg_lora_case, "lora", "unfused_unloaded", ssim_min=floor)   # the base weights came back
