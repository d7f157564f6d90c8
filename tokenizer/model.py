"""VideoTokenizer: causal 3D CNN encoder + quantizer + decoder, with save/load of weights and config in one file.

Video in and out: float [-1, 1], (B, 3, T, H, W) with T = 1 + temporal_downsample * k.
Tokens: int64 ids (B, T', H', W').
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from tokenizer.errors import UserError, first_line
from tokenizer.files import torch_save_atomic
from tokenizer.config import TokenizerConfig
from tokenizer.decoder import Decoder
from tokenizer.encoder import Encoder
from tokenizer.magvit2 import Magvit2Decoder, Magvit2Encoder
from tokenizer.quantizer import Quantized, Quantizer

FILE_FORMAT = "nbp-video-tokenizer"
FILE_VERSION = 1


@dataclass
class Reconstruction:
    video: torch.Tensor  # (B, 3, T, H, W), not clamped (the loss sees the raw output)
    quantized: Quantized


class VideoTokenizer(nn.Module):
    def __init__(self, config: TokenizerConfig):
        super().__init__()
        self.config = config
        magvit2 = config.arch == "magvit2"
        self.encoder = Magvit2Encoder(config) if magvit2 else Encoder(config)
        self.quantizer = Quantizer(config)
        self.decoder = Magvit2Decoder(config) if magvit2 else Decoder(config)

    # ----- shapes -----
    @property
    def vocab_size(self) -> int:
        return self.config.vocab_size

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        self._check_shape(frames, height, width)
        return self.config.latent_shape(frames, height, width)

    def _check_shape(self, frames: int, height: int, width: int) -> None:
        t, s = self.config.temporal_downsample, self.config.spatial_downsample
        if frames < 1 or (frames - 1) % t:
            raise UserError(f"video has {frames} frames; this tokenizer needs 1 + {t}*k frames (1, {1 + t}, {1 + 2 * t}, ...)")
        if height % s or width % s or height < s or width < s:
            raise UserError(f"video is {height}x{width} px; height and width must be multiples of {s} for this tokenizer")

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != self.config.in_channels:
            raise UserError(f"video tensor has shape {tuple(video.shape)}; expected (B, {self.config.in_channels}, T, H, W)")
        if not video.is_floating_point():
            raise UserError(f"video tensor is {video.dtype}; the tokenizer takes float in [-1, 1] (see nbp.pixels.to_model)")
        self._check_shape(*video.shape[2:])

    # ----- encode / decode -----
    def quantize(self, video: torch.Tensor) -> Quantized:
        """Encode and quantize; the codes keep straight-through gradients (used in training)."""
        self._check_video(video)
        return self.quantizer(self.encoder(video))

    def encode(self, video: torch.Tensor, return_latents: bool = False, dtype=None) -> torch.Tensor | Quantized:
        """float [-1, 1] (B, 3, T, H, W) -> int64 ids (B, T', H', W'), or the full `Quantized` result.

        dtype: compute dtype of the convolutions (default bfloat16 on CUDA, float32 on CPU);
        quantization itself always runs in float32.
        """
        with self._compute(video.device, dtype):
            quantized = self.quantize(video)
        return quantized if return_latents else quantized.ids

    def _compute(self, device, dtype):
        """The precision context of encode/decode. Without a dtype, training and code already under
        autocast keep theirs (Lightning's precision setting decides there)."""
        import contextlib

        from tokenizer import precision

        if dtype is None and (self.training or torch.is_autocast_enabled(torch.device(device).type)):
            return contextlib.nullcontext()
        dtype = precision.resolve_dtype(dtype, device)
        precision.enable_tf32(device, dtype)
        if self.decoder.last_layer_weight.dtype != torch.float32:
            return precision.autocast(device, torch.float32)  # weights already cast: run as they are
        return precision.autocast(device, dtype)

    def decode_codes(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(codes.to(self.decoder.last_layer_weight.dtype))

    def decode(self, ids: torch.Tensor, dtype=None) -> torch.Tensor:
        """int ids (B, T', H', W') -> float [-1, 1] video (B, 3, T, H, W), float32.

        dtype: compute dtype of the decoder (default bfloat16 on CUDA, float32 on CPU).
        """
        if ids.ndim != 4:
            raise UserError(f"token grid has shape {tuple(ids.shape)}; expected (B, T', H', W')")
        if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            raise UserError(f"token ids range over [{int(ids.min())}, {int(ids.max())}]; valid ids are 0..{self.vocab_size - 1}")
        with self._compute(ids.device, dtype):
            video = self.decode_codes(self.quantizer.ids_to_codes(ids))
        return video.float().clamp(-1.0, 1.0)

    def forward(self, video: torch.Tensor) -> Reconstruction:
        quantized = self.quantize(video)
        return Reconstruction(video=self.decode_codes(quantized.codes), quantized=quantized)

    # ----- files -----
    def save(self, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> None:
        """Write weights + config as one file (atomically), loadable with weights_only=True."""
        payload = {
            "format": FILE_FORMAT,
            "version": FILE_VERSION,
            "config": self.config.to_dict(),
            "state_dict": {k: v.detach().cpu() for k, v in self.state_dict().items()},
            "extra": dict(extra or {}),
        }
        torch_save_atomic(payload, path)

    @classmethod
    def load(cls, path: str | os.PathLike, map_location: str | torch.device = "cpu",
             config: TokenizerConfig | None = None) -> "VideoTokenizer":
        """Load a tokenizer file (or a TokenizerModule Lightning checkpoint).

        With `config`, the file must have been written for exactly that config;
        otherwise a UserError names the fields that differ.
        """
        file_config, state = read_tokenizer_file(path, map_location)
        if config is not None:
            check_same_config(config, file_config, path)
        model = cls(file_config)
        model.load_checked_state_dict(state, path)
        return model.eval()

    def load_checked_state_dict(self, state: dict[str, torch.Tensor], source: str | os.PathLike) -> None:
        own = self.state_dict()
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong_shape = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
        if missing or unexpected or wrong_shape:
            raise UserError(f"{source}: weights do not fit the tokenizer config "
                            f"(missing {missing[:3]}, unexpected {unexpected[:3]}, wrong shape {wrong_shape[:3]})")
        self.load_state_dict(state)


def check_same_config(expected: TokenizerConfig, found: TokenizerConfig, source: str | os.PathLike) -> None:
    want, got = expected.to_dict(), found.to_dict()
    differing = [f"{k}: file has {got[k]!r}, expected {want[k]!r}" for k in want if want[k] != got[k]]
    if differing:
        raise UserError(f"{source}: tokenizer config does not match ({'; '.join(differing)})")


def read_tokenizer_file(path: str | os.PathLike, map_location: str | torch.device = "cpu"
                        ) -> tuple[TokenizerConfig, dict[str, torch.Tensor]]:
    """(config, state_dict) from a tokenizer file or a TokenizerModule Lightning checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"tokenizer file {path} does not exist")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling errors come in many types; all mean "not our file"
        raise UserError(f"{path} is not a readable tokenizer file ({type(err).__name__}: {first_line(err, 120)})") from None
    if not isinstance(payload, dict):
        raise UserError(f"{path} is not a tokenizer file (expected a dict with 'config' and 'state_dict')")
    if payload.get("format") == FILE_FORMAT:
        return TokenizerConfig.from_dict(payload["config"]), payload["state_dict"]
    if "tokenizer_config" in payload and "state_dict" in payload:  # Lightning checkpoint of TokenizerModule
        prefix = "tokenizer."
        state = {k[len(prefix):]: v for k, v in payload["state_dict"].items() if k.startswith(prefix)}
        return TokenizerConfig.from_dict(payload["tokenizer_config"]), state
    raise UserError(f"{path} is not a tokenizer file: it has neither format '{FILE_FORMAT}' "
                    "nor is it a TokenizerModule checkpoint")
