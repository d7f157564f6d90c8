"""Small deterministic detectors with the real call signature, for tests that need no weights."""

import torch
import torch.nn.functional as F

from nbp.metrics.detector import Detector

POOL = (2, 2, 2)
FEATURE_DIM = 3 * 8


class PoolingDetector(Detector):
    """Average-pools the detector input to (3, 2, 2, 2) and records the call flags it was given."""

    kind = "standin"

    def __init__(self):
        super().__init__(source=None, sha256=None)
        self.calls: list[tuple[tuple[int, ...], bool, bool]] = []

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False) -> torch.Tensor:
        self.calls.append((tuple(x.shape), rescale, resize))
        return F.adaptive_avg_pool3d(x.float(), POOL).flatten(1)


class ScriptedStandIn(torch.nn.Module):
    """Same signature as StyleGAN-V's TorchScript I3D; its 400 outputs encode the flags it got."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        base = x.float().mean(dim=(1, 2, 3, 4)).unsqueeze(1)
        flags = torch.tensor([float(rescale), float(resize), float(return_features)], device=x.device)
        out = base.repeat(1, 400)
        out[:, :3] = flags
        return out


class ScriptedPoolingDetector(torch.nn.Module):
    """A cheap TorchScript detector with StyleGAN-V's signature and 400 pooled features, for command tests."""

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False, return_features: bool = False):
        x = x.float()
        if rescale:
            x = x / 127.5 - 1.0
        return F.adaptive_avg_pool3d(x.mean(dim=1, keepdim=True), [4, 10, 10]).flatten(1)


def save_scripted_pooling_detector(path) -> None:
    torch.jit.save(torch.jit.script(ScriptedPoolingDetector()), str(path))
