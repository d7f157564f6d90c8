"""3D PatchGAN discriminator: a real/fake logit per spatio-temporal patch (hinge loss in `losses.py`).

PatchGAN rather than StyleGAN, as in the reference tokenizer, because it trains stably.
GroupNorm instead of BatchNorm so that the result does not depend on the batch split
across devices.
"""

from __future__ import annotations

import torch
from torch import nn


class PatchDiscriminator3d(nn.Module):
    def __init__(self, in_channels: int = 3, channels: int = 64, layers: int = 3):
        super().__init__()
        blocks: list[nn.Module] = [
            nn.Conv3d(in_channels, channels, (3, 4, 4), stride=(1, 2, 2), padding=1),
            nn.LeakyReLU(0.2),
        ]
        ch = channels
        for i in range(1, layers + 1):
            out = channels * min(2 ** i, 8)
            # Halve time in the middle layers only, so short clips keep at least one frame.
            stride = (2, 2, 2) if i < layers else (1, 1, 1)
            blocks += [nn.Conv3d(ch, out, (3, 4, 4), stride=stride, padding=1, bias=False),
                       nn.GroupNorm(min(32, out // 4), out), nn.LeakyReLU(0.2)]
            ch = out
        blocks.append(nn.Conv3d(ch, 1, (3, 4, 4), padding=1))
        self.net = nn.Sequential(*blocks)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """video float [-1, 1] (B, 3, T, H, W) -> logits (B, 1, t, h, w)."""
        return self.net(video)
