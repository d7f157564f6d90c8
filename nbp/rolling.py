"""Rolling generation: token grids latent frame by latent frame, for any number of latent frames.

The first window is the model's own sequence, decoded block by block as always; each latent
frame is handed out as soon as its last block is sampled. A window model (NBPConfig.window)
then slides its window one latent frame at a time: the new window is the condition prefix
and the last W - 1 latent frames (for a frames-conditioned model the first `context_frames`
of them are its prefix), all written by one re-prefill of the KV cache, after which the
new latent frame's blocks are sampled as usual. The re-prefill is exact: the model sees
every window exactly as in training (positions 0 .. W - 1, "mid-clip" flag). A rolling
cache that kept the old keys would not be: with learned positions and block-causal
attention, every key of a shifted window differs from the one cached (see docs/long-videos.md).
"""

from __future__ import annotations

from collections import deque
from typing import Iterator

import torch

from nbp.blocks import BlockLayout
from nbp.errors import UserError
from nbp.sampler import decode_segments, sample_segments
from nbp.sampling_controls import SamplingControls


def latent_frames_for(frames: int, temporal_downsample: int) -> int:
    """Pixel frames 1 + s*k -> latent frames 1 + k of a causal tokenizer that downsamples time by s."""
    if frames < 1 or (frames - 1) % temporal_downsample:
        raise UserError(f"--frames {frames} is invalid; a causal tokenizer with temporal downsampling "
                        f"{temporal_downsample} takes 1 + {temporal_downsample}k frames (e.g. 17, 33, 65)")
    return 1 + (frames - 1) // temporal_downsample


def check_length(config, latent_frames: int) -> None:
    """One clear line when a model cannot generate `latent_frames` latent frames (context included)."""
    T, c = config.grid[0], config.context_frames
    if latent_frames <= c:
        raise UserError(f"{latent_frames} latent frames leave nothing to generate after the model's "
                        f"{c} context latent frames; ask for more frames")
    if latent_frames > T and not config.window:
        raise UserError(f"this model was trained on whole clips of {T} latent frames and cannot go beyond "
                        f"them; longer videos need a model trained on windows (NBPConfig.window)")
    if latent_frames != T and config.block[0] != 1:
        raise UserError(f"this model's blocks span {config.block[0]} latent frames, so it generates exactly "
                        f"{T} latent frames; ask for that length")


def rolling_model_calls(config, latent_frames: int) -> int:
    """Model calls (prefills included) to generate `latent_frames` latent frames, context included."""
    T, hw = config.grid[0], config.grid[1] * config.grid[2]
    first = min(latent_frames, T) - config.context_frames
    calls = sum(1 for _, b in decode_segments(config.layout, config.token_by_token) if b <= first * hw)
    # each later latent frame: one re-prefill that also yields its first block, then one call per block
    return calls + max(0, latent_frames - T) * (hw // config.block_len)


def _frame_groups(config) -> tuple[int, BlockLayout]:
    """(tokens per group, layout of a group): the latent frames that complete together (bt of them)."""
    bt = config.block[0]
    group = BlockLayout((bt, *config.grid[1:]), config.block)
    return group.num_tokens, group


@torch.no_grad()
def iter_latent_frames(
    model,
    cond=None,
    latent_frames: int | None = None,
    batch_size: int | None = None,
    *,
    controls: SamplingControls = SamplingControls(),
    generator: torch.Generator | None = None,
    decoder: str = "cache",
    compiled: bool = False,
    dtype: torch.dtype | None = None,
) -> Iterator[torch.Tensor]:
    """Yield the token grid (B, H', W') of each latent frame, in order, as soon as it is sampled.

    cond: what `nbp.sampler.sample_sequence` takes (class ids (B,), context tokens (B, P) in sequence
    order, or None with batch_size). A frames-conditioned model yields its context frames first.
    latent_frames: how many to yield, context included (default: the model's grid); beyond the grid
    the window slides (window models only). With the model's own length the tokens are exactly those
    of `sample_sequence` for the same generator. decoder: "cache" or "recompute" (the reference).
    The caller sets up the compute dtype (see nbp.precision.compute_context).
    """
    config = model.config
    T, c = config.grid[0], config.context_frames
    total = T if latent_frames is None else int(latent_frames)
    check_length(config, total)
    args = dict(controls=controls, generator=generator, decoder=decoder, compiled=compiled, dtype=dtype)
    # the last W - 1 latent frames, (B, H', W') each (a model of one latent frame keeps its one)
    recent: deque[torch.Tensor] = deque(maxlen=max(T - 1, 1))
    if c:
        recent.extend(config.context_layout.seq_to_grid(cond).unbind(1))
        yield from recent
    produced = len(recent)
    group_len, group = _frame_groups(config)
    for seq, (_, b) in sample_segments(model, cond, batch_size, **args):
        if b % group_len == 0:
            for frame in group.seq_to_grid(seq[:, b - group_len:b]).unbind(1):
                recent.append(frame.clone())
                produced += 1
                yield recent[-1]
                if produced == total:
                    return
    frame_layout = BlockLayout((1, *config.grid[1:]), config.block)
    for _ in range(produced, total):
        window = list(recent)
        window_cond = config.context_layout.grid_to_seq(torch.stack(window[:c], dim=1)) if c else cond
        known = torch.cat([frame_layout.grid_to_seq(f[:, None]) for f in window[c:]], dim=1)
        for seq, _ in sample_segments(model, window_cond, batch_size, known=known, clip_start=False, **args):
            pass  # the new latent frame ends the window: it is complete after the last block only
        recent.append(frame_layout.seq_to_grid(seq[:, known.shape[1]:].clone())[:, 0])
        yield recent[-1]
