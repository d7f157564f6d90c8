"""Shared helpers for the tests against the reference implementation's golden outputs."""

from __future__ import annotations

import math
from pathlib import Path

import torch

DATA = Path(__file__).resolve().parents[2] / "data" / "official"


def load_golden(name: str) -> dict:
    # the golden files are plain tensors, lists and dicts written by the fixture generator
    return torch.load(DATA / name, map_location="cpu", weights_only=True)


def rule_weights(manifest) -> dict[str, torch.Tensor]:
    """The tokenizer fixture's weights, rebuilt from its documented rule (`weight_rule` in the file)."""
    state = {}
    for index, (name, shape) in enumerate(manifest):
        gen = torch.Generator().manual_seed(1000 + index)
        noise = torch.randn(list(shape), generator=gen)
        # the rule is applied in this order: Swish's beta is 5-dim, so it is drawn as a weight
        if len(shape) >= 2:
            tensor = noise / math.sqrt(math.prod(shape) / shape[0])
        elif name.endswith(".beta"):
            tensor = 1 + 0.1 * noise
        elif name.endswith(".weight"):
            tensor = 1 + 0.1 * noise
        else:
            tensor = 0.05 * noise
        state[f"module.{name}"] = tensor
    return state


def reference_tokenizer_state(seed: int, **overrides) -> dict[str, torch.Tensor]:
    """A smaller network of the reference design with its key names and bf16 tensors, as a released file holds it."""
    from tokenizer import TokenizerConfig, VideoTokenizer

    torch.manual_seed(seed)
    config = TokenizerConfig.from_preset("magvit2", **{"base_channels": 32, "num_res_blocks": 1, **overrides})
    state = {}
    for key, value in VideoTokenizer(config).state_dict().items():
        key = key.replace("encoder.layers.", "encoder_layers.").replace("decoder.layers.", "decoder_layers.")
        state[f"module.{key}"] = value.to(torch.bfloat16)
    return state
