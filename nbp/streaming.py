"""`stream`: videos handed out frame by frame while they are generated.

    for frames in stream(model, tokenizer, cond=[0, 3], seed=0):   # uint8 (B, 3, n, H, W)
        show(frames)                                                # n = 1, then 4, 4, ...

Every latent frame is decoded to pixels as soon as its tokens are sampled: the causal
tokenizer decoder keeps its per-layer state (tokenizer.streaming), so each latent frame
costs the same and the first frame comes after one latent frame's work. Concatenated
along time, the yielded frames are the video `generate` returns for the same arguments.
"""

from __future__ import annotations

from typing import Iterator

import torch

from nbp import pixels
from nbp.errors import UserError
from nbp.sampling import generator_for, check_compatible, iter_token_frames
from nbp.sampling_controls import SamplingControls
from tokenizer.streaming import StreamingDecoder

__all__ = ["stream", "stream_frames"]


def stream(
    model,
    tokenizer,
    cond=None,
    num: int | None = None,
    *,
    frames: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    cfg_scale: float = 1.0,
    cfg_ramp: bool = False,
    generator: torch.Generator | None = None,
    seed: int | None = None,
    compile: bool = False,
    dtype=None,
) -> Iterator[torch.Tensor]:
    """Yield uint8 frames (B, 3, n, H, W) as each latent frame is sampled and decoded.

    The arguments are those of `nbp.sampling.generate` (frames: pixel frames, 1 + 4k, beyond the
    model's length with a window model). n is 1 for the first latent frame and the tokenizer's
    temporal_downsample after it; a frames-conditioned model starts with its reconstructed
    context, as `generate` does.
    """
    controls = SamplingControls(temperature=temperature, top_k=top_k, top_p=top_p,
                                cfg_scale=cfg_scale, cfg_ramp=cfg_ramp)
    device = next(model.parameters()).device
    return stream_frames(model, tokenizer, cond, num, frames=frames, controls=controls,
                         generator=generator_for(device, generator, seed), compile=compile, dtype=dtype)


def stream_frames(model, tokenizer, cond=None, num: int | None = None, *, frames: int | None = None,
                  controls: SamplingControls = SamplingControls(), generator: torch.Generator | None = None,
                  compile: bool = False, dtype=None) -> Iterator[torch.Tensor]:
    """`stream` with the sampling controls as one object (the form `nbp sample --stream` uses)."""
    if tokenizer is None:
        raise UserError("streaming decodes pixels as tokens come; pass tokenizer=...")
    check_compatible(model, tokenizer)  # here, not at the first next(): a generator would defer it
    tokens = iter_token_frames(model, tokenizer, cond, num, frames=frames, controls=controls, generator=generator,
                               compile=compile, dtype=dtype)
    return _decoded(tokens, StreamingDecoder(tokenizer, dtype=dtype))


def _decoded(tokens: Iterator[torch.Tensor], decoder: StreamingDecoder) -> Iterator[torch.Tensor]:
    for ids in tokens:
        yield pixels.to_uint8(pixels.model_to_unit(decoder.push(ids)))
