"""Block layout: how a latent token grid (T', H', W') is cut into blocks and ordered as a sequence.

Sequence order is block-major: blocks in raster order over the block grid, and
tokens in raster order inside each block. A block of (1, 1, W') gives the
paper's rows, (1, 1, 1) is plain next-token prediction, and 2D / 3D blocks
such as (1, 4, 4) or (2, 4, 4) work the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import torch

from nbp.errors import UserError


def _as_triple(value, name: str) -> tuple[int, int, int]:
    try:
        triple = tuple(int(v) for v in value)
    except TypeError:
        raise UserError(f"{name}={value!r} must be three integers (T, H, W)") from None
    if len(triple) != 3 or any(v <= 0 for v in triple):
        raise UserError(f"{name}={value!r} must be three positive integers (T, H, W)")
    return triple


@dataclass(frozen=True)
class BlockLayout:
    """A block shape tiling a token grid, with the grid <-> sequence permutations."""

    grid: tuple[int, int, int]
    block: tuple[int, int, int]

    def __post_init__(self):
        grid = _as_triple(self.grid, "grid")
        block = _as_triple(self.block, "block")
        object.__setattr__(self, "grid", grid)
        object.__setattr__(self, "block", block)
        for axis, g, b in zip("THW", grid, block):
            if g % b:
                raise UserError(
                    f"block={block} does not tile grid={grid}: axis {axis} has {g} tokens, "
                    f"not a multiple of {b}; choose block sizes that divide the grid"
                )

    @property
    def num_tokens(self) -> int:
        t, h, w = self.grid
        return t * h * w

    @property
    def block_len(self) -> int:
        bt, bh, bw = self.block
        return bt * bh * bw

    @property
    def blocks_per_axis(self) -> tuple[int, int, int]:
        return tuple(g // b for g, b in zip(self.grid, self.block))

    @property
    def num_blocks(self) -> int:
        return self.num_tokens // self.block_len

    @cached_property
    def seq_to_flat(self) -> torch.Tensor:
        """seq_to_flat[i] = raster index in the grid of the token at sequence position i."""
        (nt, nh, nw), (bt, bh, bw) = self.blocks_per_axis, self.block
        flat = torch.arange(self.num_tokens, device="cpu").view(nt, bt, nh, bh, nw, bw)
        # block indices first (raster over the block grid), then positions inside the block
        return flat.permute(0, 2, 4, 1, 3, 5).reshape(-1)

    @cached_property
    def flat_to_seq(self) -> torch.Tensor:
        """The inverse permutation: flat_to_seq[seq_to_flat[i]] = i."""
        inverse = torch.empty_like(self.seq_to_flat)
        inverse[self.seq_to_flat] = torch.arange(self.num_tokens, device="cpu")
        return inverse

    @cached_property
    def coords(self) -> torch.Tensor:
        """(N, 3) long: the (t, h, w) grid coordinates of each sequence position."""
        t, h, w = self.grid
        flat = self.seq_to_flat
        return torch.stack([flat // (h * w), (flat // w) % h, flat % w], dim=1)

    @cached_property
    def _on_device(self) -> dict:
        return {}

    def _permutation(self, name: str, device: torch.device) -> torch.Tensor:
        """A permutation on `device`, copied there once (not at every training step)."""
        key = (name, device)
        if key not in self._on_device:
            self._on_device[key] = getattr(self, name).to(device)
        return self._on_device[key]

    def grid_to_seq(self, ids: torch.Tensor) -> torch.Tensor:
        """(B, T', H', W') -> (B, N) in block-major order."""
        if tuple(ids.shape[1:]) != self.grid:
            raise ValueError(f"expected a token grid (B, {', '.join(map(str, self.grid))}), got {tuple(ids.shape)}")
        return ids.reshape(ids.shape[0], -1)[:, self._permutation("seq_to_flat", ids.device)]

    def seq_to_grid(self, seq: torch.Tensor) -> torch.Tensor:
        """(B, N) in block-major order -> (B, T', H', W')."""
        if seq.ndim != 2 or seq.shape[1] != self.num_tokens:
            raise ValueError(f"expected a sequence (B, {self.num_tokens}), got {tuple(seq.shape)}")
        return seq[:, self._permutation("flat_to_seq", seq.device)].reshape(seq.shape[0], *self.grid)
