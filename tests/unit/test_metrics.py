"""SSIM/PSNR helper: the metric the quality floors are written in."""

import math

import numpy as np
import pytest

from quantgate.case.metrics import compare


def _image(seed, size=64):
    return np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8)


def test_identical_images_have_ssim_one_and_infinite_psnr():
    img = _image(0)
    sim = compare(img, img.copy())
    assert sim.ssim == pytest.approx(1.0)
    assert math.isinf(sim.psnr)
    assert sim.as_dict()["psnr"] is None        # JSON has no infinity


def test_psnr_follows_its_definition():
    ref = np.full((32, 32, 3), 100, dtype=np.uint8)
    img = ref.copy()
    img[0, 0, 0] = 110                            # one error of 10 in 32*32*3 values
    mse = 100 / (32 * 32 * 3)
    assert compare(ref, img).psnr == pytest.approx(10 * math.log10(255**2 / mse))


def test_unrelated_noise_images_score_near_zero():
    assert compare(_image(0), _image(1)).ssim < 0.05


def test_small_perturbation_scores_between():
    ref = _image(0)
    noisy = np.clip(ref.astype(int) + np.random.default_rng(2).integers(-3, 4, ref.shape), 0, 255).astype(np.uint8)
    assert 0.9 < compare(ref, noisy).ssim < 1.0


def test_ssim_uses_gaussian_windows_and_population_covariance():
    from skimage.metrics import structural_similarity

    ref, img = _image(0), _image(0)
    img[10:20, 10:20] = 0
    expected = structural_similarity(ref.astype(float), img.astype(float), data_range=255, channel_axis=-1,
                                      gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
    assert compare(ref, img).ssim == pytest.approx(expected)


def test_different_shapes_are_refused():
    with pytest.raises(ValueError, match="differs from the reference"):
        compare(_image(0, 64), _image(0, 32))


def test_images_under_eleven_pixels_are_refused():
    with pytest.raises(ValueError, match="at least 11 px"):
        compare(_image(0, 10), _image(0, 10))


def test_float_images_are_refused_with_the_fix():
    with pytest.raises(TypeError, match="uint8"):
        compare(_image(0).astype(np.float32), _image(0))


def test_grayscale_images_are_refused():
    with pytest.raises(ValueError, match=r"\(height, width, 3\)"):
        compare(np.zeros((32, 32), np.uint8), np.zeros((32, 32), np.uint8))
