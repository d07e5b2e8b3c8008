"""Images: quantized pipelines stay close to the BF16 baselines, and BF16 itself does not drift.

SSIM (scikit-image, Gaussian weights, sigma 1.5) and PSNR of each image of the model's prompts and
seeds against the stored BF16 baseline; a video is judged frame by frame (the mean, and the worst
frame) and by its change between consecutive frames against the baseline's. Floors per
configuration and hardware class come from fixtures/expectations/<model>.toml.
"""


def _similarity(case, reference, image):
    from quantgate.families import unstrip
    from quantgate.metrics import compare, compare_video

    frames = case.model.frames
    if frames == 1:
        return compare(reference, image)
    return compare_video(unstrip(reference, frames), unstrip(image, frames))


def _problems(key, sim, expected, saved) -> list[str]:
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


def _judge(qg, case):
    from quantgate.run import image_key

    record = qg.load(case)
    images = qg.images(case)
    measured = {}
    for prompt, seed in case.model.images():
        key = image_key(prompt.id, seed)
        sim = _similarity(case, qg.baseline(case, prompt, seed), images[key])
        record.similarity[key] = sim.as_dict()
        measured[key] = (sim, qg.save_image(case, key, images[key]))
    expected = qg.expectation(case)
    problems = [p for key, (sim, saved) in measured.items() for p in _problems(key, sim, expected, saved)]
    assert not problems, "image drifted from the BF16 baseline:\n  " + "\n  ".join(problems)


def test_bf16_reproduces_its_baseline(qg, qg_reference_case):
    _judge(qg, qg_reference_case)


def test_quantized_image_close_to_bf16_baseline(qg, qg_quantized_case):
    _judge(qg, qg_quantized_case)
