"""FVD protocol presets: everything that moves the number, named in one place.

A protocol fixes the detector file and its call flags, the pixel preprocessing
(uint8 step, resize kernel, crop or squash, value range), the covariance
normalisation (N or N - 1) and the usual sample counts. Scores are comparable
only under the same protocol, so every report names it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch

from nbp.errors import UserError
from nbp.metrics.detector import KNOWN_FILES, resize_frames
from nbp.metrics.i3d import InceptionI3d
from nbp.pixels import to_uint8, to_unit

RESIZE_MODES = ("detector", "short_side_crop", "squash")


@dataclass(frozen=True)
class FVDProtocol:
    name: str
    detector_kind: str  # which canonical detector file the cache lookup uses
    rescale: bool  # detector maps [0, 255] -> [-1, 1] itself
    resize: bool  # detector resizes to 224 itself
    quantize_uint8: bool  # round videos to uint8 first (as if saved as images)
    resize_mode: str  # "detector" (leave it to the detector), "short_side_crop" or "squash" to 224
    ddof: int  # covariance divided by N - ddof
    frames: int = 16  # the first `frames` frames are scored
    pre_resize: int | None = None  # frames first resized to this square size (K600: 64)
    num_real: int = 2048
    num_fake: int = 2048
    description: str = ""

    def __post_init__(self):
        if self.detector_kind not in KNOWN_FILES:
            raise UserError(f"FVDProtocol.detector_kind={self.detector_kind!r}; valid: {', '.join(KNOWN_FILES)}")
        if self.resize_mode not in RESIZE_MODES:
            raise UserError(f"FVDProtocol.resize_mode={self.resize_mode!r}; valid: {', '.join(RESIZE_MODES)}")
        if (self.resize_mode == "detector") != (self.rescale and self.resize):
            raise UserError(
                f"FVDProtocol.resize_mode={self.resize_mode!r} with rescale={self.rescale}, resize={self.resize}: "
                "'detector' mode needs rescale=True and resize=True, the other modes need both False"
            )
        if self.rescale != self.resize:
            raise UserError(f"FVDProtocol: rescale={self.rescale} and resize={self.resize} must be equal")
        if self.ddof not in (0, 1):
            raise UserError(f"FVDProtocol.ddof={self.ddof}; valid: 0 (divide by N) or 1 (divide by N - 1)")
        if self.frames < InceptionI3d.MIN_FRAMES:
            raise UserError(f"FVDProtocol.frames={self.frames}; I3D needs at least {InceptionI3d.MIN_FRAMES}")
        if self.pre_resize is not None and self.pre_resize < 1:
            raise UserError(f"FVDProtocol.pre_resize={self.pre_resize}; valid: a positive size or None")
        if self.num_real < 2 or self.num_fake < 2:
            raise UserError(f"FVDProtocol counts num_real={self.num_real}, num_fake={self.num_fake}; need at least 2 each")

    def preprocess(self, videos: torch.Tensor) -> torch.Tensor:
        """uint8 or float [0, 1] videos (B, 3, T, H, W) -> the detector input, float32.

        [0, 255] at the original size in "detector" mode, else [-1, 1] at 224x224.
        """
        if videos.ndim != 5 or videos.shape[1] != 3:
            raise UserError(f"FVD takes videos (B, 3, T, H, W), got shape {tuple(videos.shape)}")
        if videos.shape[2] < self.frames:
            raise UserError(f"FVD protocol '{self.name}' scores {self.frames} frames, got videos with {videos.shape[2]}")
        x = videos[:, :, : self.frames]
        x = to_unit(to_uint8(x)) if self.quantize_uint8 else to_unit(x)
        if self.pre_resize is not None:
            x = resize_frames(x, (self.pre_resize, self.pre_resize))
        size = InceptionI3d.SIZE
        if self.resize_mode == "detector":
            return x * 255.0
        if self.resize_mode == "short_side_crop":
            x = center_crop(resize_short_side(x, size), size)
        else:
            x = resize_frames(x, (size, size))
        return (x - 0.5) * 2.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resize_short_side(video: torch.Tensor, size: int) -> torch.Tensor:
    """Bilinear resize of (B, C, T, H, W) so that the shorter side is `size`, keeping the aspect ratio."""
    h, w = video.shape[-2:]
    scale = size / min(h, w)
    return resize_frames(video, (max(size, round(h * scale)), max(size, round(w * scale))))


def center_crop(video: torch.Tensor, size: int) -> torch.Tensor:
    h, w = video.shape[-2:]
    top, left = (h - size) // 2, (w - size) // 2
    return video[..., top : top + size, left : left + size]


PRESETS: dict[str, FVDProtocol] = {
    "styleganv": FVDProtocol(
        name="styleganv",
        detector_kind="torchscript",
        rescale=True,
        resize=True,
        quantize_uint8=True,
        resize_mode="detector",
        ddof=0,
        description="StyleGAN-V: uint8 videos, TorchScript I3D rescales and resizes, covariance / N",
    ),
    "nbp": FVDProtocol(
        name="nbp",
        detector_kind="torchscript",
        rescale=False,
        resize=False,
        quantize_uint8=False,
        resize_mode="short_side_crop",
        ddof=1,
        num_real=10000,
        num_fake=10000,
        description="NBP paper: float [0,1], bilinear short side to 224 + centre crop, (x-0.5)*2, TorchScript I3D, covariance / (N-1)",
    ),
    "tats": FVDProtocol(
        name="tats",
        detector_kind="state_dict",
        rescale=False,
        resize=False,
        quantize_uint8=True,
        resize_mode="squash",
        ddof=1,
        description="VideoGPT/TATS: uint8, bilinear squash to 224x224, 2x/255-1, state-dict I3D, covariance / (N-1)",
    ),
}


def get_protocol(name: str | FVDProtocol, **overrides) -> FVDProtocol:
    """A preset by name, optionally with fields replaced (e.g. pre_resize=64 for K600)."""
    if isinstance(name, FVDProtocol):
        base = name
    elif name in PRESETS:
        base = PRESETS[name]
    else:
        raise UserError(f"unknown FVD protocol '{name}'; valid: {', '.join(PRESETS)}")
    return dataclasses.replace(base, **overrides) if overrides else base
