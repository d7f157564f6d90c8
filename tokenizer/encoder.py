"""Causal 3D CNN encoder: pixels (B, 3, T, H, W) -> continuous latents (B, D, T', H', W')."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenizer.config import TokenizerConfig
from tokenizer.layers import CausalConv3d, Downsample, FrameGroupNorm, ResBlock3d


def transition_kinds(config: TokenizerConfig) -> list[tuple[bool, bool]]:
    """(time, space) halving for each transition between stages.

    Space is halved in the first transitions (where maps are largest, which saves compute)
    and time in the last ones, as in MAGVIT-v2.
    """
    n = len(config.channel_mults) - 1
    return [(i >= n - config.temporal_steps, i < config.spatial_steps) for i in range(n)]


class Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mults]
        groups = config.norm_groups
        self.patch = config.patch_size
        tk = config.res_time_kernel
        self.conv_in = CausalConv3d(config.in_channels * self.patch**2, widths[0], time_kernel=tk)
        stages: list[nn.Module] = []
        kinds = transition_kinds(config)
        ch = widths[0]
        for i, width in enumerate(widths):
            for _ in range(config.num_res_blocks):
                stages.append(ResBlock3d(ch, width, groups, tk))
                ch = width
            if i < len(kinds):
                stages.append(Downsample(ch, *kinds[i]))
        self.stages = nn.Sequential(*stages)
        self.mid = nn.Sequential(*[ResBlock3d(ch, ch, groups, tk) for _ in range(config.num_res_blocks)])
        self.norm_out = FrameGroupNorm(groups, ch)
        self.conv_out = nn.Conv3d(ch, config.latent_dim, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.patch > 1:
            x = rearrange(x, "b c t (h p) (w q) -> b (c p q) t h w", p=self.patch, q=self.patch)
        h = self.mid(self.stages(self.conv_in(x)))
        return self.conv_out(F.silu(self.norm_out(h)))
