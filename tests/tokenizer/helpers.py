"""Tiny tokenizer configs for fast CPU tests."""

from tokenizer import TokenizerConfig


def tiny_config(**overrides) -> TokenizerConfig:
    """17x16x16 -> 5x4x4 latents; a few thousand parameters."""
    base = dict(base_channels=8, channel_mults=(1, 1, 2), num_res_blocks=1, norm_groups=4,
                temporal_downsample=4, spatial_downsample=4, quantizer="fsq", fsq_levels=(5, 5, 5))
    return TokenizerConfig(**{**base, **overrides})
