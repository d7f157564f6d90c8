"""Static, preallocated key/value cache for decoding, written by slice.

One (B, H, max_len, D) key buffer and value buffer per layer, allocated once.
A decoding step writes its new keys and values at the current position of
every layer and then advances the position once; nothing is concatenated or
reallocated, so the buffers keep their addresses.

Two ways to read it back:
- `update` (eager decoding) writes by slice at the host-side position and returns
  views of the filled part, so attention only touches what is written.
- `update_static` (compiled decoding) writes at a device-side index and returns
  the whole buffers; the caller masks the unwritten tail with `valid_keys`. Its
  shapes never change from step to step, so one compiled graph (and one CUDA
  graph) serves every position.
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
        self.pos = 0  # positions already written (the same for every layer), on the host
        self.device_pos = torch.zeros((), dtype=torch.long, device=device)  # the same, on the device
        self.key_positions = torch.arange(max_len, device=device)
        self.condition = None  # (B, 1, C) that every input adds, for models that add their class everywhere
        if torch.device(device or "cpu").type == "cuda":
            # tell torch.compile the buffers never move, so CUDA graphs use them in place
            for buf in [*self.k, *self.v, self.device_pos, self.key_positions]:
                torch._dynamo.mark_static_address(buf)

    @property
    def batch_size(self) -> int:
        return self.k[0].shape[0]

    @property
    def dtype(self) -> torch.dtype:
        return self.k[0].dtype

    @property
    def device(self) -> torch.device:
        return self.k[0].device

    def check_room(self, length: int) -> None:
        if self.pos + length > self.max_len:
            raise ValueError(
                f"KV cache overflow: writing positions {self.pos}..{self.pos + length - 1} into a cache of {self.max_len}"
            )

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write k, v (B, H, L, D) at the current position of `layer`; return the keys and values to attend to.

        The position does not move until `advance` is called, so every layer of
        one step writes to the same slots.
        """
        self.check_room(k.shape[2])
        end = self.pos + k.shape[2]
        self.k[layer][:, :, self.pos:end] = k
        self.v[layer][:, :, self.pos:end] = v
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def step_index(self, length: int) -> torch.Tensor:
        """Device-side positions of the next `length` slots (no host value involved)."""
        return self.device_pos + torch.arange(length, device=self.device_pos.device)

    def update_static(self, layer: int, k: torch.Tensor, v: torch.Tensor, index: torch.Tensor):
        """Write k, v at the device-side positions `index`; return the whole (B, H, max_len, D) buffers."""
        self.k[layer].index_copy_(2, index, k)
        self.v[layer].index_copy_(2, index, v)
        return self.k[layer], self.v[layer]

    def valid_keys(self, length: int) -> torch.Tensor:
        """(1, max_len) bool, broadcast over queries: slots written once a step of `length` tokens is in."""
        return (self.key_positions < self.device_pos + length)[None, :]

    def advance(self, length: int) -> None:
        self.pos += length
        self.device_pos.add_(length)

    def hold_condition(self, vector: torch.Tensor) -> None:
        """Keep the vector (B, 1, C) that each decoding step adds to its inputs until the next prefill.

        Later sequences of the same batch copy into the same tensor, so a compiled step keeps reading
        one buffer instead of being traced again.
        """
        if self.condition is None or self.condition.shape != vector.shape or self.condition.dtype != vector.dtype:
            self.condition = vector.detach().clone()
            if self.condition.device.type == "cuda":
                torch._dynamo.mark_static_address(self.condition)
        else:
            self.condition.copy_(vector)

    def reset(self) -> None:
        """Start a new sequence; the old contents are simply overwritten later."""
        self.pos = 0
        self.device_pos.zero_()
