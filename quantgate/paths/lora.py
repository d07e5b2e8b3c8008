"""LoRA on the quantized pipeline: a deterministic synthetic LoRA, written in the format that
`load_lora_weights` reads, loaded onto the case's quantized pipeline the way a team loads its own,
then weighted to zero and unloaded, and last loaded again, fused, unfused and unloaded (fusing
writes into the quantized base weights, and unfusing must give them back); images are made at each step, and the gate holds them against the
fresh load's or the LoRA's (tests/gate/test_lora.py). A path after this one starts from a fresh
load of the case (quantgate.case.runner). LoRA on quantized models broke on
quanto fp8 (diffusers 0.32.0), bnb 4-bit Control LoRA and torchao int8 weight-only.

The LoRA is the same for every configuration of a model: rank 4 on every attention projection of
the denoiser (to_q, to_k, to_v, to_out.0), drawn in the layers' sorted order from a generator with a
fixed seed, so it needs nothing of the weights but the module tree's names and shapes.
"""

from __future__ import annotations

from pathlib import Path

from quantgate.paths.base import RegressionPath

RANK = 4
ADAPTER = "quantgate"
FILE = "pytorch_lora_weights.safetensors"
TARGETS = ("to_q", "to_k", "to_v", "to_out.0")
SEED = 16
# lora_B's scale (models.toml lora_strength, default 0.5): the update B @ A of a layer with `in` inputs
# has a standard deviation of strength / sqrt(in); at 0.5, about what a freshly initialised Linear
# layer's weights have (1 / sqrt(3 in))


def _features(module) -> tuple[int, int] | None:
    """(in, out) of a Linear, or of a backend's own linear layer that is not one: auto-round's
    QuantLinear names them infeatures and outfeatures, as GPTQ's do. The same layers, so the same
    LoRA, whatever the backend; None for any other module."""
    for names in (("in_features", "out_features"), ("infeatures", "outfeatures")):
        dims = tuple(getattr(module, n, None) for n in names)
        if all(isinstance(d, int) for d in dims):
            return dims
    return None


def lora_state_dict(denoiser, prefix: str, strength: float) -> dict:
    """The synthetic LoRA of `denoiser` (a module tree), keyed as diffusers writes a LoRA:
    `<prefix>.<layer>.lora_A.weight` (rank x in) and `...lora_B.weight` (out x rank), in BF16."""
    import torch

    layers = sorted((name, module) for name, module in denoiser.named_modules()
                    if name.endswith(TARGETS) and _features(module))
    if not layers:
        raise ValueError(f"{type(denoiser).__name__} has no attention projection ({', '.join(TARGETS)}) to put a LoRA on")
    generator = torch.Generator("cpu").manual_seed(SEED)
    state = {}
    for name, module in layers:
        fan_in, fan_out = _features(module)
        down = torch.randn(RANK, fan_in, generator=generator) / fan_in ** 0.5
        up = torch.randn(fan_out, RANK, generator=generator) * (strength / RANK ** 0.5)
        state[f"{prefix}.{name}.lora_A.weight"] = down.to(torch.bfloat16)
        state[f"{prefix}.{name}.lora_B.weight"] = up.to(torch.bfloat16)
    return state


def write_lora(denoiser, prefix: str, folder: Path, strength: float) -> Path:
    """Write the synthetic LoRA into `folder`/FILE (safetensors); return the folder."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    save_file(lora_state_dict(denoiser, prefix, strength), str(folder / FILE))
    return folder


class Lora(RegressionPath):
    name = "lora"
    description = ("a synthetic rank-4 LoRA on the denoiser's attention projections, loaded onto the quantized "
                   "pipeline with load_lora_weights; images with it, at weight 0, fused, unfused and unloaded")

    def run(self, session, folder: Path) -> dict:
        from quantgate.backends import backend
        from quantgate.case.memory import weight_bytes
        from quantgate.case.session import CudaPhase

        pipe, denoiser = session.pipe, session.family.denoiser
        rules = backend(session.case.config.backend)       # the bytes its backend keeps beside weights too
        before = weight_bytes(getattr(pipe, denoiser), rules).bytes
        write_lora(getattr(pipe, denoiser), denoiser, folder / "lora", session.case.model.lora_strength)
        memory: dict = {}
        figures: dict = {"memory": memory, "errors": {}}
        images: dict = {}
        try:
            with CudaPhase(session.case.device, "adapter", memory):
                pipe.load_lora_weights(str(folder / "lora"), weight_name=FILE, adapter_name=ADAPTER)
            figures["adapter_bytes"] = weight_bytes(getattr(pipe, denoiser), rules).bytes - before
            images["lora"] = session.generate(for_path=True)["images"]
            pipe.set_adapters([ADAPTER], adapter_weights=[0.0])
            images["weight_zero"] = session.generate(for_path=True)["images"]
            pipe.unload_lora_weights()
            images["unloaded"] = session.generate(for_path=True)["images"]
            figures["unloaded_bytes"] = weight_bytes(getattr(pipe, denoiser), rules).bytes - before
            # last, since fusing writes into the (quantized) base weights: load it again, fuse, unfuse
            pipe.load_lora_weights(str(folder / "lora"), weight_name=FILE, adapter_name=ADAPTER)
            try:
                pipe.fuse_lora(components=[denoiser], lora_scale=1.0, adapter_names=[ADAPTER])
                images["fused"] = session.generate(for_path=True)["images"]
                pipe.unfuse_lora(components=[denoiser])
                images["unfused"] = session.generate(for_path=True)["images"]      # the adapter computes again
                pipe.unload_lora_weights()
                images["unfused_unloaded"] = session.generate(for_path=True)["images"]   # the base weights, given back
            except Exception as exc:  # noqa: BLE001 (the backend's refusal is the finding: its test reports it)
                figures["errors"]["fuse"] = f"{type(exc).__name__}: {exc}".splitlines()[0][:500]
        finally:
            try:                      # leave no adapter on the pipeline
                pipe.unload_lora_weights()
            except Exception:  # noqa: BLE001, S110 (the path's own error is the one to report)
                pass
        return {**figures, "images": images}
