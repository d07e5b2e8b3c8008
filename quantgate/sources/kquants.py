"""Encoders for GGML's K-quant types (Q2_K, Q3_K, Q4_K, Q5_K, Q6_K), which the `gguf` package
can only decode.

The suite writes its own GGUF files (quantgate.sources.gguf_files), so it needs to produce these types too.
Each encoder mirrors the `dequantize_blocks` of the matching class in `gguf.quants` bit for bit:
`gguf.quants.dequantize(quantize_k(x, qtype), qtype)` reconstructs `x` within the format's error.
The encoding is deliberately simple (scales and mins from each sub-block's min/max, no error search
as llama.cpp's quantizer does), vectorized over all super-blocks of 256 values at once.
"""

from __future__ import annotations

import numpy as np
from gguf import GGML_QUANT_SIZES
from gguf import GGMLQuantizationType as T

QK_K = 256
K_TYPES = (T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K)
_CHUNK = 1 << 16   # super-blocks encoded at a time, to bound the temporaries' memory


def _div(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a / b, and 0 where b is 0 (all-zero blocks and sub-blocks)."""
    return np.where(b == 0, 0, a / np.where(b == 0, 1, b))


def _fp16(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """x (n, 1) rounded to fp16: (the value the decoder will see as float32, its 2 bytes (n, 2))."""
    h = np.minimum(x, np.finfo(np.float16).max).astype(np.float16)
    return h.astype(np.float32), h.view(np.uint8)


def _pack(q: np.ndarray, bits: int, width: int) -> np.ndarray:
    """Pack `bits`-bit values into bytes: 8 // bits runs of `width` consecutive values share one
    run of `width` bytes, the first run in the lowest bits (the layout all K-quant decoders read)."""
    per_byte = 8 // bits
    shifts = (np.arange(per_byte, dtype=np.uint8) * bits).reshape(1, 1, per_byte, 1)
    q = q.astype(np.uint8).reshape(q.shape[0], -1, per_byte, width) << shifts
    return np.bitwise_or.reduce(q, axis=2).reshape(q.shape[0], -1)


def _asymmetric(x: np.ndarray, n_sub: int, qmax: int, smax: int):
    """value = d*sc*q - dmin*m with q in 0..qmax and sc, m in 0..smax, per sub-block of 256 // n_sub."""
    x = x.reshape(x.shape[0], n_sub, -1)
    lo = np.minimum(x.min(axis=-1), 0)
    scale, mins = (x.max(axis=-1) - lo) / qmax, -lo
    d, d_bytes = _fp16(scale.max(axis=-1, keepdims=True) / smax)
    dmin, dmin_bytes = _fp16(mins.max(axis=-1, keepdims=True) / smax)
    sc = np.clip(np.rint(_div(scale, d)), 0, smax)
    m = np.clip(np.rint(_div(mins, dmin)), 0, smax)
    q = _div(x + (dmin * m)[..., None], (d * sc)[..., None])
    q = np.clip(np.rint(q), 0, qmax).astype(np.uint8).reshape(x.shape[0], QK_K)
    return q, sc.astype(np.uint8), m.astype(np.uint8), d_bytes, dmin_bytes


def _symmetric(x: np.ndarray, n_sub: int, qmin: int, qmax: int, smax: int):
    """value = d*sc*q with q in qmin..qmax (qmin < 0) and sc in -smax..smax; returns q - qmin."""
    x = x.reshape(x.shape[0], n_sub, -1)
    extreme = np.take_along_axis(x, np.abs(x).argmax(axis=-1, keepdims=True), axis=-1)[..., 0]
    scale = extreme / qmin   # the largest magnitude maps to qmin, which has no positive twin
    d, d_bytes = _fp16(np.abs(scale).max(axis=-1, keepdims=True) / smax)
    sc = np.clip(np.rint(_div(scale, d)), -smax, smax)
    q = np.clip(np.rint(_div(x, (d * sc)[..., None])), qmin, qmax)
    return (q - qmin).astype(np.uint8).reshape(x.shape[0], QK_K), sc.astype(np.int8), d_bytes


def _q2_k(x):
    q, sc, m, d, dmin = _asymmetric(x, 16, 3, 15)
    return np.concatenate([sc | (m << 4), _pack(q, 2, 32), d, dmin], axis=-1)


def _q3_k(x):
    u, sc, d = _symmetric(x, 16, -4, 3, 31)   # u = q + 4: low 2 bits in qs, bit 2 in hmask
    s = (sc.astype(np.int16) + 32).astype(np.uint8)   # 6-bit scales stored with offset 32
    scales = np.concatenate([_pack(s & 0xF, 4, 8), _pack(s >> 4, 2, 4)], axis=-1)
    return np.concatenate([_pack(u >> 2, 1, 32), _pack(u & 3, 2, 32), scales, d], axis=-1)


def _k_scales(sc, m):
    """The 12 bytes of Q4_K/Q5_K's eight 6-bit scales and mins (see gguf's Q4_K.get_scale_min)."""
    return np.concatenate([sc[:, :4] | ((sc[:, 4:] >> 4) << 6),
                           m[:, :4] | ((m[:, 4:] >> 4) << 6),
                           (sc[:, 4:] & 0xF) | ((m[:, 4:] & 0xF) << 4)], axis=-1)


def _q4_k(x):
    q, sc, m, d, dmin = _asymmetric(x, 8, 15, 63)
    return np.concatenate([d, dmin, _k_scales(sc, m), _pack(q, 4, 32)], axis=-1)


def _q5_k(x):
    q, sc, m, d, dmin = _asymmetric(x, 8, 31, 63)
    return np.concatenate([d, dmin, _k_scales(sc, m), _pack(q >> 4, 1, 32), _pack(q & 0xF, 4, 32)], axis=-1)


def _q6_k(x):
    u, sc, d = _symmetric(x, 16, -32, 31, 127)   # u = q + 32: low 4 bits in ql, high 2 in qh
    return np.concatenate([_pack(u & 0xF, 4, 64), _pack(u >> 4, 2, 32), sc.view(np.uint8), d], axis=-1)


_ENCODERS = {T.Q2_K: _q2_k, T.Q3_K: _q3_k, T.Q4_K: _q4_k, T.Q5_K: _q5_k, T.Q6_K: _q6_k}


def quantize_k(data: np.ndarray, qtype) -> np.ndarray:
    """Encode `data` (last dimension a multiple of 256) as `qtype` (a K type, or its name), in the
    byte layout `gguf.quants.quantize` uses: uint8 of shape (*data.shape[:-1], bytes per row)."""
    qtype = T[qtype] if isinstance(qtype, str) else T(qtype)
    if qtype not in _ENCODERS:
        raise ValueError(f"{qtype.name} is not a K-quant type; quantize_k encodes {', '.join(t.name for t in K_TYPES)}")
    data = np.asarray(data, dtype=np.float32)
    if data.ndim == 0 or data.shape[-1] % QK_K:
        raise ValueError(f"{qtype.name} needs rows of whole {QK_K}-value super-blocks; "
                         f"the last dimension of shape {data.shape} is not a multiple of {QK_K}")
    _, type_size = GGML_QUANT_SIZES[qtype]
    blocks = data.reshape(-1, QK_K)
    out = np.empty((blocks.shape[0], type_size), dtype=np.uint8)
    for start in range(0, blocks.shape[0], _CHUNK):
        out[start:start + _CHUNK] = _ENCODERS[qtype](blocks[start:start + _CHUNK])
    return out.reshape(*data.shape[:-1], data.shape[-1] // QK_K * type_size)
