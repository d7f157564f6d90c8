"""The finite scalar quantizer as the reference NBP implementation vendored it (an old FSQ).

It bounds each latent channel with tanh(z + shift) * half_l - offset where
half_l = (L - 1)(1 - eps) / 2, offset = 0.5 for even L, and shift = tan(offset / half_l).
Today's vector-quantize-pytorch bounds differently, so the released tokenizer weights give
other ids at bin edges unless the old bound is used. Same interface as that library's FSQ:
`forward(z (B, N, D)) -> (codes, ids)`, `indices_to_codes`, `codes_to_indices`.
"""

from __future__ import annotations

import torch
from torch import nn


class ReferenceFSQ(nn.Module):
    def __init__(self, levels: list[int] | tuple[int, ...], eps: float = 1e-3):
        super().__init__()
        levels_t = torch.tensor(list(levels), dtype=torch.int64)
        basis = torch.cumprod(torch.tensor([1, *levels[:-1]], dtype=torch.int64), dim=0)
        self.register_buffer("levels", levels_t, persistent=False)
        self.register_buffer("basis", basis, persistent=False)
        self.eps = eps
        self.codebook_size = int(torch.prod(levels_t))

    def bound(self, z: torch.Tensor) -> torch.Tensor:
        levels = self.levels.to(z.dtype)
        half_l = (levels - 1) * (1 - self.eps) / 2
        offset = torch.where(self.levels % 2 == 0, 0.5, 0.0).to(z.dtype)
        shift = torch.tan(offset / half_l)
        return torch.tanh(z + shift) * half_l - offset

    def forward(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z (B, N, D) float -> codes in [-1, 1] (straight-through gradients) and int64 ids (B, N)."""
        bounded = self.bound(z)
        rounded = bounded + (bounded.round() - bounded).detach()
        codes = rounded / (self.levels // 2).to(z.dtype)
        return codes, self.codes_to_indices(codes)

    def codes_to_indices(self, codes: torch.Tensor) -> torch.Tensor:
        half_width = (self.levels // 2).to(codes.dtype)
        digits = (codes * half_width + half_width).round().long()
        return (digits * self.basis).sum(dim=-1)

    def indices_to_codes(self, indices: torch.Tensor) -> torch.Tensor:
        digits = (indices.long()[..., None] // self.basis) % self.levels
        half_width = self.levels // 2
        return (digits - half_width).float() / half_width.float()
