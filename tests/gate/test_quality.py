"""Images: quantized pipelines stay close to the BF16 baselines, and BF16 itself does not drift.

`qg.check_images` (quantgate.gate.image_check) holds the check: SSIM and PSNR of each image of the
model's prompts and seeds against the stored BF16 baseline; a video frame by frame (the mean, and
the worst frame) and by its change between consecutive frames against the baseline's. Floors per
configuration and hardware class come from fixtures/expectations/<model>.toml.
"""


def test_bf16_reproduces_its_baseline(qg, qg_reference_case):
    qg.check_images(qg_reference_case)


def test_quantized_image_close_to_bf16_baseline(qg, qg_quantized_case):
    qg.check_images(qg_quantized_case)
