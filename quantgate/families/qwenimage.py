"""Qwen-Image (QwenImagePipeline): QwenImageTransformer2DModel (MMDiT), a Qwen2.5-VL text encoder,
its own causal 3-D VAE (AutoencoderKLQwenImage). Guidance is "true CFG": two transformer passes a
step only with true_cfg_scale > 1 and a negative prompt."""

from __future__ import annotations

from quantgate.families.base import Family, SynthComponent, SynthTokenizer


class QwenImage(Family):
    name = "qwenimage"
    pipeline = "QwenImagePipeline"
    denoiser = "transformer"
    text_encoder_big = "text_encoder"
    gguf_arch = "qwen_image"
    synthetic = (
        SynthComponent("transformer", "diffusers", "QwenImageTransformer2DModel", "transformer.json"),
        SynthComponent("text_encoder", "transformers", "Qwen2_5_VLForConditionalGeneration", "text_encoder.json",
                       "Qwen2_5_VLConfig"),
        SynthComponent("vae", "diffusers", "AutoencoderKLQwenImage", "vae.json"),
    )
    tokenizers = (SynthTokenizer("tokenizer", "qwen2", "text_encoder"),)
    call_arguments = ("negative_prompt", "true_cfg_scale")

    def guided(self, model) -> bool:
        return model.call.get("true_cfg_scale", 4.0) > 1.0 and self.negative_prompt(model) is not None

    def encode(self, pipe, model, device: str) -> dict:
        embeds, mask = pipe.encode_prompt(model.prompts[0].text, device=device,
                                          max_sequence_length=model.max_sequence_length)
        out = {"prompt_embeds": embeds, "prompt_embeds_mask": mask}
        if self.guided(model):
            negative, negative_mask = pipe.encode_prompt(self.negative_prompt(model), device=device,
                                                         max_sequence_length=model.max_sequence_length)
            out.update(negative_prompt_embeds=negative, negative_prompt_embeds_mask=negative_mask)
        return out
