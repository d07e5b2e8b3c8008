"""Image similarity: SSIM (scikit-image) and PSNR, on 8-bit RGB images; for a video, per frame (the
mean and the worst frame) and a temporal check that needs no learned model: the change between
consecutive frames, held against the baseline's."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

SSIM_MIN_SIDE = 11   # the Gaussian window (sigma 1.5, truncate 3.5) spans 11 pixels


def _db(value: float) -> float | None:
    return None if math.isinf(value) else value


@dataclass(frozen=True)
class Similarity:
    ssim: float
    psnr: float       # dB; inf for identical images
    frames: int = 1
    ssim_worst: float | None = None      # a video's worst frame
    psnr_worst: float | None = None
    temporal_ratio: float | None = None  # mean change between consecutive frames, over the baseline's

    def as_dict(self) -> dict:
        out = {"ssim": self.ssim, "psnr": _db(self.psnr)}
        if self.frames > 1:
            out.update(frames=self.frames, ssim_worst=self.ssim_worst, psnr_worst=_db(self.psnr_worst),
                       temporal_ratio=self.temporal_ratio)
        return out


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


def frame_change(frames: np.ndarray) -> np.ndarray:
    """The mean absolute change (0-255) between each pair of consecutive frames of (F, H, W, 3)."""
    f = frames.astype(np.float64)
    return np.abs(np.diff(f, axis=0)).mean(axis=(1, 2, 3))


def compare_video(reference: np.ndarray, video: np.ndarray) -> Similarity:
    """Per-frame SSIM and PSNR of `video` against `reference` (both (F, H, W, 3) uint8): their means
    and worst frames, and the ratio of the video's mean consecutive-frame change to the reference's
    (1 where motion is kept; above 1: flicker or noise; below: frozen frames)."""
    if reference.shape != video.shape:
        raise ValueError(f"video shape {video.shape} differs from the reference's {reference.shape}")
    if reference.ndim != 4 or reference.shape[0] < 2:
        raise ValueError(f"a video must be (frames, height, width, 3) with at least 2 frames, got {reference.shape}")
    per_frame = [compare(r, v) for r, v in zip(reference, video)]
    ssims = [s.ssim for s in per_frame]
    psnrs = [s.psnr for s in per_frame]
    base = float(frame_change(reference).mean())
    moved = float(frame_change(video).mean())
    ratio = moved / base if base > 0 else (1.0 if moved == 0 else math.inf)
    return Similarity(ssim=float(np.mean(ssims)), psnr=float(np.mean(psnrs)), frames=len(per_frame),
                      ssim_worst=float(min(ssims)), psnr_worst=float(min(psnrs)), temporal_ratio=ratio)
