"""NBPTransformer: a decoder-only transformer trained to predict the next block of video tokens.

The input sequence is [condition prefix][start block][video block 0 .. block n-2];
the output at position j of a block predicts token j of the next block, so a
single forward pass at sampling time yields a whole block.

- start_block mode: the start block is block_len learned embeddings (bidirectional)
  whose outputs predict video block 0 in parallel.
- hybrid mode (the paper's): the start block is [bos, v_0 .. v_{K-2}] with a causal
  mask, so the first K tokens are generated one by one; its outputs predict v_0 .. v_{K-1}.
  K is the block length (the paper) or hybrid_blocks whole blocks; the video blocks
  then start at the last block the start block generated.

- context mode (the reference's frame prediction): no start block; the context
  prefix is block-causal and its last block predicts video block 0.

In every mode `forward(video)[:, i]` predicts `video[:, i]`. The released reference
models also need a text prefix (class_text_len), placeholders in the first video
block (hybrid_placeholders) and a vocabulary shared with text (video_offset);
see nbp/official/ and NBPConfig.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from nbp.attention import attention, build_mask, resolve_backend
from nbp.config import NBPConfig
from nbp.draw_buffers import DrawBuffers
from nbp.errors import UserError
from nbp.kv_cache import KVCache
from nbp.masks import block_causal_mask, group_boundaries

PREFIX, START, VIDEO = 0, 1, 2  # segment ids of the three parts of the sequence


# ----------------------------------------------------------------------------- building blocks


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotary position embedding on the last dim of x (.., S, D); cos/sin are (S, D/2)."""
    x1, x2 = x.float().chunk(2, dim=-1)
    out = torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)
    return out.type_as(x)


class SelfAttention(nn.Module):
    def __init__(self, cfg: NBPConfig):
        super().__init__()
        bias = cfg.arch == "reference"
        self.n_head, self.head_dim = cfg.n_head, cfg.head_dim
        self.qkv = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=bias)
        self.proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=bias)
        self.resid_drop = nn.Dropout(cfg.dropout)

    def forward(self, x, mask, backend, rope=None, cache: KVCache | None = None, layer: int = 0, index=None):
        B, S, C = x.shape
        q, k, v = (t.view(B, S, self.n_head, self.head_dim).transpose(1, 2) for t in self.qkv(x).split(C, dim=2))
        if rope is not None:
            q, k = rotate(q, *rope), rotate(k, *rope)
        if cache is not None and index is None:
            k, v = cache.update(layer, k, v)
        elif cache is not None:
            k, v = cache.update_static(layer, k, v, index)
        # no dropout on attention probabilities: it would make the backends differ (flex has none)
        y = attention(q, k, v, mask=mask, backend=backend)
        return self.resid_drop(self.proj(y.transpose(1, 2).reshape(B, S, C)))


class GeluMLP(nn.Module):
    def __init__(self, cfg: NBPConfig):
        super().__init__()
        self.fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd)
        self.proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.proj(F.gelu(self.fc(x))))


class SwiGLU(nn.Module):
    def __init__(self, cfg: NBPConfig):
        super().__init__()
        hidden = 64 * math.ceil(8 * cfg.n_embd / 3 / 64)  # about the parameters of a 4x GELU MLP
        self.gate = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.up = nn.Linear(cfg.n_embd, hidden, bias=False)
        self.proj = nn.Linear(hidden, cfg.n_embd, bias=False)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x):
        return self.drop(self.proj(F.silu(self.gate(x)) * self.up(x)))


def make_norm(cfg: NBPConfig) -> nn.Module:
    return nn.LayerNorm(cfg.n_embd) if cfg.arch == "reference" else nn.RMSNorm(cfg.n_embd)


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, cfg: NBPConfig):
        super().__init__()
        self.norm1, self.norm2 = make_norm(cfg), make_norm(cfg)
        self.attn = SelfAttention(cfg)
        self.mlp = GeluMLP(cfg) if cfg.arch == "reference" else SwiGLU(cfg)

    def forward(self, x, mask, backend, rope=None, cache=None, layer=0, index=None):
        x = x + self.attn(self.norm1(x), mask, backend, rope, cache, layer, index)
        return x + self.mlp(self.norm2(x))


# ----------------------------------------------------------------------------- the model



def token_cross_entropy(logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """Cross-entropy of (B, N, V) logits against (B, N) token ids; "none" gives (B, N).

    In float32 whatever the logits' dtype: a bf16 log-softmax over 64,000 codes loses the loss's digits.
    """
    loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten(), reduction=reduction)
    return loss.view(targets.shape) if reduction == "none" else loss

class NBPTransformer(nn.Module):
    def __init__(self, config: NBPConfig):
        super().__init__()
        self.config = cfg = config
        self.layout = cfg.layout
        self.prefix_len, self.block_len, self.num_tokens = cfg.prefix_len, cfg.block_len, cfg.num_tokens
        self.start_len = cfg.start_len
        self.seq_len = cfg.seq_len
        self.mask_spec = cfg.mask_spec

        # one extra token row: the null context token of frame-conditional models (never predicted)
        self.tok_emb = nn.Embedding(cfg.embedding_rows, cfg.n_embd)
        if cfg.class_text_len:
            # each class is a fixed sequence of text-token rows of tok_emb; the null class has its own
            self.register_buffer("class_text", torch.zeros(cfg.num_classes, cfg.class_text_len, dtype=torch.long))
            self.null_text_emb = nn.Parameter(torch.zeros(cfg.class_text_len, cfg.n_embd))
        elif cfg.condition == "class":
            # the last row is the learned null class, trained by condition dropout (for guidance)
            self.class_emb = nn.Embedding(cfg.num_classes + 1, cfg.n_embd)
        if cfg.window:
            # row 1: the window starts at the clip's first latent frame (one pixel frame), row 0: mid-clip
            # (four pixel frames); added to every input position, like class_every_position
            self.clip_start_emb = nn.Embedding(2, cfg.n_embd)
        if cfg.first_block == "start_block":
            self.start_emb = nn.Parameter(torch.zeros(self.block_len, cfg.n_embd))
        elif cfg.first_block == "hybrid":
            self.bos_emb = nn.Parameter(torch.zeros(1, cfg.n_embd))
        if cfg.hybrid_placeholders:
            self.placeholder_emb = nn.Parameter(torch.zeros(self.block_len - 1, cfg.n_embd))
        # Position tables are computed, never saved: built on the CPU even when the model is
        # built on the meta device to receive its weights (see nbp.model_file.build_model).
        with torch.device("cpu"):
            self.register_buffer("segments", self._segment_ids(), persistent=False)
            if cfg.arch != "reference":
                cos, sin = self._rope_tables()
                self.register_buffer("rope_cos", cos, persistent=False)
                self.register_buffer("rope_sin", sin, persistent=False)
        if cfg.arch == "reference":
            self.pos_emb = nn.Parameter(torch.zeros(self.seq_len, cfg.n_embd))
        else:
            self.segment_emb = nn.Embedding(3, cfg.n_embd)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.norm_f = make_norm(cfg)
        self.head = None if cfg.tie_head else nn.Linear(cfg.n_embd, cfg.video_offset + cfg.vocab_size, bias=False)

        bounds = group_boundaries(self.mask_spec)
        self._decode_group_end = dict(zip(bounds[:-1], bounds[1:]))  # valid step start -> its end
        self._backends: dict[str, str] = {}
        # Decoding state, never saved: the one KV cache and the draw's scratch beside it (see
        # setup_cache), and the compiled static step (see compile_step). Whether a call runs
        # compiled is its own argument.
        self._cache: KVCache | None = None
        self.draw_buffers: DrawBuffers | None = None
        self._compiled_step = None
        self.apply(self._init_weights)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # residual projections, scaled as in GPT-2
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * cfg.n_layer))
        for name in ("start_emb", "bos_emb", "pos_emb", "placeholder_emb", "null_text_emb"):
            if hasattr(self, name):
                nn.init.normal_(getattr(self, name), std=0.02)
        if cfg.compile:
            for block in self.blocks:
                block.compile()

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)

    # ------------------------------------------------------------------ position tables (built once)

    def _segment_ids(self) -> torch.Tensor:
        K, P = self.start_len, self.prefix_len
        return torch.tensor([PREFIX] * P + [START] * K + [VIDEO] * (self.seq_len - P - K), dtype=torch.long, device="cpu")

    def _rope_coords(self) -> torch.Tensor:
        """(S, 3) (t, h, w) of every position for the rotary embedding.

        Learned tokens (class, start block, bos) sit at (0, 0, 0) and are told
        apart by their own embeddings; context frames come at t = 1 ..; video
        tokens follow them in time. An input token gets the coordinates of the
        video token it is.
        """
        cfg, L, K = self.config, self.block_len, self.start_len
        offset = 1 + cfg.context_frames
        video = self.layout.coords + torch.tensor([offset, 0, 0], device="cpu")
        parts = []
        if cfg.condition == "class":
            parts.append(torch.zeros(1, 3, dtype=torch.long, device="cpu"))
        elif cfg.condition == "frames":
            parts.append(cfg.context_layout.coords + torch.tensor([1, 0, 0], device="cpu"))
        if cfg.first_block == "start_block":
            parts.append(torch.zeros(L, 3, dtype=torch.long, device="cpu"))
        else:
            parts += [torch.zeros(1, 3, dtype=torch.long, device="cpu"), video[: K - 1]]
        parts.append(video[K - L : self.num_tokens - L])
        return torch.cat(parts)

    def _rope_tables(self) -> tuple[torch.Tensor, torch.Tensor]:
        pairs = self.config.head_dim // 2
        split = [pairs - 2 * (pairs // 3), pairs // 3, pairs // 3]  # rotary pairs for t, h, w
        coords = self._rope_coords().double()
        angles = []
        for axis, n in enumerate(split):
            inv_freq = self.config.rope_theta ** (-torch.arange(n, dtype=torch.float64, device="cpu") / max(n, 1))
            angles.append(coords[:, axis, None] * inv_freq[None, :])
        angles = torch.cat(angles, dim=1)
        return angles.cos().float(), angles.sin().float()

    def _positions(self, x: torch.Tensor, where):
        """Add the position signal of positions `where` (a slice or an index tensor) to x; return (x, rope or None)."""
        if self.config.arch == "reference":
            return x + self.pos_emb[where], None
        x = x + self.segment_emb(self.segments[where])
        return x, (self.rope_cos[where], self.rope_sin[where])

    # ------------------------------------------------------------------ conditions

    def null_condition(self, cond):
        """The null condition of the same shape (classifier-free guidance)."""
        if self.config.condition == "class":
            return torch.full_like(cond, self.config.num_classes)
        if self.config.condition == "frames":
            return torch.full_like(cond, self.config.vocab_size)
        return None

    def drop_condition(self, cond):
        """Replace each sample's condition by the null one with probability p_uncond (training only)."""
        p = self.config.p_uncond
        if cond is None or p == 0.0:
            return cond
        drop = torch.rand(cond.shape[0], device=cond.device) < p
        drop = drop.view(-1, *([1] * (cond.ndim - 1)))
        return torch.where(drop, self.null_condition(cond), cond)

    def _check_cond(self, cond, batch_size: int):
        kind = self.config.condition
        if kind == "none":
            if cond is not None:
                raise UserError("this model is unconditional (condition='none'); pass cond=None")
            return
        want = (batch_size,) if kind == "class" else (batch_size, self.prefix_len)
        if not torch.is_tensor(cond) or cond.dtype != torch.long or tuple(cond.shape) != want:
            got = None if cond is None else f"{tuple(cond.shape)} {cond.dtype}"
            what = "class ids (B,) long" if kind == "class" else f"context tokens (B, {self.prefix_len}) long"
            raise UserError(f"condition={kind!r} needs {what}; got {got}")

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        """Embed video ids (and the null context id vocab_size)."""
        return self.tok_emb(ids + self.config.video_offset if self.config.video_offset else ids)

    def _with_placeholders(self, block_inputs: torch.Tensor) -> torch.Tensor:
        """hybrid_placeholders: the first video input block [v_0 .. v_{K-1}] becomes [v_{K-1}, placeholders]."""
        B, L = block_inputs.shape[0], self.block_len
        first = torch.cat([block_inputs[:, L - 1:L], self.placeholder_emb.expand(B, -1, -1).to(block_inputs.dtype)], 1)
        return torch.cat([first, block_inputs[:, L:]], dim=1)

    def _embed_class_text(self, cond) -> torch.Tensor:
        n = self.config.num_classes
        null = (cond < 0) | (cond >= n)
        text = self.tok_emb(self.class_text[cond.clamp(0, n - 1)])
        return torch.where(null[:, None, None], self.null_text_emb.to(text.dtype), text)

    def _embed_prefix(self, cond) -> torch.Tensor | None:
        kind = self.config.condition
        if self.config.class_text_len:
            return self._embed_class_text(cond)
        if kind == "class":
            # -1 means "no label": the null class
            cond = torch.where(cond < 0, self.config.num_classes, cond)
            return self.class_emb(cond)[:, None]
        if kind == "frames":
            return self._embed(cond)
        return None

    def _everywhere(self, prefix: torch.Tensor | None, clip_start, batch: int) -> torch.Tensor | None:
        """The vector (B, 1, C) every input position carries: the class embedding (class_every_position)
        plus the clip-start embedding (window models; clip_start None means every window starts the clip)."""
        vector = prefix if self.config.class_every_position else None
        if self.config.window:
            if clip_start is None:
                clip_start = torch.ones(batch, dtype=torch.long, device=self.clip_start_emb.weight.device)
            flag = self.clip_start_emb(torch.as_tensor(clip_start).long().reshape(batch))[:, None]
            vector = flag if vector is None else vector + flag
        return vector

    def _add_everywhere(self, x: torch.Tensor, vector: torch.Tensor | None) -> torch.Tensor:
        return x if vector is None else x + vector

    # ------------------------------------------------------------------ training forward

    def backend_for(self, device: torch.device) -> str:
        if device.type not in self._backends:
            self._backends[device.type] = resolve_backend(self.config.attn_backend, device)
        return self._backends[device.type]

    def forward(self, video: torch.Tensor, cond=None, clip_start=None) -> torch.Tensor:
        """video (B, N) long in sequence order -> logits (B, N, V); logits[:, i] predicts video[:, i].

        clip_start (window models): bool (B,), whether each window starts at its clip's first latent
        frame; None: every one does."""
        return self._logits(self._trunk(video, cond, clip_start)[:, self.config.logits_start:])

    @torch.no_grad()
    def all_logits(self, video: torch.Tensor, cond=None, clip_start=None) -> torch.Tensor:
        """Logits over every row of the head (the whole shared vocabulary) at every position of the
        training sequence, prefix included: what the reference model computes, for comparisons."""
        x = self.norm_f(self._trunk(video, cond, clip_start))
        return self.head(x) if self.head is not None else F.linear(x, self.tok_emb.weight[:-1])

    def _trunk(self, video: torch.Tensor, cond=None, clip_start=None) -> torch.Tensor:
        """The training sequence through the transformer blocks: (B, seq_len, C) before the final norm."""
        B, N, L, K = video.shape[0], self.num_tokens, self.block_len, self.start_len
        if video.ndim != 2 or video.shape[1] != N:
            raise UserError(f"expected video tokens (B, {N}) in block-major order, got {tuple(video.shape)}")
        self._check_cond(cond, B)
        if self.training:
            cond = self.drop_condition(cond)

        prefix = self._embed_prefix(cond)
        x = self._embed_inputs(prefix, video, N - L, B)
        x, rope = self._positions(x, slice(0, self.seq_len))
        x = self.drop(self._add_everywhere(x, self._everywhere(prefix, clip_start, B)))

        backend = self.backend_for(video.device)
        autocast = torch.is_autocast_enabled(video.device.type)
        compute_dtype = torch.get_autocast_dtype(video.device.type) if autocast else x.dtype
        mask = build_mask(backend, self.mask_spec, video.device, compute_dtype)
        for block in self.blocks:
            if self.config.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, mask, backend, rope, use_reentrant=False)
            else:
                x = block(x, mask, backend, rope)
        return x

    def _embed_inputs(self, prefix, video: torch.Tensor | None, end: int, B: int) -> torch.Tensor:
        """The input sequence [prefix][start block][video tokens K-L .. end-1 (hybrid) or 0 .. end-1]
        embedded (B, S, C); video None: the prefix and the start block (bos in hybrid mode) only."""
        L, K = self.block_len, self.start_len
        first_block = self.config.first_block
        parts = [prefix]
        if first_block == "start_block":
            parts.append(self.start_emb.expand(B, -1, -1))
        elif first_block == "hybrid":
            parts.append(self.bos_emb.expand(B, -1, -1))
            if video is not None:
                parts.append(self._embed(video[:, : K - 1]))
        if video is not None:
            block_inputs = self._embed(video[:, (K - L if first_block == "hybrid" else 0) : end])
            parts.append(self._with_placeholders(block_inputs) if self.config.hybrid_placeholders else block_inputs)
        return torch.cat([p for p in parts if p is not None], dim=1)

    def _logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits over the video ids only (the rows of a shared vocabulary past video_offset)."""
        x = self.norm_f(x)
        start, end = self.config.video_offset, self.config.video_offset + self.config.vocab_size
        if self.head is None:
            return F.linear(x, self.tok_emb.weight[start:end])
        return self.head(x) if start == 0 else F.linear(x, self.head.weight[start:end])

    def loss(self, video: torch.Tensor, cond=None, clip_start=None) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy over the generated tokens; returns (loss, logits)."""
        logits = self(video, cond, clip_start)
        return token_cross_entropy(logits, video), logits

    # ------------------------------------------------------------------ decoding with a KV cache

    def _cache_place(self, device=None, dtype=None) -> tuple[torch.device, torch.dtype]:
        """Where and in what dtype a cache lives: the weights' device; `dtype`, else autocast's, else the weights'."""
        param = next(self.parameters())
        device = torch.device(device) if device is not None else param.device
        if dtype is None:
            autocast = torch.is_autocast_enabled(device.type)
            dtype = torch.get_autocast_dtype(device.type) if autocast else param.dtype
        return device, dtype

    def new_cache(self, batch_size: int, device=None, dtype=None) -> KVCache:
        """A fresh static cache for one sequence per batch row (most callers want `setup_cache`)."""
        device, dtype = self._cache_place(device, dtype)
        cfg = self.config
        return KVCache(cfg.n_layer, batch_size, cfg.n_head, self.seq_len, cfg.head_dim, device, dtype)

    def setup_cache(self, max_batch: int, device=None, dtype=None) -> KVCache:
        """The model's one KV cache, with at least `max_batch` rows, in `dtype` on `device`.

        Allocated on the first call and reused by every later one, so its buffers keep
        their addresses and compiled steps / CUDA graphs recorded on them stay valid.
        It is replaced only when more rows, another dtype or another device are asked
        for; callers with fewer rows pad their batch up to `cache.batch_size`. The scratch
        of the block draw (`draw_buffers`) is kept beside it, on the same device.
        """
        device, dtype = self._cache_place(device, dtype)
        cache = self._cache
        if cache is None or cache.device != device or cache.dtype != dtype:
            self._cache = self.new_cache(max_batch, device, dtype)
        elif cache.batch_size < max_batch:
            cache = self._cache = None  # let the old buffers go before the larger ones are allocated
            self._cache = self.new_cache(max_batch, device, dtype)
        if self.draw_buffers is None or self.draw_buffers.device != device:
            self.draw_buffers = DrawBuffers(device)
        return self._cache

    def _run_cached(self, x: torch.Tensor, cache: KVCache, mask) -> torch.Tensor:
        """Eager decoding: write by slice at the host position, attend to the filled part of the cache."""
        x, rope = self._positions(x, slice(cache.pos, cache.pos + x.shape[1]))
        x = self._add_everywhere(x, cache.condition)
        backend = "sdpa" if mask is not None else self.backend_for(x.device)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, backend, rope, cache, layer)
        return x

    def _static_step(self, tokens: torch.Tensor, cache: KVCache) -> torch.Tensor:
        """Compiled decoding: positions live on the device and attention covers the whole
        buffer with the unwritten tail masked, so every step of one length has the same
        shapes and the same graph, whatever the position."""
        n = tokens.shape[1]
        index = cache.step_index(n)
        x, rope = self._positions(self._embed(tokens), index)
        x = self._add_everywhere(x, cache.condition)
        mask = cache.valid_keys(n)
        for layer, block in enumerate(self.blocks):
            x = block(x, mask, "sdpa", rope, cache, layer, index)
        return self._logits(x)

    def compile_step(self, mode: str | None = "default", backend="inductor"):
        """The torch.compile'd static-shape step that `step(..., compiled=True)` runs, made once.

        mode "default" picks "reduce-overhead" (CUDA graphs) on CUDA. At most two graphs per
        cache: one token (hybrid first block) and one block. Calling it again replaces the
        compiled step (e.g. another backend); it never switches eager calls to compiled.
        """
        if mode == "default":
            mode = "reduce-overhead" if next(self.parameters()).device.type == "cuda" else None
        self._compiled_step = torch.compile(self._static_step, mode=mode, backend=backend, dynamic=False)
        return self._compiled_step

    @torch.no_grad()
    def prefill(self, cond, cache: KVCache, video: torch.Tensor | None = None, clip_start=None) -> torch.Tensor:
        """Reset the cache and write the prefix and the start of the sequence.

        Returns logits (B, L, V) for video block 0 (start_block mode) or (B, 1, V)
        for the first video token (hybrid mode). video (B, n): video tokens already
        known (whole blocks, past any token-by-token start), written in the same call;
        the logits are then those of the block after them. clip_start: see `forward`.
        """
        B, L = cache.batch_size, self.block_len
        self._check_cond(cond, B)
        n = 0 if video is None else video.shape[1]
        if n and (n % L or n < self.config.token_by_token or self.config.hybrid_placeholders
                  or n > self.num_tokens - L):
            raise ValueError(f"prefill of {n} known video tokens: need whole blocks of {L}, at least "
                             f"{self.config.token_by_token} and at most {self.num_tokens - L}, no placeholders")
        cache.reset()
        prefix = self._embed_prefix(cond)
        vector = self._everywhere(prefix, clip_start, B)
        if vector is not None:
            cache.hold_condition(vector)
        x = self._embed_inputs(prefix, video if n else None, n, B)
        S = x.shape[1]
        # the prefix must not see the start block, nor a block the blocks after it, so this call needs the mask
        mask = block_causal_mask(self.mask_spec, x.device)[:S, :S]
        cache.check_room(S)
        x = self._run_cached(x, cache, mask)
        cache.advance(S)
        return self._logits(x[:, -L:] if n else x[:, self.config.logits_start:])

    @torch.no_grad()
    def step(self, tokens: torch.Tensor, cache: KVCache, compiled: bool = False) -> torch.Tensor:
        """Append tokens (B, L') at the cache position and return the logits (B, L', V) of what comes next.

        L' is 1 while a hybrid model fills its first block, then a whole block.
        The new tokens see everything cached and each other, so no mask is used.
        compiled: run the compiled static step (made by `compile_step` on first use).
        """
        start, n = cache.pos, tokens.shape[1]
        end = self._decode_group_end.get(start)
        if end is None or start + n != end:
            raise ValueError(
                f"step of {n} token(s) at position {start} does not cover exactly one block "
                f"(expected {None if end is None else end - start}); call prefill first and feed one block at a time"
            )
        placeholder_block = self.config.hybrid_placeholders and start == self.prefix_len + self.start_len
        if compiled and not placeholder_block:
            logits = (self._compiled_step or self.compile_step())(tokens, cache)
        else:
            x = self._embed(tokens)
            logits = self._logits(self._run_cached(self._with_placeholders(x) if placeholder_block else x, cache, None))
        cache.advance(n)
        return logits

    def num_params(self, exclude_embeddings: bool = False) -> int:
        n = sum(p.numel() for p in self.parameters())
        if exclude_embeddings:
            n -= self.tok_emb.weight.numel()
        return n
