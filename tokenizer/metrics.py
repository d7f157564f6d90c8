"""Reconstruction quality numbers shared by validation and `nbp eval recon` (plain torch).

PSNR is computed per video on [0, 1] pixels and averaged over videos (not the PSNR of the
pooled error), which is how tokenizer papers report it. Codebook usage is the fraction of
codes that occur at least once; perplexity is exp(entropy) of the code histogram, i.e. the
number of equally used codes that would give the same entropy.
"""

from __future__ import annotations

import math

import torch


def video_psnr(pred: torch.Tensor, target: torch.Tensor, eps: float = 1e-10) -> torch.Tensor:
    """Per-video PSNR in dB for float [0, 1] videos (B, C, T, H, W) -> (B,)."""
    mse = (pred.float() - target.float()).pow(2).flatten(1).mean(1)
    return 10.0 * torch.log10(1.0 / (mse + eps))


def code_histogram(ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    return torch.bincount(ids.flatten().long(), minlength=vocab_size)


def codebook_stats(counts: torch.Tensor) -> dict[str, float]:
    """Usage fraction and perplexity from a histogram of code ids."""
    counts = counts.double()
    total = counts.sum()
    if total == 0:
        return {"code_usage": 0.0, "perplexity": 0.0, "codes_used": 0}
    p = counts[counts > 0] / total
    entropy = float(-(p * p.log()).sum())
    used = int((counts > 0).sum())
    return {"code_usage": used / counts.numel(), "perplexity": math.exp(entropy), "codes_used": used}
