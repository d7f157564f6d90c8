"""Static, preallocated key/value cache for decoding, written by slice.

One (B, H, max_len, D) key buffer and value buffer per layer, allocated once.
A decoding step writes its new keys and values at the current position of
every layer and then advances the position once; nothing is concatenated or
reallocated, so the buffers keep their addresses (needed for CUDA graphs).
"""

from __future__ import annotations

import torch


class KVCache:
    def __init__(self, n_layer: int, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 device=None, dtype=None):
        shape = (batch_size, n_head, max_len, head_dim)
        dtype = dtype or torch.float32
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(n_layer)]
        self.max_len = max_len
        self.pos = 0  # number of positions already written (the same for every layer)

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, H, L, D) at the current position of `layer`; return the keys and values to attend to.

        The position does not move until `advance` is called, so every layer of
        one step writes to the same slots.
        """
        end = self.pos + k.shape[2]
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: writing positions {self.pos}..{end - 1} into a cache of {self.max_len}")
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def advance(self, length: int) -> None:
        self.pos += length

    def reset(self) -> None:
        """Start a new sequence; the old contents are simply overwritten later."""
        self.pos = 0
