"""Real bytes held by a model's weights.

`get_memory_footprint()` reports the logical (unquantized) size for torchao and quanto, whose
weights are tensor subclasses; a ratio built on it can never see quantization. This module counts
the bytes of the storages actually held: it recurses through `__tensor_flatten__` (torchao,
quanto), counts GGUF parameters at their packed size, and adds what the case's backend keeps
beside a weight's storage or on a layer (bitsandbytes' quantization state: Backend.tensor_state,
Backend.module_state). Which tensors are held quantized is the backend's rule (Backend.is_quantized).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from quantgate.backends import Backend, backend

_PLAIN = (torch.Tensor, torch.nn.Parameter)


@dataclass(frozen=True)
class WeightBytes:
    bytes: int               # real bytes of every parameter and buffer, shared storages once
    tensors: int             # parameters and buffers counted
    quantized_tensors: int   # of those, how many the backend holds in a quantized form

    def as_dict(self) -> dict:
        return {"bytes": self.bytes, "tensors": self.tensors, "quantized_tensors": self.quantized_tensors}


def _plain_bytes(t: torch.Tensor, seen: set) -> int:
    if t.device.type == "meta":
        return 0
    key = (t.device.type, t.untyped_storage().data_ptr(), t.storage_offset(), t.numel(), t.dtype)
    if key in seen:
        return 0
    seen.add(key)
    return t.numel() * t.element_size()


def tensor_bytes(t: torch.Tensor, seen: set | None = None, rules: Backend | None = None) -> int:
    """Bytes of one tensor as stored, whatever class holds it, with the state `rules` (the case's
    backend; the reference's, which keeps none, by default) keeps beside it."""
    seen = set() if seen is None else seen
    rules = rules or backend("none")
    cls = type(t)
    if cls not in _PLAIN and hasattr(t, "__tensor_flatten__"):
        inner, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, name), seen, rules) for name in inner
                   if isinstance(getattr(t, name), torch.Tensor))
    return _plain_bytes(t, seen) + sum(_plain_bytes(s, seen) for s in rules.tensor_state(t))


def weight_bytes(module: torch.nn.Module, rules: Backend | None = None) -> WeightBytes:
    """Real bytes of a module's parameters and buffers, and of the state its layers hold outside
    them, by the rules of backend `rules` (the reference's by default)."""
    rules = rules or backend("none")
    seen: set = set()
    total = count = quantized = 0
    tensors = [p for _, p in module.named_parameters(remove_duplicate=True)]
    tensors += [b for _, b in module.named_buffers(remove_duplicate=True)]
    for t in tensors:
        total += tensor_bytes(t, seen, rules)
        count += 1
        quantized += rules.is_quantized(t)
    for layer in module.modules():
        total += sum(_plain_bytes(held, seen) for held in rules.module_state(layer))
    return WeightBytes(total, count, quantized)
