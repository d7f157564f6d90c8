"""Pixel range conversions, in one place.

Users see uint8 [0, 255] or float [0, 1]; the tokenizer sees float [-1, 1].
Videos are (B, C, T, H, W) or (C, T, H, W); these functions are layout-agnostic.
"""

from __future__ import annotations

import torch


def to_unit(video: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float32 [0, 1]."""
    if video.dtype == torch.uint8:
        return video.float() / 255.0
    return video.float()


def unit_to_model(video: torch.Tensor) -> torch.Tensor:
    """float [0, 1] -> float [-1, 1] (tokenizer input)."""
    return video * 2.0 - 1.0


def to_model(video: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float32 [-1, 1] (tokenizer input)."""
    return unit_to_model(to_unit(video))


def model_to_unit(video: torch.Tensor) -> torch.Tensor:
    """Tokenizer output, float [-1, 1] -> float [0, 1], clamped."""
    return ((video.float() + 1.0) / 2.0).clamp(0.0, 1.0)


def to_uint8(video: torch.Tensor) -> torch.Tensor:
    """uint8 passes through; float [0, 1] is rounded to uint8 [0, 255]."""
    if video.dtype == torch.uint8:
        return video
    return (video.float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
