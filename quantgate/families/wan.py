"""Wan 2.1/2.2 text-to-video (WanPipeline): WanTransformer3DModel, a UMT5 text encoder, the causal
3-D AutoencoderKLWan. The output is frames, judged frame by frame. Classifier-free guidance: two
transformer passes a step when guidance_scale > 1."""

from __future__ import annotations

import numpy as np

from quantgate.families.base import Family, SynthComponent, SynthTokenizer


class Wan(Family):
    name = "wan"
    pipeline = "WanPipeline"
    denoiser = "transformer"
    text_encoder_big = "text_encoder"
    video = True
    gguf_arch = "wan"
    synthetic = (
        SynthComponent("transformer", "diffusers", "WanTransformer3DModel", "transformer.json"),
        SynthComponent("text_encoder", "transformers", "UMT5EncoderModel", "text_encoder.json", "UMT5Config"),
        SynthComponent("vae", "diffusers", "AutoencoderKLWan", "vae.json"),
    )
    tokenizers = (SynthTokenizer("tokenizer", "t5", "text_encoder", max_length=512),)
    scheduler = "UniPCMultistepScheduler"
    index_extras = {"transformer_2": [None, None]}
    call_arguments = ("num_frames", "negative_prompt")

    def encode(self, pipe, model, device: str) -> dict:
        embeds, negative = pipe.encode_prompt(
            model.prompts[0].text, self.negative_prompt(model), do_classifier_free_guidance=self.guided(model),
            max_sequence_length=model.max_sequence_length, device=device)
        out = {"prompt_embeds": embeds}
        if self.guided(model):
            out["negative_prompt_embeds"] = negative
        return out

    def output_frames(self, output) -> np.ndarray:
        return np.asarray(output.frames[0])
