"""Read the reference implementation's released tokenizer (`magvit2_ucf.pt`, `magvit2_k600.pt`) into a VideoTokenizer.

The file is a `torch.save` of {"model_state_dict": {"module.encoder_layers.0.conv.weight": ..., ...}, ...};
our arch="magvit2" network keeps the reference's layer order and names, so the weights
only change prefix. The widths come from the weights themselves (the released files are
the "magvit2" preset; smaller networks of the same design load too).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from nbp.errors import UserError
from nbp.official.files import read_torch_file
from tokenizer import TokenizerConfig, VideoTokenizer

_PREFIXES = {"encoder_layers.": "encoder.layers.", "decoder_layers.": "decoder.layers."}


def convert_tokenizer_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Reference key names -> ours, as float32 (the released files may hold bf16/fp16 tensors)."""
    out = {}
    for key, value in state.items():
        key = key.removeprefix("module.")
        for old, new in _PREFIXES.items():
            if key.startswith(old):
                out[new + key[len(old):]] = value.float()
    return out


def infer_config(state: dict[str, torch.Tensor], source) -> TokenizerConfig:
    """The magvit2 config whose network has exactly these tensors (widths and depth read off the weights)."""
    try:
        base = state["encoder.layers.0.conv.weight"].shape[0]
        latent_dim = state["decoder.layers.0.conv.weight"].shape[1]
    except KeyError:
        raise UserError(f"{source} is not a reference MAGVIT-v2 tokenizer (no encoder_layers/decoder_layers "
                        "weights); pass magvit2_ucf.pt or magvit2_k600.pt") from None
    encoder_layers = {int(m.group(1)) for k in state if (m := re.match(r"encoder\.layers\.(\d+)\.", k))}
    # 4 stages of n units, 3 downsampling convs, n middle units, conv in, norm, swish, conv out (norm and swish
    # of the end have tensors too): 5n + 7 layers
    count = max(encoder_layers) + 1
    preset = TokenizerConfig.from_preset("magvit2")
    if (count - 7) % 5 or latent_dim != len(preset.fsq_levels):
        raise UserError(f"{source}: {count} encoder layers and {latent_dim} latent channels do not make a "
                        f"reference MAGVIT-v2 tokenizer (expected 5n+7 layers and {len(preset.fsq_levels)} channels)")
    return TokenizerConfig.from_preset("magvit2", base_channels=base, num_res_blocks=(count - 7) // 5,
                                       norm_groups=min(preset.norm_groups, base))


def official_tokenizer_from_state(state: dict[str, torch.Tensor], source="state dict") -> VideoTokenizer:
    ours = convert_tokenizer_state(state)
    tokenizer = VideoTokenizer(infer_config(ours, source))
    tokenizer.load_checked_state_dict(ours, source)
    return tokenizer.eval()


def read_official_tokenizer_state(path: str | Path) -> dict[str, torch.Tensor]:
    data = read_torch_file(path, "reference tokenizer (magvit2_*.pt)")
    state = data.get("model_state_dict") if isinstance(data, dict) else None
    if not isinstance(state, dict):
        hint = " (it looks like a transformer checkpoint; pass it as --transformer)" if isinstance(data, dict) and "state_dict" in data else ""
        raise UserError(f"{path} is not a reference tokenizer file: no 'model_state_dict' in it{hint}")
    return state


def load_official_tokenizer(path: str | Path) -> VideoTokenizer:
    """magvit2_*.pt -> VideoTokenizer (arch="magvit2"), eval mode, float32 on the CPU.

    encode(video in [-1, 1]) -> ids (B, T', H', W'); decode(ids) -> video in [-1, 1].
    """
    return official_tokenizer_from_state(read_official_tokenizer_state(path), path)
