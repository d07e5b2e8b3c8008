"""Image similarity: SSIM (scikit-image) and PSNR, on 8-bit RGB images."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SSIM_MIN_SIDE = 11   # the Gaussian window (sigma 1.5, truncate 3.5) spans 11 pixels


@dataclass(frozen=True)
class Similarity:
    ssim: float
    psnr: float       # dB; inf for identical images

    def as_dict(self) -> dict:
        return {"ssim": self.ssim, "psnr": None if math.isinf(self.psnr) else self.psnr}


def _check_pair(reference: np.ndarray, image: np.ndarray) -> None:
    for name, arr in (("reference", reference), ("image", image)):
        if not isinstance(arr, np.ndarray):
            raise TypeError(f"{name} must be a numpy array, got {type(arr).__name__}")
        if arr.dtype != np.uint8:
            raise TypeError(f"{name} must be 8-bit (uint8), got {arr.dtype}; convert with "
                            "(x * 255).round().astype(np.uint8)")
        if arr.ndim != 3 or arr.shape[-1] != 3:
            raise ValueError(f"{name} must be an RGB image of shape (height, width, 3), got {arr.shape}")
    if reference.shape != image.shape:
        raise ValueError(f"image shape {image.shape} differs from the reference's {reference.shape}")
    if min(reference.shape[:2]) < SSIM_MIN_SIDE:
        raise ValueError(f"images of {reference.shape[1]}x{reference.shape[0]} px are too small for SSIM with "
                         f"Gaussian windows: every side must be at least {SSIM_MIN_SIDE} px")


def compare(reference: np.ndarray, image: np.ndarray) -> Similarity:
    """SSIM (Gaussian weights, sigma 1.5, population covariance) and PSNR of `image` against `reference`."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    _check_pair(reference, image)
    ref = reference.astype(np.float64)
    img = image.astype(np.float64)
    ssim = structural_similarity(ref, img, data_range=255.0, channel_axis=-1, gaussian_weights=True,
                                 sigma=1.5, use_sample_covariance=False)
    if np.array_equal(reference, image):
        psnr = math.inf
    else:
        psnr = peak_signal_noise_ratio(ref, img, data_range=255.0)
    return Similarity(float(ssim), float(psnr))


def ssim_map(reference: np.ndarray, image: np.ndarray) -> np.ndarray:
    """The local SSIM of `image` against `reference` (the same windows as `compare`), averaged over
    the RGB channels: a (height, width) array, 1 where the images agree."""
    from skimage.metrics import structural_similarity

    _check_pair(reference, image)
    _, full = structural_similarity(reference.astype(np.float64), image.astype(np.float64), data_range=255.0,
                                    channel_axis=-1, gaussian_weights=True, sigma=1.5,
                                    use_sample_covariance=False, full=True)
    return full.mean(axis=-1)
