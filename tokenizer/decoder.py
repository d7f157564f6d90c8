"""Causal 3D CNN decoder, the mirror of the encoder: latents (B, D, T', H', W') -> pixels (B, 3, T, H, W)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenizer.config import TokenizerConfig
from tokenizer.encoder import transition_kinds
from tokenizer.layers import CausalConv3d, FrameGroupNorm, ResBlock3d, Upsample


class Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths = [config.base_channels * m for m in config.channel_mults]
        groups = config.norm_groups
        kinds = transition_kinds(config)
        ch = widths[-1]
        tk = config.res_time_kernel
        # With per-frame residual blocks this conv (with the upsampling) is where the decoder mixes
        # time, over `decoder_time_kernel` latent frames.
        self.conv_in = CausalConv3d(config.latent_dim, ch, time_kernel=config.decoder_time_kernel)
        self.mid = nn.Sequential(*[ResBlock3d(ch, ch, groups, tk) for _ in range(config.num_res_blocks)])
        stages: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            for _ in range(config.num_res_blocks):
                stages.append(ResBlock3d(ch, widths[i], groups, tk))
                ch = widths[i]
            if i > 0:
                stages.append(Upsample(ch, widths[i - 1], *kinds[i - 1]))
                ch = widths[i - 1]
        self.stages = nn.Sequential(*stages)
        self.norm_out = FrameGroupNorm(groups, ch)
        self.patch = config.patch_size
        self.conv_out = CausalConv3d(ch, config.in_channels * self.patch**2, time_kernel=tk)
        self.tanh_output = config.tanh_output

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The weight the adaptive GAN weight balances gradients at."""
        return self.conv_out.conv.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.stages(self.mid(self.conv_in(z)))
        return self.to_pixels(self.conv_out(F.silu(self.norm_out(h))))

    def to_pixels(self, out: torch.Tensor) -> torch.Tensor:
        """The last conv's output -> pixels in [-1, 1] (frame by frame, so a stream shares it)."""
        if self.tanh_output:
            out = torch.tanh(out)
        if self.patch > 1:
            out = rearrange(out, "b (c p q) t h w -> b c t (h p) (w q)", p=self.patch, q=self.patch)
        return out
