"""Building blocks of the causal 3D CNN: causal conv, per-frame group norm, residual block, down/upsampling.

Causality in time is what lets the first frame be encoded on its own (an image is a
1-frame video) and keeps latent frame t independent of later pixel frames. Two things
would break it: a conv looking at future frames (so time is padded only in front) and
a norm whose statistics mix frames (so every frame is normalised on its own).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class CausalConv3d(nn.Module):
    """3D conv that pads time only at the front (replicating the first frame) and space symmetrically.

    `time_kernel=1` makes it a per-frame 2D conv (a 1 x k x k kernel), which is causal trivially.
    """

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1),
                 time_kernel: int | None = None):
        super().__init__()
        time_kernel = kernel if time_kernel is None else time_kernel
        self.time_pad = time_kernel - 1
        self.conv = nn.Conv3d(in_ch, out_ch, (time_kernel, kernel, kernel), stride=stride,
                              padding=(0, kernel // 2, kernel // 2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.time_pad:
            x = F.pad(x, (0, 0, 0, 0, self.time_pad, 0), mode="replicate")
        return self.conv(x)


class FrameGroupNorm(nn.GroupNorm):
    """GroupNorm applied to every frame separately, so statistics never leak across time."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        frames = rearrange(x, "b c t h w -> (b t) c h w")
        return rearrange(super().forward(frames), "(b t) c h w -> b c t h w", b=b)


class ResBlock3d(nn.Module):
    """norm -> SiLU -> causal conv, twice, plus a (projected) skip connection.

    `time_kernel=1` makes both convs per-frame (see TokenizerConfig.per_frame_convs).
    """

    def __init__(self, in_ch: int, out_ch: int, groups: int, time_kernel: int = 3):
        super().__init__()
        self.norm1 = FrameGroupNorm(groups, in_ch)
        self.conv1 = CausalConv3d(in_ch, out_ch, time_kernel=time_kernel)
        self.norm2 = FrameGroupNorm(groups, out_ch)
        self.conv2 = CausalConv3d(out_ch, out_ch, time_kernel=time_kernel)
        self.skip = nn.Conv3d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()
        # Each block starts as its skip path (the residual branch outputs zero), so a deep stack
        # starts as a shallow, well-conditioned one (the usual choice for residual nets; on the
        # small synthetic preset its effect was within run-to-run noise).
        nn.init.zeros_(self.conv2.conv.weight)
        nn.init.zeros_(self.conv2.conv.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class Downsample(nn.Module):
    """Strided causal conv halving time and/or space. Time: 1 + 2k frames -> 1 + k (first frame alone)."""

    def __init__(self, ch: int, time: bool, space: bool):
        super().__init__()
        self.conv = CausalConv3d(ch, ch, 3, stride=(2 if time else 1, 2 if space else 1, 2 if space else 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Depth-to-space: a pointwise conv makes the extra frames/pixels as channels, then they are unfolded.

    In time, 1 + k latent frames become 2 + 2k; the first (which would sit before frame 0)
    is dropped, giving 1 + 2k, the exact inverse of `Downsample`. The conv is 1x1x1 because
    it runs at up to 8x the output width; the residual blocks after it do the spatial mixing
    (a 3x3x3 kernel here was the single most expensive layer of the decoder).
    """

    def __init__(self, in_ch: int, out_ch: int, time: bool, space: bool):
        super().__init__()
        self.ft = 2 if time else 1
        self.fs = 2 if space else 1
        self.conv = nn.Conv3d(in_ch, out_ch * self.ft * self.fs * self.fs, 1)

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """Every latent frame -> ft frames, none dropped (a stream drops only its very first one)."""
        return rearrange(self.conv(x), "b (c ft fh fw) t h w -> b c (t ft) (h fh) (w fw)",
                         ft=self.ft, fh=self.fs, fw=self.fs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unfold(x)[:, :, self.ft - 1:]
