"""FLUX.1 (FluxPipeline): FluxTransformer2DModel, CLIP-L and T5-XXL text encoders, a 16-channel VAE.
Guidance is distilled into the transformer (guidance_embeds): one transformer pass a step."""

from __future__ import annotations

from quantgate.families.base import Family, SynthComponent, SynthTokenizer


class Flux(Family):
    name = "flux"
    pipeline = "FluxPipeline"
    denoiser = "transformer"
    text_encoder_big = "text_encoder_2"
    gguf_arch = "flux"
    synthetic = (
        SynthComponent("transformer", "diffusers", "FluxTransformer2DModel", "transformer.json"),
        SynthComponent("text_encoder", "transformers", "CLIPTextModel", "text_encoder.json", "CLIPTextConfig"),
        SynthComponent("text_encoder_2", "transformers", "T5EncoderModel", "text_encoder_2.json", "T5Config"),
        SynthComponent("vae", "diffusers", "AutoencoderKL", "vae.json"),
    )
    tokenizers = (SynthTokenizer("tokenizer", "clip", "text_encoder"),
                  SynthTokenizer("tokenizer_2", "t5", "text_encoder_2", max_length=512))
    index_extras = {"feature_extractor": [None, None], "image_encoder": [None, None]}

    def guided(self, model) -> bool:
        return False             # guidance_scale feeds the transformer's guidance embedding

    def encode(self, pipe, model, device: str) -> dict:
        embeds, pooled, _ = pipe.encode_prompt(model.prompts[0].text, prompt_2=None,
                                               max_sequence_length=model.max_sequence_length, device=device)
        return {"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}
