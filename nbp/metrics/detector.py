"""Find, fetch and load the FVD feature detector: a TorchScript I3D or an I3D state dict.

Lookup order: an explicit path, then `$NBP_FVD_DETECTOR`, then the cache directory
(`$NBP_CACHE` or `~/.cache/nbp`). When nothing is found the canonical file is
downloaded into the cache, unless `$NBP_OFFLINE` is set or the network is
unreachable, in which case one error line says what to fetch from where and where
to put it. Every loaded detector carries the sha256 of its file for reports.
"""

from __future__ import annotations

import os
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from nbp.errors import UserError, first_line
from nbp.files import atomic_path, sha256_file
from nbp.metrics.i3d import InceptionI3d

ENV_PATH = "NBP_FVD_DETECTOR"


@dataclass(frozen=True)
class DetectorFile:
    kind: str  # "torchscript" | "state_dict"
    filename: str
    url: str


KNOWN_FILES = {
    # StyleGAN-V's TorchScript export of the Kinetics-400 I3D.
    "torchscript": DetectorFile(
        "torchscript", "i3d_torchscript.pt", "https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1"
    ),
    # The VideoGPT / TATS state dict for `InceptionI3d`.
    "state_dict": DetectorFile(
        "state_dict", "i3d_pretrained_400.pt", "https://github.com/songweige/TATS/raw/main/tats/fvd/i3d_pretrained_400.pt"
    ),
}


def cache_dir() -> Path:
    return Path(os.environ.get("NBP_CACHE") or Path.home() / ".cache" / "nbp")


def offline() -> bool:
    return os.environ.get("NBP_OFFLINE", "").strip().lower() not in ("", "0", "false", "no")


class Detector(nn.Module):
    """Uniform call for every detector: `detector(x, rescale, resize) -> (B, 400)` logits.

    `rescale=True` means x holds [0, 255] values to be mapped to [-1, 1]; `resize=True`
    means frames are resized to 224x224 inside. Otherwise x is already [-1, 1] at 224.
    """

    kind = "unknown"

    def __init__(self, source: str | None = None, sha256: str | None = None):
        super().__init__()
        self.source, self.sha256 = source, sha256

    def describe(self) -> dict:
        return {"kind": self.kind, "path": self.source, "sha256": self.sha256}


class TorchScriptDetector(Detector):
    """Wraps a scripted module with StyleGAN-V's signature `forward(x, rescale, resize, return_features)`."""

    kind = "torchscript"

    def __init__(self, module: torch.jit.ScriptModule, source: str | None = None, sha256: str | None = None):
        super().__init__(source, sha256)
        self.module = module

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False) -> torch.Tensor:
        return self.module(x, rescale=rescale, resize=resize, return_features=True)


class I3DDetector(Detector):
    """Our `InceptionI3d`, doing the TorchScript model's rescale/resize itself when asked."""

    kind = "state_dict"

    def __init__(self, network: InceptionI3d, source: str | None = None, sha256: str | None = None):
        super().__init__(source, sha256)
        self.network = network.eval()

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False) -> torch.Tensor:
        if rescale:
            x = x / 127.5 - 1.0
        if resize:
            x = resize_frames(x, (InceptionI3d.SIZE, InceptionI3d.SIZE))
        return self.network(x)


def resize_frames(video: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (half-pixel, no antialias) resize of every frame of (B, C, T, H, W)."""
    b, c, t, h, w = video.shape
    if (h, w) == tuple(size):
        return video
    frames = video.permute(0, 2, 1, 3, 4).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=size, mode="bilinear", align_corners=False)
    return frames.reshape(b, t, c, *size).permute(0, 2, 1, 3, 4)


def is_torchscript_file(path: Path) -> bool:
    """TorchScript archives hold a `code/` folder; torch.save files (zip or legacy pickle) do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any("/code/" in name for name in archive.namelist())


def load_detector_file(path: str | os.PathLike) -> Detector:
    """Load a TorchScript detector or an I3D state dict (kind detected from the file)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise UserError(f"FVD detector file not found: {path} (give a TorchScript I3D or an i3d_pretrained_400.pt state dict)")
    digest = sha256_file(path)
    if is_torchscript_file(path):
        try:
            module = torch.jit.load(str(path), map_location="cpu").eval()
        except RuntimeError as err:
            raise UserError(f"cannot load TorchScript detector {path}: {first_line(err)}") from err
        return TorchScriptDetector(module, str(path), digest)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for corrupt or foreign files
        raise UserError(f"cannot read FVD detector {path} as a TorchScript file or a state dict: {first_line(err)}") from err
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise UserError(f"FVD detector {path} holds a {type(state).__name__}, expected an I3D state dict")
    network = InceptionI3d()
    problem = state_dict_mismatch(network, state)
    if problem:
        raise UserError(f"{path} is not a Kinetics-400 I3D state dict like i3d_pretrained_400.pt: {problem}")
    network.load_state_dict(state, strict=True)
    return I3DDetector(network, str(path), digest)


def state_dict_mismatch(network: nn.Module, state: dict) -> str:
    """Describe how `state` differs from `network`'s keys and shapes ('' when it loads strictly).

    The BatchNorm `num_batches_tracked` buffers may be absent (the public file omits them).
    """
    expected = network.state_dict()
    missing = [k for k in expected if k not in state and not k.endswith("num_batches_tracked")]
    unexpected = [k for k in state if k not in expected]
    reshaped = [
        f"{k} {tuple(v.shape)} != {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(getattr(v, "shape", ())) != tuple(expected[k].shape)
    ]
    parts = [(f"{len(items)} {what}, e.g. {', '.join(map(str, items[:3]))}") for what, items in
             (("missing", missing), ("unexpected", unexpected), ("with other shapes", reshaped)) if items]
    return "; ".join(parts)


def download(url: str, dest: Path, timeout: float = 30.0) -> None:
    """Fetch `url` to `dest` atomically; a failed or partial download leaves nothing behind."""
    with atomic_path(dest) as tmp:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)


def _missing_message(known: DetectorFile, dest: Path, why: str) -> str:
    return (
        f"FVD detector weights not found ({why}): download {known.url} and save it as {dest} "
        f"(or pass --detector PATH, or set {ENV_PATH}=PATH)"
    )


def load_detector(path: str | os.PathLike | None = None, kind: str = "torchscript") -> Detector:
    """The detector from `path`, `$NBP_FVD_DETECTOR`, the cache, or a download into the cache.

    `kind` ("torchscript" or "state_dict") picks which canonical file the cache lookup
    and the download use; an explicit path or the environment variable wins over it.
    """
    if kind not in KNOWN_FILES:
        raise UserError(f"unknown detector kind '{kind}'; valid: {', '.join(KNOWN_FILES)}")
    if path is None and os.environ.get(ENV_PATH):
        path = os.environ[ENV_PATH]
    if path is not None:
        return load_detector_file(path)
    known = KNOWN_FILES[kind]
    dest = cache_dir() / known.filename
    if not dest.is_file():
        if offline():
            raise UserError(_missing_message(known, dest, "NBP_OFFLINE is set"))
        try:
            download(known.url, dest)
        except OSError as err:
            raise UserError(_missing_message(known, dest, f"download failed: {err}")) from err
    return load_detector_file(dest)
