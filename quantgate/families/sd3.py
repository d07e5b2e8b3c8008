"""Stable Diffusion 3.5 (StableDiffusion3Pipeline): SD3Transformer2DModel (MMDiT), CLIP-L and CLIP-G
text encoders with projections, T5-XXL, a 16-channel VAE. Classifier-free guidance: two transformer
passes a step when guidance_scale > 1."""

from __future__ import annotations

from quantgate.families.base import Family, SynthComponent, SynthTokenizer


class SD3(Family):
    name = "sd3"
    pipeline = "StableDiffusion3Pipeline"
    denoiser = "transformer"
    text_encoder_big = "text_encoder_3"
    gguf_arch = "sd3"
    synthetic = (
        SynthComponent("transformer", "diffusers", "SD3Transformer2DModel", "transformer.json"),
        SynthComponent("text_encoder", "transformers", "CLIPTextModelWithProjection", "text_encoder.json",
                       "CLIPTextConfig"),
        SynthComponent("text_encoder_2", "transformers", "CLIPTextModelWithProjection", "text_encoder_2.json",
                       "CLIPTextConfig"),
        SynthComponent("text_encoder_3", "transformers", "T5EncoderModel", "text_encoder_3.json", "T5Config"),
        SynthComponent("vae", "diffusers", "AutoencoderKL", "vae.json"),
    )
    tokenizers = (SynthTokenizer("tokenizer", "clip", "text_encoder"),
                  SynthTokenizer("tokenizer_2", "clip", "text_encoder_2"),
                  SynthTokenizer("tokenizer_3", "t5", "text_encoder_3", max_length=512))
    index_extras = {"feature_extractor": [None, None], "image_encoder": [None, None]}
    call_arguments = ("negative_prompt",)

    def encode(self, pipe, model, device: str) -> dict:
        embeds, negative, pooled, negative_pooled = pipe.encode_prompt(
            model.prompts[0].text, None, None, device=device, do_classifier_free_guidance=self.guided(model),
            negative_prompt=self.negative_prompt(model), max_sequence_length=model.max_sequence_length)
        out = {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
        if self.guided(model):
            out.update(negative_prompt_embeds=negative, negative_pooled_prompt_embeds=negative_pooled)
        return out
