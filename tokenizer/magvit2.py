"""The reference NBP implementation's MAGVIT-v2 causal 3D CNN, layer by layer (TokenizerConfig.arch="magvit2").

The layers sit in flat `layers` lists in the reference's order and under its module
names, so the released `magvit2_*.pt` weights load by renaming `encoder_layers.` to
`encoder.layers.` (see nbp.official.tokenizer). What differs from tokenizer/encoder.py:
- every conv pads height and width by replicating the border (not zeros), time by
  2 * (k // 2) frames at the front, also replicated;
- Swish has a learned per-channel beta: x * sigmoid(beta * x);
- upsampling is a conv to (t * h * w) times the channels and a depth-to-space whose
  channel order is (t, h, w, c); when t > 1 the first t - 1 output frames are dropped
  (the first latent frame stands for one pixel frame);
- the reference reads pixels in [0, 1]: converted here, at the edges of the network.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from tokenizer.config import TokenizerConfig
from tokenizer.encoder import transition_kinds


class CausalConv3d(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        pad = kernel // 2
        self.padding = (pad, pad, pad, pad, 2 * pad, 0)  # (w, w, h, h, t front, t back)
        self.conv = nn.Conv3d(in_ch, out_ch, kernel, stride=stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, self.padding, mode="replicate"))


class GroupNorm3D(nn.GroupNorm):
    """GroupNorm over each frame on its own (eps 1e-5, affine)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(b * t, c, h, w)
        out = F.group_norm(frames, self.num_groups, self.weight, self.bias, self.eps)
        return out.view(b, t, c, h, w).transpose(1, 2)


class Swish(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.beta = nn.Parameter(torch.ones(1, channels, 1, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.beta * x)


class ResidualUnit(nn.Module):
    """GN, Swish, conv, GN, Swish, conv (as `fn.0` .. `fn.5`), plus a 1x1x1 conv on the skip when widths differ."""

    def __init__(self, in_ch: int, out_ch: int, groups: int):
        super().__init__()
        self.fn = nn.Sequential(GroupNorm3D(groups, in_ch), Swish(in_ch), CausalConv3d(in_ch, out_ch),
                                GroupNorm3D(groups, out_ch), Swish(out_ch), CausalConv3d(out_ch, out_ch))
        self.residual_fn = nn.Sequential(CausalConv3d(in_ch, out_ch, kernel=1)) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(x) + self.residual_fn(x)


class Depth2Space3D(nn.Module):
    def __init__(self, factors: tuple[int, int, int]):
        super().__init__()
        self.factors = factors

    def unfold(self, x: torch.Tensor) -> torch.Tensor:
        """Every latent frame -> ft frames, none dropped (a stream drops only its very first ones)."""
        b, c, t, h, w = x.shape
        ft, fh, fw = self.factors
        c_out = c // (ft * fh * fw)
        x = x.view(b, ft, fh, fw, c_out, t, h, w).permute(0, 4, 5, 1, 6, 2, 7, 3)
        return x.reshape(b, c_out, t * ft, h * fh, w * fw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.unfold(x)[:, :, self.factors[0] - 1:]  # causal: the first latent frame becomes one frame


def _widths(config: TokenizerConfig) -> list[int]:
    return [config.base_channels * m for m in config.channel_mults]


class Magvit2Encoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths, groups, blocks = _widths(config), config.norm_groups, config.num_res_blocks
        kinds = transition_kinds(config)
        layers: list[nn.Module] = [CausalConv3d(config.in_channels, widths[0])]
        ch = widths[0]
        for i, width in enumerate(widths):
            for _ in range(blocks):
                layers.append(ResidualUnit(ch, width, groups))
                ch = width
            if i < len(kinds):
                time, space = kinds[i]
                layers.append(CausalConv3d(ch, ch, stride=(2 if time else 1, 2 if space else 1, 2 if space else 1)))
        layers += [ResidualUnit(ch, ch, groups) for _ in range(blocks)]
        layers += [GroupNorm3D(groups, ch), Swish(ch), nn.Conv3d(ch, config.latent_dim, 1)]
        self.layers = nn.ModuleList(layers)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        x = (video + 1) / 2  # [-1, 1] -> the reference's [0, 1]
        for layer in self.layers:
            x = layer(x)
        return x


class Magvit2Decoder(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        widths, groups, blocks = _widths(config), config.norm_groups, config.num_res_blocks
        kinds = transition_kinds(config)
        ch = widths[-1]
        layers: list[nn.Module] = [CausalConv3d(config.latent_dim, ch)]
        layers += [ResidualUnit(ch, ch, groups) for _ in range(blocks)]
        for i in reversed(range(len(widths))):
            for _ in range(blocks):
                layers.append(ResidualUnit(ch, widths[i], groups))
                ch = widths[i]
            if i > 0:
                time, space = kinds[i - 1]
                factors = (2 if time else 1, 2 if space else 1, 2 if space else 1)
                layers += [CausalConv3d(ch, ch * math.prod(factors)), Depth2Space3D(factors)]
        layers += [GroupNorm3D(groups, ch), Swish(ch), CausalConv3d(ch, config.in_channels)]
        self.layers = nn.ModuleList(layers)

    @property
    def last_layer_weight(self) -> torch.Tensor:
        """The weight the adaptive GAN weight balances gradients at."""
        return self.layers[-1].conv.weight

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        for layer in self.layers:
            x = layer(x)
        return self.to_pixels(x)

    @staticmethod
    def to_pixels(x: torch.Tensor) -> torch.Tensor:
        return x * 2 - 1  # the reference's [0, 1] -> [-1, 1]
