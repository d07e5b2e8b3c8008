"""Images: quantized pipelines stay close to the BF16 baselines, and BF16 itself does not drift.

SSIM (scikit-image, Gaussian weights, sigma 1.5) and PSNR of each image of the model's prompts and
seeds against the stored BF16 baseline; floors per configuration and hardware class come from
fixtures/expectations/<model>.toml.
"""


def _judge(qg, case):
    from quantgate.metrics import compare
    from quantgate.run import image_key

    record = qg.load(case)
    images = qg.images(case)
    measured = {}
    for prompt, seed in case.model.images():
        key = image_key(prompt.id, seed)
        sim = compare(qg.baseline(case, prompt, seed), images[key])
        record.similarity[key] = sim.as_dict()
        measured[key] = (sim, qg.save_image(case, key, images[key]))
    expected = qg.expectation(case)
    problems = []
    for key, (sim, saved) in measured.items():
        if expected.ssim_min is not None and sim.ssim < expected.ssim_min:
            problems.append(f"{key}: SSIM {sim.ssim:.4f} < floor {expected.ssim_min:.4f} (image: {saved})")
        if expected.psnr_min is not None and sim.psnr < expected.psnr_min:
            problems.append(f"{key}: PSNR {sim.psnr:.2f} dB < floor {expected.psnr_min:.2f} dB (image: {saved})")
    assert not problems, "image drifted from the BF16 baseline:\n  " + "\n  ".join(problems)


def test_bf16_reproduces_its_baseline(qg, qg_reference_case):
    _judge(qg, qg_reference_case)


def test_quantized_image_close_to_bf16_baseline(qg, qg_quantized_case):
    _judge(qg, qg_quantized_case)
