"""Stable Diffusion XL (StableDiffusionXLPipeline): UNet2DConditionModel, the one non-transformer
denoiser; CLIP-L and OpenCLIP-G (with projection) text encoders, a 4-channel VAE. Classifier-free
guidance: two UNet passes a step when guidance_scale > 1."""

from __future__ import annotations

from quantgate.families.base import Family, SynthComponent, SynthTokenizer


class SDXL(Family):
    name = "sdxl"
    pipeline = "StableDiffusionXLPipeline"
    denoiser = "unet"
    text_encoder_big = "text_encoder_2"
    gguf_arch = "sdxl"
    uses_max_sequence_length = False
    synthetic = (
        SynthComponent("unet", "diffusers", "UNet2DConditionModel", "unet.json"),
        SynthComponent("text_encoder", "transformers", "CLIPTextModel", "text_encoder.json", "CLIPTextConfig"),
        SynthComponent("text_encoder_2", "transformers", "CLIPTextModelWithProjection", "text_encoder_2.json",
                       "CLIPTextConfig"),
        SynthComponent("vae", "diffusers", "AutoencoderKL", "vae.json"),
    )
    tokenizers = (SynthTokenizer("tokenizer", "clip", "text_encoder"),
                  SynthTokenizer("tokenizer_2", "clip", "text_encoder_2"))
    scheduler = "EulerDiscreteScheduler"
    index_extras = {"feature_extractor": [None, None], "image_encoder": [None, None],
                    "force_zeros_for_empty_prompt": True}
    call_arguments = ("negative_prompt",)

    def encode(self, pipe, model, device: str) -> dict:
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            model.prompts[0].text, device=device, do_classifier_free_guidance=self.guided(model),
            negative_prompt=self.negative_prompt(model))
        out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if self.guided(model):
            out.update(negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
        return out
