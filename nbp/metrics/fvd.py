"""`FrechetVideoDistance`: a torchmetrics metric with float64 running statistics.

Only the count, the sum and the sum of outer products of the detector features
are kept (in float64), so any number of videos fits in memory, streaming equals
batch computation, and distributed runs sync by summing (dist_reduce_fx="sum").
"""

from __future__ import annotations

import os

import torch
from torch import nn
from torchmetrics import Metric

from nbp.errors import UserError
from nbp.metrics.detector import Detector, load_detector, load_detector_file
from nbp.metrics.frechet import frechet_distance, gaussian_from_sums
from nbp.metrics.protocols import FVDProtocol, get_protocol

SIDES = ("real", "fake")


class FrechetVideoDistance(Metric):
    """FVD under a named protocol ("styleganv", "nbp", "tats" or an `FVDProtocol`).

    `detector`: a `Detector` (or any module called as `detector(x, rescale, resize)`),
    a path to a detector file, or None to look it up (path env var, cache, download)
    the first time videos arrive; `update_features` never needs it.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(
        self,
        protocol: str | FVDProtocol = "nbp",
        detector: nn.Module | str | os.PathLike | None = None,
        feature_dim: int = 400,
        batch_size: int = 8,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if batch_size < 1:
            raise UserError(f"FrechetVideoDistance batch_size={batch_size}; valid: a positive integer")
        self.protocol = get_protocol(protocol)
        self.feature_dim, self.batch_size = feature_dim, batch_size
        if isinstance(detector, (str, os.PathLike)):
            detector = load_detector_file(detector)
        self.detector = detector
        for side in SIDES:
            self.add_state(f"{side}_count", torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_sum", torch.zeros(feature_dim, dtype=torch.float64), dist_reduce_fx="sum")
            self.add_state(f"{side}_outer", torch.zeros(feature_dim, feature_dim, dtype=torch.float64), dist_reduce_fx="sum")

    def get_detector(self) -> nn.Module:
        """The detector, loaded on first use and moved to the metric's device."""
        if self.detector is None:
            self.detector = load_detector(kind=self.protocol.detector_kind)
        return self.detector.to(self.real_sum.device).eval()

    def detector_info(self) -> dict:
        if isinstance(self.detector, Detector):
            return self.detector.describe()
        return {"kind": type(self.detector).__name__ if self.detector is not None else None, "path": None, "sha256": None}

    @torch.no_grad()
    def extract_features(self, videos: torch.Tensor) -> torch.Tensor:
        """Detector features (N, feature_dim) of uint8 / float [0, 1] videos, `batch_size` at a time."""
        detector = self.get_detector()
        device = self.real_sum.device
        feats = []
        for start in range(0, videos.shape[0], self.batch_size):
            x = self.protocol.preprocess(videos[start : start + self.batch_size].to(device))
            feats.append(detector(x, rescale=self.protocol.rescale, resize=self.protocol.resize).double())
        return torch.cat(feats) if feats else torch.zeros(0, self.feature_dim, dtype=torch.float64, device=device)

    def update(self, videos: torch.Tensor, real: bool, precomputed: bool = False) -> None:
        """Add videos (B, 3, T, H, W) to the real or generated set; with precomputed=True, features (B, D)."""
        features = videos if precomputed else self.extract_features(videos)
        if features.ndim != 2 or features.shape[1] != self.feature_dim:
            raise UserError(f"FVD features must be (N, {self.feature_dim}), got {tuple(features.shape)}")
        features = features.to(device=self.real_sum.device, dtype=torch.float64)
        side = "real" if real else "fake"
        setattr(self, f"{side}_count", getattr(self, f"{side}_count") + features.shape[0])
        setattr(self, f"{side}_sum", getattr(self, f"{side}_sum") + features.sum(dim=0))
        setattr(self, f"{side}_outer", getattr(self, f"{side}_outer") + features.T @ features)

    def update_features(self, features: torch.Tensor, real: bool) -> None:
        """Add precomputed detector features (N, feature_dim)."""
        self.update(features, real, precomputed=True)

    def gaussians(self) -> dict[str, tuple]:
        """Mean and covariance (NumPy float64) of each side, with the protocol's normalisation."""
        out = {}
        for side in SIDES:
            count = float(getattr(self, f"{side}_count"))
            if count < 2:
                raise UserError(f"FVD needs at least 2 {side} videos, got {count:g}")
            out[side] = gaussian_from_sums(
                count,
                getattr(self, f"{side}_sum").cpu().numpy(),
                getattr(self, f"{side}_outer").cpu().numpy(),
                self.protocol.ddof,
            )
        return out

    def compute(self) -> torch.Tensor:
        stats = self.gaussians()
        (mu_r, cov_r), (mu_f, cov_f) = stats["real"], stats["fake"]
        return torch.tensor(frechet_distance(mu_r, cov_r, mu_f, cov_f), dtype=torch.float64)

    def counts(self) -> dict[str, int]:
        return {side: int(getattr(self, f"{side}_count")) for side in SIDES}
