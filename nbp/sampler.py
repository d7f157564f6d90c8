"""The block-parallel decoding loop: prefill the condition, then one model call per block.

Sequence of model calls (see nbp.model for the decode API):
- start_block mode: `prefill` returns the logits of video block 0; each later call
  feeds the block just sampled and returns the logits of the whole next block.
  Calls = number of blocks.
- hybrid mode: `prefill` returns the logits of token 0; the first block (or the
  first hybrid_blocks blocks) is then filled token by token, after which whole
  blocks follow. Calls = block_len + number of blocks - 1 (95 for the UCF-101
  layout), or hybrid_blocks * block_len + number of blocks - hybrid_blocks.
Block (1, 1, 1) is plain next-token prediction: one call per token.

Two interchangeable sources of logits drive the same loop: `CachedDecoder` (the
static KV cache; what the sampler uses) and `RecomputeDecoder` (runs the training
forward over the whole sequence at every step; the no-cache baseline and the
reference the cache is tested against).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from nbp.blocks import BlockLayout
from nbp.devices import sync
from nbp.draw_buffers import DrawBuffers
from nbp.errors import UserError
from nbp.sampling_controls import SamplingControls, draw, guide

Segment = tuple[int, int]  # [start, end) positions of the generated sequence
SAMPLE_BLOCK = "nbp.sample_block"  # profiler label of the per-step sampling work (guidance, draw, writes)


def decode_segments(layout: BlockLayout, token_by_token: int) -> list[Segment]:
    """The slices of the sequence sampled by successive model calls, in order.

    token_by_token: leading tokens sampled one per call (NBPConfig.token_by_token; 0: none).
    """
    n, length = layout.num_tokens, layout.block_len
    first = [(j, j + 1) for j in range(token_by_token)]
    return first + [(a, a + length) for a in range(token_by_token, n, length)]


class CachedDecoder:
    """Logits from the model's one KV cache: `prefill` once, then one `step` per segment.

    The cache may have more rows than asked for (an earlier, larger batch made it); the
    caller pads its batch to `rows`, so every call has the shapes the compiled step saw.
    """

    def __init__(self, model, rows: int, device, dtype=None, compiled: bool = False):
        self.model = model
        self.cache = model.setup_cache(rows, device=device, dtype=dtype)
        self.buffers = model.draw_buffers  # reused by every step, call and batch, like the cache
        self.rows = self.cache.batch_size
        self.compiled = compiled
        self.start_len = model.config.token_by_token
        self.block_len = model.config.layout.block_len

    def start(self, cond, seq: torch.Tensor, segment: Segment, clip_start=None) -> torch.Tensor:
        """Prefill the condition, the start block and the tokens of `seq` before `segment` (known ones)."""
        known = seq[:, : segment[0]] if segment[0] else None
        return self.model.prefill(cond, self.cache, video=known, clip_start=clip_start)

    def feed(self, seq: torch.Tensor, done: Segment, segment: Segment) -> torch.Tensor:
        """Feed the tokens just sampled (`done`), get the logits of `segment`."""
        a, b = done
        if self.start_len and b == self.start_len:
            # The first K tokens went in one by one as [bos, v_0 .. v_{K-2}] (the start
            # block); the video blocks begin with the whole block that ends at v_{K-1}.
            a = b - self.block_len
        return self.model.step(seq[:, a:b], self.cache, compiled=self.compiled)


class RecomputeDecoder:
    """Logits from the training forward over the whole sequence at every step (no cache).

    Not-yet-sampled positions hold token 0; the block-causal mask guarantees they
    cannot influence the logits of the segment being sampled.
    """

    def __init__(self, model, rows: int, device, dtype=None, compiled: bool = False):
        self.model = model
        self.rows = rows
        self.cond = self.clip_start = None
        self.buffers = DrawBuffers(device)

    def start(self, cond, seq: torch.Tensor, segment: Segment, clip_start=None) -> torch.Tensor:
        self.cond, self.clip_start = cond, clip_start
        return self.feed(seq, (0, 0), segment)

    def feed(self, seq: torch.Tensor, done: Segment, segment: Segment) -> torch.Tensor:
        a, b = segment
        return self.model(seq, self.cond, self.clip_start)[:, a:b]


def _device_of(model) -> torch.device:
    return next(model.parameters()).device


def _batch_size_of(cond, default):
    return cond.shape[0] if isinstance(cond, torch.Tensor) else default


@dataclass
class DecodeStats:
    model_calls: int
    seconds: float
    tokens: int  # generated tokens per sample
    batch_size: int

    @property
    def tokens_per_second(self) -> float:
        return self.tokens * self.batch_size / max(self.seconds, 1e-12)


def _with_null(model, cond):
    """Stack the condition and its null twin: rows [0, B) conditional, [B, 2B) unconditional."""
    return torch.cat([cond, model.null_condition(cond)], dim=0)


def pad_rows(cond, rows: int):
    """Repeat the last condition row up to `rows` (padding rows are decoded and thrown away)."""
    if cond is None or cond.shape[0] == rows:
        return cond
    return torch.cat([cond, cond[-1:].expand(rows - cond.shape[0], *cond.shape[1:])], dim=0)


@torch.no_grad()
def sample_sequence(
    model,
    cond=None,
    batch_size: int | None = None,
    controls: SamplingControls = SamplingControls(),
    generator: torch.Generator | None = None,
    decoder: str = "cache",
    compiled: bool = False,
    dtype: torch.dtype | None = None,
) -> tuple[torch.Tensor, DecodeStats]:
    """Sample the generated token sequence (B, N) in block-major order.

    cond: class ids (B,), context tokens (B, P), or None for an unconditional model
    (then batch_size says how many). decoder: "cache" or "recompute". compiled: run
    the decode step compiled (this call only). dtype: of the KV cache (default: the
    autocast dtype if active, else the weights'); the caller sets up the compute dtype.
    """
    device = _device_of(model)
    sync(device)  # time the decoding, not earlier queued work
    started = time.perf_counter()
    calls = 0
    for seq, _ in sample_segments(model, cond, batch_size, controls, generator, decoder, compiled, dtype):
        calls += 1
    sync(device)
    seconds = time.perf_counter() - started
    layout = model.config.layout
    stats = DecodeStats(model_calls=calls, seconds=seconds, tokens=layout.num_tokens, batch_size=seq.shape[0])
    return seq, stats


@torch.no_grad()
def sample_segments(
    model,
    cond=None,
    batch_size: int | None = None,
    controls: SamplingControls = SamplingControls(),
    generator: torch.Generator | None = None,
    decoder: str = "cache",
    compiled: bool = False,
    dtype: torch.dtype | None = None,
    known: torch.Tensor | None = None,
    clip_start: bool = True,
):
    """`sample_sequence` one model call at a time: yields (seq (B, N), (a, b)) once seq[:, a:b] is sampled.

    known (B, n): the first n generated tokens, given instead of sampled (whole blocks past any
    token-by-token start); only the rest is sampled, after one prefill that writes them all.
    clip_start (window models): whether the sequence starts at the clip's first latent frame.
    The yielded `seq` is the decoder's buffer: read it before asking for the next segment.
    """
    config = model.config
    layout = config.layout  # the generated tokens (context frames excluded)
    batch = _batch_size_of(cond, batch_size)
    if batch is None or batch < 1:
        raise UserError(f"batch size {batch!r} is invalid; give a condition or a batch size >= 1")
    if controls.guided and config.condition == "none":
        raise UserError(f"cfg_scale={controls.cfg_scale} needs a conditional model; this one has condition='none'")
    device = _device_of(model)

    rows = 2 * batch if controls.guided else batch
    model_cond = _with_null(model, cond) if controls.guided else cond
    decoder_cls = {"cache": CachedDecoder, "recompute": RecomputeDecoder}[decoder]
    dec = decoder_cls(model, rows, device, dtype=dtype, compiled=compiled)
    model_cond = pad_rows(model_cond, dec.rows)
    segments = decode_segments(layout, config.token_by_token)

    seq = torch.zeros(dec.rows, layout.num_tokens, dtype=torch.long, device=device)
    first = 0
    if known is not None and known.shape[1]:
        first = known.shape[1]
        if known.shape[0] != batch or first not in [a for a, _ in segments]:
            raise ValueError(f"known tokens {tuple(known.shape)}: need ({batch}, n) with n at a block start")
        seq[:batch, :first] = known
        seq[batch:rows, :first] = known[: rows - batch]
    flags = None
    if config.window:
        flags = torch.full((dec.rows,), bool(clip_start), dtype=torch.bool, device=device)
    todo = [(i, s) for i, s in enumerate(segments) if s[0] >= first]
    logits = dec.start(model_cond, seq, todo[0][1], clip_start=flags)
    for step, (index, (a, b)) in enumerate(todo):
        with torch.profiler.record_function(SAMPLE_BLOCK):
            if controls.guided:
                scale = controls.scale_at(index, len(segments))
                cond_logits = dec.buffers.float32("cond_logits", logits[:batch])
                uncond_logits = dec.buffers.float32("uncond_logits", logits[batch:rows])
                logits = guide(cond_logits, uncond_logits, scale, dec.buffers)
            tokens = draw(logits[:batch], controls, generator, dec.buffers)  # lives in dec.buffers until the next draw
            seq[:batch, a:b] = tokens
            if controls.guided:
                seq[batch:rows, a:b] = tokens
        yield seq[:batch], (a, b)
        if step + 1 < len(todo):
            logits = dec.feed(seq, (a, b), todo[step + 1][1])
