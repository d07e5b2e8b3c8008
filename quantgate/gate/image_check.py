"""The image check: a case's images against its stored BF16 baselines, judged by its expectations.

SSIM (scikit-image, Gaussian weights, sigma 1.5) and PSNR of each image of the model's prompts and
seeds; a video frame by frame (the mean, and the worst frame) and by its change between consecutive
frames against the baseline's. `qg.check_images(case)` runs it, records every figure in the case's
record (so results, compare and the report see a user's own image tests too) and fails the test
with every floor that was crossed.
"""

from __future__ import annotations

from pathlib import Path

from quantgate.case.metrics import Similarity, compare, compare_video
from quantgate.families import unstrip
from quantgate.matrix import Case, Expectation


def similarity(case: Case, reference, image) -> Similarity:
    """`image` against its baseline `reference` (a video's frames side by side, unstripped here)."""
    frames = case.model.frames
    if frames == 1:
        return compare(reference, image)
    return compare_video(unstrip(reference, frames), unstrip(image, frames))


def problems(key: str, sim: Similarity, expected: Expectation, saved: Path) -> list[str]:
    """Every floor or ceiling of `expected` that `sim` crosses, each a line naming the saved image."""
    out = []
    checks = [("mean SSIM" if sim.frames > 1 else "SSIM", sim.ssim, expected.ssim_min, "{:.4f}", ""),
              ("mean PSNR" if sim.frames > 1 else "PSNR", sim.psnr, expected.psnr_min, "{:.2f}", " dB")]
    if sim.frames > 1:
        checks += [("worst frame's SSIM", sim.ssim_worst, expected.ssim_frame_min, "{:.4f}", ""),
                   ("worst frame's PSNR", sim.psnr_worst, expected.psnr_frame_min, "{:.2f}", " dB")]
    for label, value, floor, fmt, unit in checks:
        if floor is not None and value < floor:
            out.append(f"{key}: {label} {fmt.format(value)}{unit} < floor {fmt.format(floor)}{unit} (image: {saved})")
    ratio = sim.temporal_ratio
    if ratio is not None and expected.temporal_ratio_max is not None and ratio > expected.temporal_ratio_max:
        out.append(f"{key}: frames change {ratio:.3f}x as much from one to the next as the baseline's, over the "
                   f"ceiling of {expected.temporal_ratio_max:.3f}x (flicker or noise; video: {saved})")
    if ratio is not None and expected.temporal_ratio_min is not None and ratio < expected.temporal_ratio_min:
        out.append(f"{key}: frames change {ratio:.3f}x as much from one to the next as the baseline's, under the "
                   f"floor of {expected.temporal_ratio_min:.3f}x (frozen motion; video: {saved})")
    return out
