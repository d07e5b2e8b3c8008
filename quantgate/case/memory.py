"""Real bytes held by a model's weights.

`get_memory_footprint()` reports the logical (unquantized) size for torchao and quanto, whose
weights are tensor subclasses; a ratio built on it can never see quantization. This module counts
the bytes of the storages actually held: it recurses through `__tensor_flatten__` (torchao,
quanto), adds bitsandbytes' quantization state (absmax, codebooks, SCB, where the weight or, once the
layer has run, its module holds it), and counts GGUF
parameters at their packed size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

_PLAIN = (torch.Tensor, torch.nn.Parameter)


@dataclass(frozen=True)
class WeightBytes:
    bytes: int               # real bytes of every parameter and buffer, shared storages once
    tensors: int             # parameters and buffers counted
    quantized_tensors: int   # of those, how many are held in a quantized form

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


def _bnb_state_bytes(state, seen: set) -> int:
    total = 0
    for name in ("absmax", "code", "offset"):
        value = getattr(state, name, None)
        if isinstance(value, torch.Tensor):
            total += _plain_bytes(value, seen)
    nested = getattr(state, "state2", None)
    if nested is not None:
        total += _bnb_state_bytes(nested, seen)
    return total


def tensor_bytes(t: torch.Tensor, seen: set | None = None) -> int:
    """Bytes of one tensor as stored, whatever class holds it."""
    seen = set() if seen is None else seen
    cls = type(t)
    if cls not in _PLAIN and hasattr(t, "__tensor_flatten__"):
        inner, _ = t.__tensor_flatten__()
        return sum(tensor_bytes(getattr(t, name), seen) for name in inner
                   if isinstance(getattr(t, name), torch.Tensor))
    total = _plain_bytes(t, seen)
    state = getattr(t, "quant_state", None)          # bitsandbytes Params4bit
    if state is not None:
        total += _bnb_state_bytes(state, seen)
    scb = getattr(t, "SCB", None)                    # bitsandbytes Int8Params
    if isinstance(scb, torch.Tensor):
        total += _plain_bytes(scb, seen)
    return total


def is_quantized(t: torch.Tensor) -> bool:
    """Held in a form narrower than 16-bit floats: a quantized subclass, integers, or float8."""
    if type(t) not in _PLAIN:
        return True
    return not (t.dtype.is_floating_point or t.dtype.is_complex) or t.element_size() < 2


def weight_bytes(module: torch.nn.Module) -> WeightBytes:
    """Real bytes of a module's parameters and buffers, and of the bitsandbytes 8-bit state that a
    layer's first forward call moves off its weight (Linear8bitLt.init_8bit_state: weight.SCB becomes
    state.SCB), so that a layer counts the same before and after it has run."""
    seen: set = set()
    total = count = quantized = 0
    tensors = [p for _, p in module.named_parameters(remove_duplicate=True)]
    tensors += [b for _, b in module.named_buffers(remove_duplicate=True)]
    for t in tensors:
        total += tensor_bytes(t, seen)
        count += 1
        quantized += is_quantized(t)
    for layer in module.modules():
        state = getattr(layer, "state", None)            # bitsandbytes MatmulLtState
        for name in ("CB", "SCB"):
            held = getattr(state, name, None) if state is not None else None
            if isinstance(held, torch.Tensor):
                total += _plain_bytes(held, seen)
    return WeightBytes(total, count, quantized)
