"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import torch


def sync(device: torch.device) -> None:
    """Wait for queued work on `device`, so a wall-clock reading covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
