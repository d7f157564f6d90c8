"""Inception-I3D (Kinetics-400), the FVD feature network, with TensorFlow "SAME" padding.

Module and parameter names match the public `i3d_pretrained_400.pt` state dict
(VideoGPT / TATS / NBP lineage) exactly, so it loads strictly. The network maps a
video in [-1, 1], (B, 3, T, 224, 224) with T >= 9, to 400 pre-softmax logits
averaged over time; FVD uses those logits, not the 1024-d pooled features.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """TensorFlow "SAME" padding of one dimension as (front, back); the extra pixel goes to the back."""
    if size % stride == 0:
        total = max(kernel - stride, 0)
    else:
        total = max(kernel - size % stride, 0)
    return total // 2, total - total // 2


def pad_same(x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
    """Zero-pad (B, C, T, H, W) so that a conv/pool with this kernel and stride behaves like TF "SAME"."""
    pads: list[int] = []
    # F.pad takes the last dimension first: (W_front, W_back, H_front, H_back, T_front, T_back).
    for size, k, s in reversed(list(zip(x.shape[2:], kernel, stride))):
        pads.extend(same_padding(size, k, s))
    return F.pad(x, pads)


def _triple(v: int | tuple[int, int, int]) -> tuple[int, int, int]:
    return (v, v, v) if isinstance(v, int) else tuple(v)


class Unit3D(nn.Module):
    """Conv3d (no bias, padding computed per call) -> BatchNorm3d -> ReLU."""

    def __init__(self, in_ch: int, out_ch: int, kernel=1, stride=1, batch_norm: bool = True, activation: bool = True, bias: bool = False):
        super().__init__()
        self.kernel, self.stride, self.activation = _triple(kernel), _triple(stride), activation
        self.conv3d = nn.Conv3d(in_ch, out_ch, self.kernel, self.stride, padding=0, bias=bias)
        # eps 1e-5 / momentum 0.001 as in the PyTorch port (TF used eps 1e-3); weights were converted for these.
        self.bn = nn.BatchNorm3d(out_ch, eps=1e-5, momentum=0.001) if batch_norm else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3d(pad_same(x, self.kernel, self.stride))
        if self.bn is not None:
            x = self.bn(x)
        return F.relu(x) if self.activation else x


class MaxPool3dSame(nn.Module):
    """Max pool with TF "SAME" padding.

    Zero padding equals -inf padding here because every pool in I3D follows a ReLU.
    """

    def __init__(self, kernel, stride):
        super().__init__()
        self.kernel, self.stride = _triple(kernel), _triple(stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool3d(pad_same(x, self.kernel, self.stride), self.kernel, self.stride)


class InceptionBlock(nn.Module):
    """Four parallel branches (1x1; 1x1->3^3; 1x1->3^3; pool->1x1) concatenated on channels."""

    def __init__(self, in_ch: int, widths: tuple[int, int, int, int, int, int]):
        super().__init__()
        w0, w1a, w1b, w2a, w2b, w3b = widths
        self.b0 = Unit3D(in_ch, w0)
        self.b1a = Unit3D(in_ch, w1a)
        self.b1b = Unit3D(w1a, w1b, kernel=3)
        self.b2a = Unit3D(in_ch, w2a)
        self.b2b = Unit3D(w2a, w2b, kernel=3)
        self.b3a = MaxPool3dSame(3, 1)
        self.b3b = Unit3D(in_ch, w3b)
        self.out_channels = w0 + w1b + w2b + w3b

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)), self.b3b(self.b3a(x))], dim=1)


# (name, input channels, branch widths b0, b1a, b1b, b2a, b2b, b3b) of the Kinetics I3D.
_INCEPTION_WIDTHS = {
    "Mixed_3b": (192, (64, 96, 128, 16, 32, 32)),
    "Mixed_3c": (256, (128, 128, 192, 32, 96, 64)),
    "Mixed_4b": (480, (192, 96, 208, 16, 48, 64)),
    "Mixed_4c": (512, (160, 112, 224, 24, 64, 64)),
    "Mixed_4d": (512, (128, 128, 256, 24, 64, 64)),
    "Mixed_4e": (512, (112, 144, 288, 32, 64, 64)),
    "Mixed_4f": (528, (256, 160, 320, 32, 128, 128)),
    "Mixed_5b": (832, (256, 160, 320, 32, 128, 128)),
    "Mixed_5c": (832, (384, 192, 384, 48, 128, 128)),
}


class InceptionI3d(nn.Module):
    """I3D up to the time-averaged class logits: (B, 3, T, 224, 224) in [-1, 1] -> (B, num_classes)."""

    MIN_FRAMES = 9  # fewer frames leave nothing for the final (2, 7, 7) average pool
    SIZE = 224

    def __init__(self, num_classes: int = 400, dropout: float = 0.5):
        super().__init__()
        self.Conv3d_1a_7x7 = Unit3D(3, 64, kernel=7, stride=2)
        self.MaxPool3d_2a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Conv3d_2b_1x1 = Unit3D(64, 64)
        self.Conv3d_2c_3x3 = Unit3D(64, 192, kernel=3)
        self.MaxPool3d_3a_3x3 = MaxPool3dSame((1, 3, 3), (1, 2, 2))
        self.Mixed_3b = InceptionBlock(*_INCEPTION_WIDTHS["Mixed_3b"])
        self.Mixed_3c = InceptionBlock(*_INCEPTION_WIDTHS["Mixed_3c"])
        self.MaxPool3d_4a_3x3 = MaxPool3dSame(3, 2)
        for name in ("Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e", "Mixed_4f"):
            setattr(self, name, InceptionBlock(*_INCEPTION_WIDTHS[name]))
        self.MaxPool3d_5a_2x2 = MaxPool3dSame(2, 2)
        self.Mixed_5b = InceptionBlock(*_INCEPTION_WIDTHS["Mixed_5b"])
        self.Mixed_5c = InceptionBlock(*_INCEPTION_WIDTHS["Mixed_5c"])
        self.avg_pool = nn.AvgPool3d((2, 7, 7), stride=1)
        self.dropout = nn.Dropout(dropout)
        self.logits = Unit3D(1024, num_classes, batch_norm=False, activation=False, bias=True)
        self._trunk = [
            "Conv3d_1a_7x7", "MaxPool3d_2a_3x3", "Conv3d_2b_1x1", "Conv3d_2c_3x3", "MaxPool3d_3a_3x3",
            "Mixed_3b", "Mixed_3c", "MaxPool3d_4a_3x3", "Mixed_4b", "Mixed_4c", "Mixed_4d", "Mixed_4e",
            "Mixed_4f", "MaxPool3d_5a_2x2", "Mixed_5b", "Mixed_5c",
        ]  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 5 or x.shape[1] != 3 or x.shape[2] < self.MIN_FRAMES or x.shape[3:] != (self.SIZE, self.SIZE):
            raise ValueError(f"I3D expects (B, 3, T>={self.MIN_FRAMES}, {self.SIZE}, {self.SIZE}) in [-1, 1], got {tuple(x.shape)}")
        for name in self._trunk:
            x = getattr(self, name)(x)
        x = self.logits(self.dropout(self.avg_pool(x)))  # (B, classes, T'', 1, 1)
        return x.squeeze(4).squeeze(3).mean(dim=2)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        """Load the public file strictly, with or without the BatchNorm `num_batches_tracked` buffers."""
        state_dict = dict(state_dict)
        for key, value in self.state_dict().items():
            if key.endswith("num_batches_tracked") and key not in state_dict:
                state_dict[key] = torch.zeros_like(value)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
