"""Optional perceptual loss: LPIPS-style distance between VGG16 features of frames.

Used only when the user supplies VGG16 weights as a file (a torchvision `vgg16` state dict,
or just its `features` part); nothing is ever downloaded. The distance is the mean squared
difference of channel-normalised activations at the five ReLU taps (LPIPS without its
learned per-channel weights).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from tokenizer.errors import UserError, first_line

# VGG16 "D" configuration; numbers are conv widths, "M" is 2x2 max pooling.
_VGG16 = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
# Indices (in torchvision's `features` Sequential) of the ReLUs whose outputs are compared.
_TAPS = (3, 8, 15, 22, 29)
_MEAN = (0.485, 0.456, 0.406)
_STD = (0.229, 0.224, 0.225)


def _vgg16_features() -> nn.Sequential:
    layers: list[nn.Module] = []
    ch = 3
    for item in _VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2))
        else:
            layers += [nn.Conv2d(ch, item, 3, padding=1), nn.ReLU()]
            ch = item
    return nn.Sequential(*layers)


class PerceptualLoss(nn.Module):
    def __init__(self, weights_path: str | os.PathLike, max_frames: int = 4):
        super().__init__()
        self.features = _vgg16_features()
        self.max_frames = max_frames
        self._load(Path(weights_path))
        self.requires_grad_(False)
        self.eval()
        self.register_buffer("mean", torch.tensor(_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(_STD).view(1, 3, 1, 1), persistent=False)

    def _load(self, path: Path) -> None:
        if not path.is_file():
            raise UserError(f"perceptual loss weights {path} do not exist (give a torchvision vgg16 state dict file)")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"{path} is not a readable state dict ({type(err).__name__})") from None
        if isinstance(state, dict) and any(k.startswith("features.") for k in state):
            state = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
        try:
            self.features.load_state_dict(state)
        except (RuntimeError, TypeError, AttributeError) as err:
            raise UserError(f"{path} does not hold VGG16 `features` weights: {first_line(err)}") from None

    def train(self, mode: bool = True) -> "PerceptualLoss":
        return super().train(False)  # a frozen feature extractor: never in training mode

    def _taps(self, images: torch.Tensor) -> list[torch.Tensor]:
        h = (images - self.mean) / self.std
        out = []
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in _TAPS:
                out.append(h)
            if i >= _TAPS[-1]:
                break
        return out

    def forward(self, video: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Both float [-1, 1] (B, 3, T, H, W); compares up to `max_frames` evenly spaced frames."""
        t = video.shape[2]
        frames = torch.linspace(0, t - 1, min(t, self.max_frames)).round().long().to(video.device)
        to_images = lambda v: rearrange((v.index_select(2, frames) + 1) / 2, "b c t h w -> (b t) c h w")  # noqa: E731
        loss = video.new_zeros(())
        for a, b in zip(self._taps(to_images(video)), self._taps(to_images(target))):
            loss = loss + (F.normalize(a, dim=1) - F.normalize(b, dim=1)).pow(2).sum(1).mean()
        return loss
