"""Scratch tensors of the block draw, kept between decode steps so that a step allocates nothing.

The draw (nbp.sampling_controls) writes every tensor that grows with the rows or the
vocabulary into a named buffer with `out=` / in-place ops. A buffer is allocated the first
time its name is asked for and handed out again, at the same address, on every later call;
it is replaced only when a call needs more elements than it holds (a larger batch, or more
tokens in a boundary bucket than any earlier draw), like the KV cache beside it. What is
left to allocate per draw are (rows, 1) tensors: one threshold or total per row.
"""

from __future__ import annotations

import math

import torch

MAX_VIEWS = 1024


class DrawBuffers:
    def __init__(self, device=None):
        self.device = torch.device(device or "cpu")
        self._held: dict[str, torch.Tensor] = {}
        self._views: dict[tuple, torch.Tensor] = {}  # (name, shape, dtype) -> view of the held buffer

    def __call__(self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The buffer `name` as a contiguous tensor of `shape`; its contents are whatever was written last."""
        key = (name, shape, dtype)
        view = self._views.get(key)
        if view is None:
            size = math.prod(shape)
            held = self._held.get(name)
            if held is None or held.numel() < size or held.dtype != dtype:
                held = self._held[name] = torch.empty(max(size, 1), dtype=dtype, device=self.device)
                self._views = {k: v for k, v in self._views.items() if k[0] != name}  # views of the old one
            if len(self._views) > MAX_VIEWS:  # member counts vary from draw to draw; keep the table small
                self._views.clear()
            view = self._views[key] = held[:size].view(shape)
        return view

    def float32(self, name: str, x: torch.Tensor) -> torch.Tensor:
        """x as contiguous float32: x itself when it already is, else a copy into buffer `name`."""
        if x.dtype == torch.float32 and x.is_contiguous():
            return x
        return self(name, tuple(x.shape)).copy_(x)

    def addresses(self) -> dict[str, int]:
        """Where each buffer lives (tests check that decode steps keep these)."""
        return {name: held.data_ptr() for name, held in self._held.items()}
