"""Deterministic synthetic pipelines of any family, built offline from the configs in fixtures/models/<name>/.

A real diffusers pipeline of the family (quantgate.families): its components built from their
configs, tokenizers built from fixed vocabularies, and its scheduler. Weights are drawn per parameter
from a CPU generator seeded by (model seed, component, parameter name), so the bytes do not depend on
module construction order, thread count or GPU random-number layout.
"""

from __future__ import annotations

import hashlib
import json
import math
import string
from pathlib import Path

from quantgate.families import Family
from quantgate.units import GIB

BUILDER_VERSION = "2"   # bump when the built files would change (2: weights streamed into safetensors
                        # by quantgate, the same values as 1 in another file layout)


def config_files(config_dir: Path, family: Family) -> list[Path]:
    missing = [name for name in family.config_files() if not (config_dir / name).is_file()]
    if missing:
        raise FileNotFoundError(f"synthetic {family.name} model configs missing in {config_dir}: {', '.join(missing)}")
    return [config_dir / name for name in family.config_files()]


def config_key(config_dir: Path, seed: int, family: Family) -> str:
    """Hash of everything that decides the built weights: configs, vocabulary, seed, builder."""
    h = hashlib.sha256(f"builder={BUILDER_VERSION};seed={seed}".encode())
    for path in config_files(config_dir, family):
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


def _param_values(shape, name: str, generator_seed: int):
    """N(0, 1/fan_in) matrices, unit norm scales, N(0, 0.02) biases, in float32."""
    import torch

    if len(shape) >= 2:
        gen = torch.Generator(device="cpu").manual_seed(generator_seed)
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=gen, dtype=torch.float32) / math.sqrt(fan_in)
    if name.endswith("weight"):
        return torch.ones(shape, dtype=torch.float32)
    gen = torch.Generator(device="cpu").manual_seed(generator_seed)
    return torch.randn(shape, generator=gen, dtype=torch.float32) * 0.02


def init_weights(module, component: str, seed: int) -> None:
    """The values a build writes (see write_weights), put in place into a module held in memory."""
    import torch

    with torch.no_grad():
        for name, param in module.named_parameters():
            param.copy_(_param_values(tuple(param.shape), name, _param_seed(seed, component, name)).to(param.dtype))
    module.eval()


def _read_json(path: Path) -> dict:
    with path.open() as fh:
        return json.load(fh)


def _empty(factory, dtype):
    """The module with its parameters on the meta device (no memory) in `dtype`; buffers real."""
    from accelerate import init_empty_weights

    with init_empty_weights(include_buffers=False):
        module = factory()
    return module.to(dtype)


_SAFETENSORS_DTYPES = {"torch.bfloat16": "BF16", "torch.float32": "F32", "torch.float16": "F16",
                       "torch.int64": "I64", "torch.int32": "I32"}


def _tensors_to_store(module) -> list[tuple[str, object]]:
    """What save_pretrained stores: every parameter (tied ones once) and the persistent buffers."""
    if hasattr(module, "tie_weights"):       # transformers: tied parameters become one object
        module.tie_weights()
    transient = {f"{prefix}.{b}" if prefix else b
                 for prefix, sub in module.named_modules() for b in sub._non_persistent_buffers_set}
    out = list(module.named_parameters())
    out += [(n, b) for n, b in module.named_buffers() if n not in transient]
    return sorted(out, key=lambda item: item[0])


def write_weights(entries: list[tuple[str, object]], component: str, seed: int, path: Path, progress=None,
                  workers: int | None = None) -> None:
    """Stream the seeded weights of a module's tensors (from _tensors_to_store; parameters on the
    meta device) into one safetensors file, tensor by tensor: memory stays at a few tensors, not
    the model. Values are those init_weights gives; buffers are written as they are."""
    import os
    from concurrent.futures import ThreadPoolExecutor

    import torch

    header, offset = {}, 0
    for name, tensor in entries:
        size = tensor.numel() * tensor.element_size()
        header[name] = {"dtype": _SAFETENSORS_DTYPES[str(tensor.dtype)], "shape": list(tensor.shape),
                        "data_offsets": [offset, offset + size]}
        offset += size
    header["__metadata__"] = {"format": "pt"}
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)

    def values(item):
        return synthetic_value(*item, component, seed)

    path.parent.mkdir(parents=True, exist_ok=True)
    workers = workers or min(16, os.cpu_count() or 1)
    with path.open("wb") as fh, ThreadPoolExecutor(max_workers=workers) as pool:
        fh.write(len(blob).to_bytes(8, "little") + blob)
        window = 2 * workers                                      # tensors in flight
        for start in range(0, len(entries), window):
            for value in pool.map(values, entries[start:start + window]):
                fh.write(value.reshape(-1).view(torch.uint8).numpy().tobytes())
                if progress is not None:
                    progress.update(value.numel() * value.element_size())


def _save_config(module, folder: Path) -> str:
    """config.json as save_pretrained writes it; returns the weight file's name."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    if hasattr(module, "save_config"):                            # diffusers
        module.save_config(folder)
        return "diffusion_pytorch_model.safetensors"
    module.config.architectures = [type(module).__name__]         # transformers
    module.config.dtype = torch.bfloat16
    module.config.save_pretrained(folder)
    return "model.safetensors"


def _apply_merges(symbols: list[str], merges: list[tuple[str, str]]) -> list[str]:
    """Byte-pair encoding of one pre-token: merge the lowest-ranked adjacent pair until none is left."""
    ranks = {pair: i for i, pair in enumerate(merges)}
    while len(symbols) > 1:
        ranked = [(ranks[pair], i) for i, pair in enumerate(zip(symbols, symbols[1:])) if pair in ranks]
        if not ranked:
            break
        _, i = min(ranked)
        symbols = symbols[:i] + [symbols[i] + symbols[i + 1]] + symbols[i + 2:]
    return symbols


def build_qwen2_tokenizer(words: list[str], max_length: int):
    """Qwen2's byte-level BPE over the 256 byte symbols, with merges that make each word of
    `words` one token (with and without its leading space), and the chat template's specials."""
    from transformers import Qwen2Tokenizer

    chars = _byte_chars()
    vocab = {ch: i for i, ch in enumerate(chars)}
    merges: list[tuple[str, str]] = []
    for word in words:
        for form in (word, " " + word):
            symbols = _apply_merges([chars[b] for b in form.encode("utf-8")], merges)
            while len(symbols) > 1:                 # a new merge ranks after every earlier one, so the
                merges.append((symbols[0], symbols[1]))   # words already single tokens stay so
                vocab.setdefault(symbols[0] + symbols[1], len(vocab))
                symbols = _apply_merges(symbols, merges[-1:])
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, unk_token=None, eos_token="<|endoftext|>",
                         pad_token="<|endoftext|>", model_max_length=max_length)
    tok.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>"]})
    if len(tok) != len(vocab) + 3:
        raise RuntimeError(f"Qwen2 tokenizer has {len(tok)} tokens, expected {len(vocab) + 3}")
    return tok


def _tokenizer(spec, config: object, words: list[str]):
    if spec.kind == "clip":
        return build_clip_tokenizer(config.max_position_embeddings)
    if spec.kind == "t5":
        return build_t5_tokenizer(words, spec.max_length)
    if spec.kind == "qwen2":
        return build_qwen2_tokenizer(words, spec.max_length or 32768)
    raise ValueError(f"unknown synthetic tokenizer kind {spec.kind!r} (clip, t5, qwen2)")


def _vocab_size(config) -> int:
    return getattr(config, "vocab_size", None) or config.get_text_config().vocab_size


def _factories(family: Family, config_dir: Path) -> tuple[dict, dict]:
    """({component: transformers config}, {component: a function that makes the module}) from the configs."""
    import diffusers
    import transformers

    config_files(config_dir, family)
    configs, factories = {}, {}
    for comp in family.synthetic:
        raw = _read_json(config_dir / comp.config)
        if comp.library == "transformers":
            configs[comp.name] = getattr(transformers, comp.config_class)(**raw)
            factories[comp.name] = (lambda c=comp: getattr(transformers, c.cls)(configs[c.name]))
        else:
            factories[comp.name] = (lambda c=comp, r=raw: getattr(diffusers, c.cls)(**r))
    return configs, factories


def component_tensors(family: Family, config_dir: Path, component: str) -> list[tuple[str, object]]:
    """What a build stores for one component: its tensors in order, parameters on the meta device
    (their values come from synthetic_values), buffers real."""
    import torch

    _, factories = _factories(family, config_dir)
    if component not in factories:
        raise KeyError(f"{family.name} has no synthetic component {component!r} (it has {', '.join(factories)})")
    return _tensors_to_store(_empty(factories[component], torch.bfloat16))


def synthetic_value(name: str, tensor, component: str, seed: int):
    """The value a build stores for one tensor of component_tensors: drawn for a parameter, as it is
    for a buffer; in the stored dtype, so it equals what the built file holds bit for bit."""
    if not tensor.is_meta:                                    # a real buffer
        return tensor.detach().contiguous()
    return _param_values(tuple(tensor.shape), name, _param_seed(seed, component, name)).to(tensor.dtype)


def write_component(family: Family, config_dir: Path, out_dir: Path, seed: int, component: str,
                    progress=None) -> Path:
    """One component's weights file in `out_dir/<component>/` (its config written too); its path."""
    import torch

    _, factories = _factories(family, config_dir)
    module = _empty(factories[component], torch.bfloat16)
    weights_file = _save_config(module, out_dir / component)
    path = out_dir / component / weights_file
    write_weights(_tensors_to_store(module), component, seed, path, progress)
    return path


def build(family: Family, config_dir: Path, out_dir: Path, seed: int, progress: bool = True) -> None:
    """Build the synthetic pipeline of `family` from `config_dir` and save it (BF16) to `out_dir`.
    The components are never materialised: each weight is drawn and streamed to its file, so a
    full-size build (FLUX.1-dev: 31.4 GiB) needs a few GB of memory. A progress bar shows for builds
    of 1 GiB up."""
    import diffusers
    import torch
    from tqdm.auto import tqdm

    configs, factories = _factories(family, config_dir)
    vocabulary = config_dir / "vocabulary.txt"
    words = [w.strip() for w in vocabulary.read_text().split() if w.strip()] if vocabulary.exists() else []
    tokenizers = {}
    for spec in family.tokenizers:
        tok = _tokenizer(spec, configs[spec.encoder], words)
        if _vocab_size(configs[spec.encoder]) < len(tok):
            raise ValueError(f"{config_dir / (spec.encoder + '.json')}: vocab_size {_vocab_size(configs[spec.encoder])} "
                             f"is smaller than its tokenizer's {len(tok)} tokens")
        tokenizers[spec.name] = tok
    modules = {name: _empty(make, torch.bfloat16) for name, make in factories.items()}
    stored = {name: _tensors_to_store(module) for name, module in modules.items()}
    total = sum(t.numel() * t.element_size() for entries in stored.values() for _, t in entries)
    index = {"_class_name": family.pipeline, "_diffusers_version": diffusers.__version__, **family.index_extras}
    with tqdm(total=total, unit="B", unit_scale=True, desc=f"building {config_dir.name}",
              disable=not progress or total < GIB) as bar:
        for name, module in modules.items():
            weights_file = _save_config(module, out_dir / name)
            write_weights(stored[name], name, seed, out_dir / name / weights_file, bar)
            index[name] = [type(module).__module__.split(".")[0], type(module).__name__]
    scheduler = getattr(diffusers, family.scheduler)(**_read_json(config_dir / "scheduler.json"))
    scheduler.save_pretrained(out_dir / "scheduler")
    index["scheduler"] = [type(scheduler).__module__.split(".")[0], type(scheduler).__name__]
    for name, tok in tokenizers.items():
        tok.save_pretrained(out_dir / name)
        index[name] = [type(tok).__module__.split(".")[0], type(tok).__name__]
    (out_dir / "model_index.json").write_text(json.dumps(dict(sorted(index.items())), indent=2) + "\n")
