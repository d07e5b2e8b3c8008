"""Deterministic synthetic FLUX pipelines, built offline from the configs in fixtures/models/<name>/.

A real diffusers FluxPipeline: CLIP and T5 text encoders with tokenizers built from fixed
vocabularies, FluxTransformer2DModel, AutoencoderKL and FlowMatchEulerDiscreteScheduler. Weights are
drawn per parameter from a CPU generator seeded by (model seed, component, parameter name), so the
bytes do not depend on module construction order, thread count or GPU random-number layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from pathlib import Path

BUILDER_VERSION = "1"   # bump when the weights a config gives would change
COMPONENT_FILES = ("transformer.json", "text_encoder.json", "text_encoder_2.json", "vae.json",
                   "scheduler.json", "vocabulary.txt")


def config_files(config_dir: Path) -> list[Path]:
    missing = [name for name in COMPONENT_FILES if not (config_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"synthetic model configs missing in {config_dir}: {', '.join(missing)}")
    return [config_dir / name for name in COMPONENT_FILES]


def config_key(config_dir: Path, seed: int) -> str:
    """Hash of everything that decides the built weights: configs, vocabulary, seed, builder."""
    h = hashlib.sha256(f"builder={BUILDER_VERSION};seed={seed}".encode())
    for path in config_files(config_dir):
        h.update(path.name.encode() + b"\0" + path.read_bytes())
    return h.hexdigest()[:16]


def _byte_chars() -> list[str]:
    """GPT-2's reversible byte -> printable character table, used by CLIP's byte-level BPE."""
    printable = (list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
                 + list(range(ord("®"), ord("ÿ") + 1)))
    table, extra = {}, 0
    for b in range(256):
        if b in printable:
            table[b] = chr(b)
        else:
            table[b] = chr(256 + extra)
            extra += 1
    return [table[b] for b in range(256)]


def build_clip_tokenizer(max_length: int):
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for ch in _byte_chars():
            vocab[ch + suffix] = len(vocab)
    tok = CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)
    if len(tok) != len(vocab):
        raise RuntimeError(f"CLIP tokenizer has {len(tok)} tokens, expected {len(vocab)}")
    return tok


def build_t5_tokenizer(words: list[str], max_length: int):
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(ch, -6.0) for ch in string.ascii_letters + string.digits + string.punctuation]
    pieces += [("▁" + w, -3.0 - 0.001 * i) for i, w in enumerate(words)]
    tok = T5Tokenizer(vocab=pieces, extra_ids=0, model_max_length=max_length)
    if len(tok) != len(pieces):   # transformers 5 can silently fall back to specials only
        raise RuntimeError(f"T5 tokenizer has {len(tok)} tokens, expected {len(pieces)}")
    return tok


def _param_seed(seed: int, component: str, name: str) -> int:
    digest = hashlib.sha256(f"{seed}/{component}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def init_weights(module, component: str, seed: int) -> None:
    """Seeded, order-independent init: N(0, 1/fan_in) matrices, unit norm scales, small biases."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            gen = torch.Generator(device="cpu").manual_seed(_param_seed(seed, component, name))
            if param.ndim >= 2:
                fan_in = param[0].numel()
                values = torch.randn(param.shape, generator=gen, dtype=torch.float32) / math.sqrt(fan_in)
            elif name.endswith("weight"):
                values = torch.ones(param.shape, dtype=torch.float32)
            else:
                values = torch.randn(param.shape, generator=gen, dtype=torch.float32) * 0.02
            param.copy_(values.to(param.dtype))
    module.eval()


def _read_json(path: Path) -> dict:
    with path.open() as fh:
        return json.load(fh)


def build_flux(config_dir: Path, out_dir: Path, seed: int) -> None:
    """Build the synthetic FLUX pipeline from `config_dir` and save it (BF16) to `out_dir`."""
    import torch
    from diffusers import AutoencoderKL, FlowMatchEulerDiscreteScheduler, FluxPipeline, FluxTransformer2DModel
    from transformers import CLIPTextConfig, CLIPTextModel, T5Config, T5EncoderModel

    config_files(config_dir)
    words = [w.strip() for w in (config_dir / "vocabulary.txt").read_text().split() if w.strip()]
    clip_cfg = CLIPTextConfig(**_read_json(config_dir / "text_encoder.json"))
    t5_cfg = T5Config(**_read_json(config_dir / "text_encoder_2.json"))
    tokenizer = build_clip_tokenizer(clip_cfg.max_position_embeddings)
    tokenizer_2 = build_t5_tokenizer(words, 512)
    for cfg, tok, name in ((clip_cfg, tokenizer, "text_encoder"), (t5_cfg, tokenizer_2, "text_encoder_2")):
        if cfg.vocab_size < len(tok):
            raise ValueError(f"{config_dir / (name + '.json')}: vocab_size {cfg.vocab_size} is smaller than "
                             f"its tokenizer's {len(tok)} tokens")
    components = {
        "transformer": FluxTransformer2DModel(**_read_json(config_dir / "transformer.json")),
        "text_encoder": CLIPTextModel(clip_cfg),
        "text_encoder_2": T5EncoderModel(t5_cfg),
        "vae": AutoencoderKL(**_read_json(config_dir / "vae.json")),
    }
    for name, module in components.items():
        init_weights(module, name, seed)
        module.to(torch.bfloat16)
    scheduler = FlowMatchEulerDiscreteScheduler(**_read_json(config_dir / "scheduler.json"))
    pipe = FluxPipeline(scheduler=scheduler, tokenizer=tokenizer, tokenizer_2=tokenizer_2, **components)
    pipe.save_pretrained(out_dir, safe_serialization=True)


BUILDERS = {"flux": build_flux}
