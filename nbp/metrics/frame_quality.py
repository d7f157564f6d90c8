"""PSNR and SSIM of predicted frames against the ground truth, as a syncable torchmetrics metric.

Both are computed per frame on [0, 1] pixels and averaged over all frames of all
videos (the frame-prediction convention); SSIM uses the usual 11x11 Gaussian
window (sigma 1.5) from torchmetrics, shrunk to the largest odd size that fits frames
smaller than 12 pixels. The one SSIM of the project: tokenizer validation, `nbp eval recon`
and `nbp eval k600` all use `frame_ssim`.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.functional.image import structural_similarity_index_measure


def frame_psnr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """PSNR (dB) of every frame of (B, C, T, H, W) [0, 1] videos -> (B, T)."""
    mse = (pred.double() - target.double()).pow(2).mean(dim=(1, 3, 4))
    return 10.0 * torch.log10(1.0 / mse.clamp_min(eps))


def frame_ssim(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of every frame of (B, C, T, H, W) [0, 1] videos -> (B, T)."""
    b, c, t, h, w = pred.shape
    as_images = lambda v: v.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w).float()  # noqa: E731
    kernel = min(11, (min(h, w) - 1) | 1)  # the window must fit inside the frame
    values = structural_similarity_index_measure(as_images(pred), as_images(target), data_range=1.0,
                                                 kernel_size=kernel, reduction="none")
    return values.reshape(b, t).double()


def _unit_float64(video: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] or float [0, 1] -> float64 [0, 1] (PSNR is reported to many digits)."""
    return video.double() / 255.0 if video.dtype == torch.uint8 else video.double()


class FrameQuality(Metric):
    """Mean per-frame PSNR and SSIM over everything passed to `update(pred, target)`."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        for name in ("psnr_sum", "ssim_sum", "frames"):
            self.add_state(name, torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        if pred.shape != target.shape or pred.ndim != 5:
            raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} must be equal (B, C, T, H, W)")
        pred, target = _unit_float64(pred), _unit_float64(target)
        self.psnr_sum += frame_psnr(pred, target).sum()
        self.ssim_sum += frame_ssim(pred, target).sum()
        self.frames += pred.shape[0] * pred.shape[2]

    def compute(self) -> dict[str, float]:
        n = self.frames.clamp_min(1)
        return {"psnr": float(self.psnr_sum / n), "ssim": float(self.ssim_sum / n), "frames": int(self.frames)}
