"""TokenizerConfig: the architecture of the 3D VQ tokenizer, validated, with named presets.

Only what changes the weights lives here (it is saved inside every tokenizer file and
compared on load); training settings (loss weights, discriminator) live in `losses.py`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tokenizer.errors import UserError

QUANTIZERS = ("fsq", "lfq", "vq")
# "nbp": this project's encoder/decoder; "magvit2": the reference implementation's network,
# layer by layer, with its old FSQ bound (tokenizer/magvit2.py), so its released weights load.
ARCHS = ("nbp", "magvit2")


def _is_power_of_two(n: int) -> bool:
    return n >= 1 and (n & (n - 1)) == 0


@dataclass
class TokenizerConfig:
    in_channels: int = 3  # colour channels of the video (3: RGB)
    # Width of the first (full resolution) stage; stage i has base_channels * channel_mults[i].
    base_channels: int = 128
    # One entry per stage: its width as a multiple of base_channels. The encoder downsamples between
    # stages, so len(channel_mults) - 1 must be at least the number of factor-2 steps of the compression.
    channel_mults: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2  # residual blocks per stage, in the encoder and in the decoder
    # Group norm groups (each frame is normalised on its own, which keeps the model causal).
    norm_groups: int = 32
    # Temporal compression, a power of two: 17 frames -> 1 + 16 / 4 = 5 latent frames at 4.
    temporal_downsample: int = 4
    # Spatial compression, a power of two (patch_size included): 128 px -> 16 latent positions at 8.
    spatial_downsample: int = 8
    # Pixels folded into channels (space-to-depth) before the first conv and unfolded after the last;
    # part of spatial_downsample. 2 makes the full-resolution stage 4x cheaper (the CPU demo uses it).
    patch_size: int = 1
    # tanh on the decoder output. Pixels live in [-1, 1]; the tanh keeps the output there and lets
    # flat, saturated colours (black background, pure colours) be hit exactly with a moderate
    # pre-activation, so the decoder's effort goes to edges (single synthetic frames: +3 dB at equal
    # steps; 10-minute synthetic clips: SSIM 0.85 -> 0.97). Off in the paper presets, whose MAGVIT-v2
    # decoder ends linearly; files without this field load with it off.
    tanh_output: bool = False
    # Residual blocks and the pixel-facing first/last convs see one frame at a time (1x3x3 kernels);
    # time is then mixed only by the strided downsampling convs, the decoder's first conv and the
    # depth-to-space upsampling. On the synthetic clips this learned far faster per CPU second
    # (300-s runs, same seed: 28.8 dB against 25.5 with 3x3x3 everywhere) and with fewer weights.
    # Off in the paper presets (MAGVIT-v2 is 3D throughout); files without the field load with it off.
    per_frame_convs: bool = False
    # Latent frames the decoder's first conv reads (the current one and those before it). 3 mixes
    # neighbouring latent frames; 1 decodes every latent frame from its own codes, which is enough
    # because the encoder's latent frame t already saw the pixel frames before its own.
    decoder_time_kernel: int = 3
    quantizer: str = "fsq"  # "fsq" (finite scalar), "lfq" (lookup-free) or "vq" (codebook with EMA)
    fsq_levels: tuple[int, ...] = (8, 8, 8, 5, 5, 5)  # FSQ: levels per latent dim; codes = their product
    lfq_bits: int = 16  # LFQ codebook = 2 ** lfq_bits, latent dim = lfq_bits
    vq_codebook_size: int = 8192  # VQ: number of codes
    vq_dim: int = 8  # VQ: latent dim of each code
    arch: str = "nbp"  # "nbp": this project's encoder/decoder; "magvit2": the reference network, for its released weights

    def __post_init__(self) -> None:
        self.channel_mults = tuple(int(m) for m in self.channel_mults)
        self.fsq_levels = tuple(int(level) for level in self.fsq_levels)
        positive = ("in_channels", "base_channels", "num_res_blocks", "norm_groups", "lfq_bits",
                    "vq_codebook_size", "vq_dim", "decoder_time_kernel")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise UserError(f"TokenizerConfig.{name}={value!r} is invalid; it must be a positive integer")
        if not self.channel_mults or any(m < 1 for m in self.channel_mults):
            raise UserError(f"TokenizerConfig.channel_mults={self.channel_mults} is invalid; "
                            "give one positive multiplier per stage, e.g. [1, 2, 2, 4]")
        for name in ("temporal_downsample", "spatial_downsample", "patch_size"):
            value = getattr(self, name)
            if not _is_power_of_two(value):
                raise UserError(f"TokenizerConfig.{name}={value} is invalid; it must be a power of two (1, 2, 4, 8, ...)")
        if self.patch_size > self.spatial_downsample:
            raise UserError(f"TokenizerConfig.patch_size={self.patch_size} is larger than "
                            f"spatial_downsample={self.spatial_downsample}; it must be at most that")
        transitions = len(self.channel_mults) - 1
        needed = max(self.temporal_steps, self.spatial_steps)
        if needed > transitions:
            raise UserError(f"TokenizerConfig.channel_mults has {len(self.channel_mults)} stages, which allows "
                            f"{transitions} downsampling steps, but the compression needs {needed}; "
                            f"give at least {needed + 1} multipliers")
        for mult in self.channel_mults:
            if (self.base_channels * mult) % self.norm_groups:
                raise UserError(f"TokenizerConfig.norm_groups={self.norm_groups} must divide every stage width "
                                f"(base_channels * channel_mults = {[self.base_channels * m for m in self.channel_mults]})")
        for name in ("tanh_output", "per_frame_convs"):
            if not isinstance(getattr(self, name), bool):
                raise UserError(f"TokenizerConfig.{name}={getattr(self, name)!r} is invalid; it must be true or false")
        if self.quantizer not in QUANTIZERS:
            raise UserError(f"TokenizerConfig.quantizer={self.quantizer!r} is invalid; valid: {', '.join(QUANTIZERS)}")
        if not self.fsq_levels or any(level < 2 for level in self.fsq_levels):
            raise UserError(f"TokenizerConfig.fsq_levels={list(self.fsq_levels)} is invalid; every level must be >= 2")
        if self.arch not in ARCHS:
            raise UserError(f"TokenizerConfig.arch={self.arch!r} is invalid; valid: {', '.join(ARCHS)}")
        if self.arch == "magvit2":
            self._check_magvit2()
        if self.lfq_bits > 20:
            raise UserError(f"TokenizerConfig.lfq_bits={self.lfq_bits} is too large; use at most 20 (1M codes)")

    def _check_magvit2(self) -> None:
        """The reference network has none of this project's options; refuse them instead of ignoring them."""
        fixed = dict(patch_size=1, tanh_output=False, per_frame_convs=False, decoder_time_kernel=3, quantizer="fsq")
        for name, value in fixed.items():
            if getattr(self, name) != value:
                raise UserError(f"TokenizerConfig.{name}={getattr(self, name)!r} is invalid with arch='magvit2'; "
                                f"the reference network needs {value!r}")

    # ----- derived quantities -----
    @property
    def temporal_steps(self) -> int:
        return int(math.log2(self.temporal_downsample))

    @property
    def spatial_steps(self) -> int:
        """Spatial halvings done by strided convs (the patch folding does the rest)."""
        return int(math.log2(self.spatial_downsample // self.patch_size))

    @property
    def res_time_kernel(self) -> int:
        """Time extent of the residual blocks' and pixel-facing convs' kernels."""
        return 1 if self.per_frame_convs else 3

    @property
    def latent_dim(self) -> int:
        """Channels of the latent the quantizer sees (the codebook dimension)."""
        if self.quantizer == "fsq":
            return len(self.fsq_levels)
        if self.quantizer == "lfq":
            return self.lfq_bits
        return self.vq_dim

    @property
    def vocab_size(self) -> int:
        if self.quantizer == "fsq":
            return math.prod(self.fsq_levels)
        if self.quantizer == "lfq":
            return 2 ** self.lfq_bits
        return self.vq_codebook_size

    def latent_shape(self, frames: int, height: int, width: int) -> tuple[int, int, int]:
        """(T', H', W') of the token grid for a clip of this size (assumed valid, see VideoTokenizer)."""
        return ((frames - 1) // self.temporal_downsample + 1, height // self.spatial_downsample,
                width // self.spatial_downsample)

    # ----- (de)serialisation -----
    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TokenizerConfig":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise UserError(f"unknown TokenizerConfig fields {unknown}; valid: {sorted(known)}")
        return cls(**data)

    @classmethod
    def from_preset(cls, name: str, **overrides: Any) -> "TokenizerConfig":
        if name not in PRESETS:
            raise UserError(f"unknown tokenizer preset {name!r}; valid: {', '.join(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


PRESETS: dict[str, dict[str, Any]] = {
    # CPU demo: 17x32x32 -> 5x8x8 latents, 1000 codes; small enough to train in minutes on 2 cores.
    # Pixels are folded 2x2 into channels first, so no conv runs at the full 32x32 resolution.
    # One width (24) at every stage: wider late stages cost more per step than they gave back per step
    # (10-CPU-minute budget; 1,1,1 reached 23.8 dB where 1,2,4 reached 19.3 dB in the same 300 s, both at LR 2e-3).
    # Per-frame convs: 28.8 dB against 25.5 in the same 300 s (see per_frame_convs above).
    "synthetic": dict(base_channels=24, channel_mults=(1, 1, 1), num_res_blocks=1, norm_groups=8,
                      temporal_downsample=4, spatial_downsample=4, patch_size=2, tanh_output=True,
                      per_frame_convs=True, quantizer="fsq", fsq_levels=(8, 5, 5, 5)),
    # The paper's setting: 17x128x128 -> 5x16x16 = 1280 tokens, FSQ 64k codes (GPU sized).
    "ucf101": dict(base_channels=128, channel_mults=(1, 2, 2, 4), num_res_blocks=2, norm_groups=32,
                   temporal_downsample=4, spatial_downsample=8, quantizer="fsq", fsq_levels=(8, 8, 8, 5, 5, 5)),
    "k600": dict(base_channels=128, channel_mults=(1, 2, 2, 4), num_res_blocks=2, norm_groups=32,
                 temporal_downsample=4, spatial_downsample=8, quantizer="fsq", fsq_levels=(8, 8, 8, 5, 5, 5)),
    # The reference implementation's MAGVIT-v2 (370M parameters), the network of the released
    # magvit2_ucf.pt / magvit2_k600.pt: four residual units per stage, 128-256-256-512 wide.
    "magvit2": dict(arch="magvit2", base_channels=128, channel_mults=(1, 2, 2, 4), num_res_blocks=4, norm_groups=32,
                    temporal_downsample=4, spatial_downsample=8, quantizer="fsq", fsq_levels=(8, 8, 8, 5, 5, 5)),
}
