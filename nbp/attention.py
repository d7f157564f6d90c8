"""One attention function with three backends: sdpa (portable), flex (CUDA), xformers (CUDA, optional).

Each backend has its own mask object, built once per MaskSpec and device and
cached: a dense boolean matrix for sdpa, a FlexAttention BlockMask (which
lets the kernel skip fully masked tiles) for flex, and an additive bias for
xformers. Decoding with a KV cache needs no mask at all (the new block may
see everything cached plus itself), so `attention(..., mask=None)` runs the
fastest unmasked kernel of the backend.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache

import torch
import torch.nn.functional as F

from nbp.errors import UserError
from nbp.masks import MaskSpec, block_causal_mask, group_ids

BACKENDS = ("auto", "sdpa", "flex", "xformers")


def flex_importable() -> bool:
    try:
        from torch.nn.attention import flex_attention  # noqa: F401
    except ImportError:
        return False
    return True


def xformers_importable() -> bool:
    return importlib.util.find_spec("xformers") is not None


def available_backends(device: torch.device | str) -> list[str]:
    """Concrete backends that can run (forward and backward) on this device."""
    names = ["sdpa"]
    if torch.device(device).type == "cuda":
        if flex_importable():
            names.append("flex")
        if xformers_importable():
            names.append("xformers")
    return names


def resolve_backend(requested: str, device: torch.device | str) -> str:
    """Turn "auto" into a concrete backend for the device; fail clearly if the requested one cannot run."""
    if requested not in BACKENDS:
        raise UserError(f"attn_backend={requested!r} is not a backend; valid: {', '.join(BACKENDS)}")
    device = torch.device(device)
    if requested == "auto":
        # flex skips fully masked tiles, so it wins on GPU; sdpa is the CPU path
        return "flex" if device.type == "cuda" and flex_importable() else "sdpa"
    if requested not in available_backends(device):
        why = {
            "flex": "FlexAttention needs a CUDA device (it has no CPU backward pass)",
            "xformers": "xformers needs a CUDA device and `pip install xformers`",
        }[requested]
        raise UserError(
            f"attn_backend={requested!r} cannot run on {device.type}: {why}; "
            f"available here: {', '.join(available_backends(device))} (or 'auto')"
        )
    return requested


# ----------------------------------------------------------------------------- masks per backend


@lru_cache(maxsize=32)
def _flex_block_mask(spec: MaskSpec, device: torch.device):
    from torch.nn.attention.flex_attention import create_block_mask

    mask_mod = flex_mask_mod(spec, device)
    return create_block_mask(mask_mod, B=None, H=None, Q_LEN=spec.seq_len, KV_LEN=spec.seq_len, device=device)


def flex_mask_mod(spec: MaskSpec, device: torch.device | str = "cpu"):
    """The FlexAttention mask_mod: key visible iff its group is not later than the query's."""
    groups = group_ids(spec, device)

    def block_causal(batch, head, q_idx, kv_idx):
        return groups[kv_idx] <= groups[q_idx]

    return block_causal


def _aligned(shape, dtype, device) -> torch.Tensor:
    # xformers wants the bias's rows 8-aligned in memory: allocate padded, then slice
    rows, cols = shape
    return torch.zeros(rows, (cols + 7) // 8 * 8, device=device, dtype=dtype)[:, :cols]


@lru_cache(maxsize=32)
def _xformers_bias(spec: MaskSpec, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    bias = _aligned((spec.seq_len, spec.seq_len), dtype, device)
    return bias.masked_fill_(~block_causal_mask(spec, device), float("-inf"))


def build_mask(backend: str, spec: MaskSpec, device: torch.device | str, dtype: torch.dtype = torch.float32):
    """The cached mask object of `backend` for sequences of shape `spec`."""
    device = torch.device(device)
    if backend == "sdpa":
        return block_causal_mask(spec, device)
    if backend == "flex":
        return _flex_block_mask(spec, device)
    if backend == "xformers":
        return _xformers_bias(spec, device, dtype)
    raise ValueError(f"no mask for backend {backend!r}")


# ----------------------------------------------------------------------------- the attention function

_compiled_flex = None


def _flex_attention(q, k, v, block_mask):
    global _compiled_flex
    if _compiled_flex is None:
        from torch.nn.attention.flex_attention import flex_attention

        # eager FlexAttention materialises the scores; compiled it is a fused kernel
        _compiled_flex = torch.compile(flex_attention, dynamic=False)
    return _compiled_flex(q, k, v, block_mask=block_mask)


def _xformers_attention(q, k, v, bias, dropout_p):
    import xformers.ops as xops

    if bias is not None:
        if bias.dtype != q.dtype:  # xformers wants equal dtypes; keep the 8-aligned storage
            bias = _aligned(bias.shape, q.dtype, bias.device).copy_(bias)
        bias = bias.expand(q.shape[0], q.shape[1], -1, -1)
    # xformers layout is (B, S, H, D)
    out = xops.memory_efficient_attention(
        q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_bias=bias, p=dropout_p
    )
    return out.transpose(1, 2)


def attention(q, k, v, mask=None, backend: str = "sdpa", dropout_p: float = 0.0) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + mask) v for q (B, H, Sq, D), k and v (B, H, Sk, D).

    `mask` is the object `build_mask(backend, ...)` returned, or None for no mask
    (decoding steps). Returns (B, H, Sq, D).
    """
    if backend == "sdpa" or (backend == "flex" and mask is None):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)
    if backend == "flex":
        if dropout_p > 0:
            raise UserError("attn_backend='flex' does not support attention dropout; set dropout=0 or use 'sdpa'")
        return _flex_attention(q, k, v, mask)
    if backend == "xformers":
        return _xformers_attention(q, k, v, mask, dropout_p)
    raise ValueError(f"unknown attention backend {backend!r}")


def naive_attention(q, k, v, mask=None) -> torch.Tensor:
    """The reference every backend is tested against: explicit softmax(QK^T / sqrt(d)) V."""
    scores = (q @ k.transpose(-2, -1)) / q.shape[-1] ** 0.5
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(dim=-1) @ v
