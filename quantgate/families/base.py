"""What a pipeline family tells the gate: the one interface behind which FLUX, SD3.5, Qwen-Image,
Wan and SDXL (and any other package's family) live.

A family is a subclass of `Family` in a module of its own, registered by name (see
quantgate.families). It says which component denoises, which component is the big text encoder the
matrix's `text_encoder_big` role names, how its pipeline is called, how a prompt is encoded once for
the timed denoising calls, how the pipeline's output becomes 8-bit frames, the GGUF architecture name
of its single files, and what its synthetic models are made of.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

# Roles a matrix entry may name instead of a component: each family says which of its components
# plays them ("denoiser" is FLUX's transformer and SDXL's unet).
ROLES = ("denoiser", "text_encoder_big")


@dataclass(frozen=True)
class SynthComponent:
    """One weighted component of a synthetic model: built from <config_dir>/<config> as `cls` of
    `library` (a transformers model takes `config_class(**json)`; a diffusers one `cls(**json)`)."""
    name: str
    library: str                    # "diffusers" or "transformers"
    cls: str
    config: str                     # the JSON file under fixtures/models/<model>/
    config_class: str | None = None  # transformers only: the config class, like "T5Config"


@dataclass(frozen=True)
class SynthTokenizer:
    """A tokenizer built offline from fixed vocabularies: kind "clip" (byte-level, the length of its
    encoder's positions), "t5" (the words of vocabulary.txt, `max_length` tokens) or "qwen2"
    (byte-level, the words of vocabulary.txt merged into tokens, and the chat template's specials)."""
    name: str
    kind: str
    encoder: str                    # the component whose vocabulary must hold it
    max_length: int | None = None


class Family:
    """One pipeline family. Subclasses set the class attributes and override what differs."""

    name: ClassVar[str]
    pipeline: ClassVar[str]                      # diffusers pipeline class, as model_index.json names it
    denoiser: ClassVar[str] = "transformer"
    text_encoder_big: ClassVar[str | None] = None
    video: ClassVar[bool] = False                # output is frames (judged per frame) rather than one image
    gguf_arch: ClassVar[str | None] = None       # None: diffusers loads no single file of its denoiser
    uses_max_sequence_length: ClassVar[bool] = True
    synthetic: ClassVar[tuple[SynthComponent, ...]] = ()
    tokenizers: ClassVar[tuple[SynthTokenizer, ...]] = ()
    scheduler: ClassVar[str] = "FlowMatchEulerDiscreteScheduler"
    index_extras: ClassVar[dict[str, Any]] = {}  # other model_index.json entries ("image_encoder": [None, None])
    call_arguments: ClassVar[tuple[str, ...]] = ()  # free arguments a model's [<model>.call] table may set

    # ------------------------------------------------------------------ roles and files
    def role(self, name: str) -> str | None:
        """The component that plays a matrix role here, or None where the family has none."""
        return {"denoiser": self.denoiser, "text_encoder_big": self.text_encoder_big}[name]

    def synthetic_names(self) -> frozenset[str]:
        """The components a synthetic model of this family has."""
        return frozenset(c.name for c in self.synthetic)

    def config_files(self) -> tuple[str, ...]:
        """The files under fixtures/models/<model>/ a synthetic build reads, in a fixed order."""
        files = [c.config for c in self.synthetic] + ["scheduler.json"]
        if any(t.kind in ("t5", "qwen2") for t in self.tokenizers):
            files.append("vocabulary.txt")
        return tuple(files)

    # ------------------------------------------------------------------ calling the pipeline
    def call_kwargs(self, model) -> dict:
        """The arguments of every call of this model's pipeline (images and timed calls alike)."""
        kwargs: dict[str, Any] = {"height": model.height, "width": model.width, "num_inference_steps": model.steps}
        if model.guidance_scale is not None:
            kwargs["guidance_scale"] = model.guidance_scale
        if self.uses_max_sequence_length:
            kwargs["max_sequence_length"] = model.max_sequence_length
        return {**kwargs, **model.call}

    def timed_kwargs(self, model) -> dict:
        """The arguments of a timed denoising call: the call's, less the texts `encode` turned into
        embeddings, with the model's timed_steps."""
        kwargs = {k: v for k, v in self.call_kwargs(model).items() if k not in ("negative_prompt",)}
        return {**kwargs, "num_inference_steps": model.timed_steps}

    def encode(self, pipe, model, device: str) -> dict:
        """The prompt embeddings of the model's first prompt, as keyword arguments of the pipeline:
        a timed call then runs the denoiser loop and scheduler only."""
        raise NotImplementedError

    def output_frames(self, output) -> np.ndarray:
        """The pipeline's output (output_type "np") as frames of shape (frames, height, width, 3),
        float in [0, 1]: one frame for an image family."""
        return np.asarray(output.images[0])[None]

    def guided(self, model) -> bool:
        """Whether the model's calls run classifier-free guidance (two denoiser passes a step)."""
        return (model.guidance_scale or 0.0) > 1.0

    def negative_prompt(self, model) -> str | None:
        return model.call.get("negative_prompt")


def strip(frames: np.ndarray) -> np.ndarray:
    """Frames (F, H, W, 3) side by side as one image (H, F*W, 3): how a video is stored and shown."""
    return np.concatenate(list(frames), axis=1) if frames.shape[0] > 1 else frames[0]


def unstrip(image: np.ndarray, frames: int) -> np.ndarray:
    """An image of `frames` frames side by side back into frames (F, H, W, 3)."""
    if frames == 1:
        return image[None]
    width = image.shape[1] // frames
    if width * frames != image.shape[1]:
        raise ValueError(f"an image {image.shape[1]} px wide does not hold {frames} frames of equal width")
    return np.stack([image[:, i * width:(i + 1) * width] for i in range(frames)])
