"""NBPConfig: every setting of the next-block-prediction transformer, validated at construction, with presets."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from functools import cached_property

from nbp.attention import BACKENDS
from nbp.blocks import BlockLayout
from nbp.errors import UserError
from nbp.masks import FIRST_BLOCK_MODES, MaskSpec

CONDITIONS = ("none", "class", "frames")
ARCHS = ("reference", "modern")

# Model sizes. base / xl / 3b are the reference implementation's sizes; tiny runs on a CPU.
PRESETS: dict[str, dict] = {
    "tiny": dict(n_layer=4, n_head=4, n_embd=128),
    "base": dict(n_layer=24, n_head=16, n_embd=1536),
    "xl": dict(n_layer=24, n_head=32, n_embd=2048),
    "3b": dict(n_layer=32, n_head=32, n_embd=3072),
}


@dataclass
class NBPConfig:
    vocab_size: int = 64000  # token ids the tokenizer produces (its codebook size)
    grid: tuple[int, int, int] = (5, 16, 16)  # the tokenizer's latent grid (T', H', W'), context frames included
    # block shape (bt, bh, bw) that tiles the grid: (1, 1, W') rows as in the paper, (1, 1, 1) next-token prediction
    block: tuple[int, int, int] = (1, 1, 16)
    # "start_block": block 0 from learned start embeddings in one pass; "hybrid": the first block token by
    # token, as in the paper
    first_block: str = "start_block"
    # hybrid only: how many leading blocks go token by token (the paper: 1; a whole first latent frame
    # lets a small model settle where its objects are before the rows are drawn in parallel)
    hybrid_blocks: int = 1
    condition: str = "class"  # what the prefix holds: "none" | "class" | "frames"
    num_classes: int = 101  # class models: the number of classes (a learned null class is added)
    context_frames: int = 0  # latent frames given as the prefix when condition == "frames"
    p_uncond: float = 0.1  # probability of replacing the condition by the null one in training (for CFG)
    # class models: add the class embedding to every input position too, not only as the prefix token,
    # so a small model need not look far back for it (the demo's models: lower loss, and the NTP twin no
    # longer loses objects late in the clip)
    class_every_position: bool = False
    n_layer: int = 24  # transformer blocks
    n_head: int = 16  # attention heads; must divide n_embd
    n_embd: int = 1536  # width of the residual stream
    arch: str = "reference"  # "reference": LayerNorm, GELU MLP, learned positions; "modern": RMSNorm, SwiGLU, 3D rotary
    attn_backend: str = "auto"  # "auto" | "sdpa" | "flex" | "xformers"
    dropout: float = 0.1  # on embeddings and residual branches (not on attention probabilities)
    tie_head: bool = False  # share the output head's weights with the token embedding
    grad_checkpointing: bool = False  # recompute each block in the backward pass (less memory, more time)
    compile: bool = False  # torch.compile each transformer block
    rope_theta: float = 10000.0  # arch "modern": base of the rotary frequencies
    # --- the layouts of the reference implementation's released models (nbp/official/) ---
    # > 0: the class prefix is this many text tokens (rows of the embedding table) instead of one class embedding
    class_text_len: int = 0
    class_names: tuple[str, ...] = ()  # the classes in id order, so that users can ask for them by name
    # hybrid only: the first video block is [v_{K-1}, K-1 placeholder tokens] instead of [v_0 .. v_{K-1}]
    hybrid_placeholders: bool = False
    # video id v is row v + video_offset of the embedding table and the head (a vocabulary shared with text)
    video_offset: int = 0

    def __post_init__(self):
        self.grid = tuple(int(v) for v in self.grid)
        self.block = tuple(int(v) for v in self.block)
        self.class_names = tuple(str(n) for n in self.class_names)
        self._check()

    def __setattr__(self, name, value):
        super().__setattr__(name, value)
        # The layouts and the mask spec are computed once per config (see below); a changed field
        # makes them stale.
        for derived in ("layout", "context_layout", "mask_spec"):
            self.__dict__.pop(derived, None)

    def _fail(self, field: str, valid: str):
        raise UserError(f"NBPConfig.{field}={getattr(self, field)!r} is invalid: {valid}")

    def _check(self):
        if self.vocab_size < 2:
            self._fail("vocab_size", "need at least 2 token ids")
        if len(self.grid) != 3 or min(self.grid) < 1:
            self._fail("grid", "three positive integers (T', H', W')")
        if len(self.block) != 3 or min(self.block) < 1:
            self._fail("block", "three positive integers (bt, bh, bw)")
        if self.first_block not in FIRST_BLOCK_MODES:
            self._fail("first_block", f"one of {FIRST_BLOCK_MODES}")
        if self.condition not in CONDITIONS:
            self._fail("condition", f"one of {CONDITIONS}")
        if self.condition == "class" and self.num_classes < 1:
            self._fail("num_classes", "a class-conditional model needs at least one class")
        if self.condition == "frames":
            if not 1 <= self.context_frames < self.grid[0]:
                self._fail("context_frames", f"between 1 and {self.grid[0] - 1} (grid has {self.grid[0]} latent frames)")
        elif self.context_frames != 0:
            self._fail("context_frames", "only condition='frames' takes context frames; set 0")
        if self.class_every_position and self.condition != "class":
            self._fail("class_every_position", "only a class-conditional model (condition='class') has a class to add")
        if not 0.0 <= self.p_uncond <= 1.0:
            self._fail("p_uncond", "a probability in [0, 1]")
        if self.n_layer < 1 or self.n_head < 1:
            self._fail("n_layer" if self.n_layer < 1 else "n_head", "a positive integer")
        if self.n_embd % self.n_head:
            self._fail("n_embd", f"a multiple of n_head={self.n_head}")
        if self.arch not in ARCHS:
            self._fail("arch", f"one of {ARCHS}")
        if self.arch == "modern" and (self.head_dim % 2 or self.head_dim < 6):
            self._fail("n_embd", "modern arch needs an even head size of at least 6 (rotary over t, h, w)")
        if self.attn_backend not in BACKENDS:
            self._fail("attn_backend", f"one of {BACKENDS}")
        if not 0.0 <= self.dropout < 1.0:
            self._fail("dropout", "a probability in [0, 1)")
        # the block must tile the generated grid and the context grid alike
        generated = (self.grid[0] - self.context_frames, *self.grid[1:])
        for axis, size, b in zip("THW", generated, self.block):
            if size % b:
                self._fail("block", f"each size must divide the generated grid {generated} (axis {axis}: {size})")
        if self.context_frames % self.block[0]:
            self._fail("block", f"bt must divide context_frames={self.context_frames}")
        self._check_reference_layout()
        if self.first_block != "hybrid" and self.hybrid_blocks != 1:
            self._fail("hybrid_blocks", "only first_block='hybrid' takes more than 1")
        if not 1 <= self.hybrid_blocks <= self.layout.num_blocks:
            self._fail("hybrid_blocks", f"between 1 and the number of blocks ({self.layout.num_blocks})")

    def _check_reference_layout(self):
        if self.first_block == "context":
            if self.condition != "frames" or self.arch != "reference":
                self._fail("first_block", "'context' needs condition='frames' and arch='reference'")
            if (self.context_frames * self.grid[1] * self.grid[2]) % self.block_len:
                self._fail("block", "first_block='context' needs the context to be whole blocks")
        if self.hybrid_placeholders and (self.first_block != "hybrid" or self.hybrid_blocks != 1):
            self._fail("hybrid_placeholders", "only first_block='hybrid' with hybrid_blocks=1 has placeholders")
        if self.class_text_len < 0 or (self.class_text_len and (self.condition != "class" or self.class_every_position)):
            self._fail("class_text_len", "0, or the number of text tokens of a class-conditional model "
                                         "without class_every_position")
        if self.class_names and len(self.class_names) != self.num_classes:
            self._fail("class_names", f"empty or {self.num_classes} names (num_classes)")
        if self.video_offset < 0:
            self._fail("video_offset", "a non-negative row offset")

    # ------------------------------------------------------------------ derived shapes

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @cached_property
    def layout(self) -> BlockLayout:
        """Layout of the generated tokens (the grid without the context frames)."""
        return BlockLayout((self.grid[0] - self.context_frames, *self.grid[1:]), self.block)

    @cached_property
    def context_layout(self) -> BlockLayout | None:
        """Layout of the context tokens of a frame-conditional model (the prefix), else None."""
        if self.condition != "frames":
            return None
        return BlockLayout((self.context_frames, *self.grid[1:]), self.block)

    @property
    def num_tokens(self) -> int:
        """Generated tokens N = (T' - context_frames) * H' * W'."""
        return self.layout.num_tokens

    @property
    def block_len(self) -> int:
        return self.layout.block_len

    @property
    def prefix_len(self) -> int:
        if self.condition == "class":
            return self.class_text_len or 1
        if self.condition == "frames":
            return self.context_layout.num_tokens
        return 0

    @cached_property
    def mask_spec(self) -> MaskSpec:
        return MaskSpec(self.prefix_len, self.block_len, self.layout.num_blocks, self.first_block, self.hybrid_blocks)

    @property
    def start_len(self) -> int:
        """Positions of the start block: block_len, or hybrid_blocks * block_len in hybrid mode."""
        return self.mask_spec.start_len

    @property
    def token_by_token(self) -> int:
        """Leading video tokens generated one by one: start_len in hybrid mode, else 0."""
        return self.start_len if self.first_block == "hybrid" else 0

    @property
    def seq_len(self) -> int:
        """Training sequence length: prefix + start block + all video blocks but the last
        (in "context" mode the last prefix block is the start block)."""
        return self.mask_spec.seq_len

    @property
    def logits_start(self) -> int:
        """The first position whose output predicts a video token (the prefix's last block in "context" mode)."""
        return self.prefix_len - self.block_len if self.first_block == "context" else self.prefix_len

    @property
    def embedding_rows(self) -> int:
        """Rows of the token table: video_offset rows before the video ids (shared vocabulary), the video ids,
        and one more: the null context token of frame-conditional models."""
        return self.video_offset + self.vocab_size + 1

    @property
    def decode_steps(self) -> int:
        """Forward passes to generate one video: hybrid fills its first block(s) token by token."""
        blocks = self.layout.num_blocks
        return self.start_len + blocks - self.hybrid_blocks if self.first_block == "hybrid" else blocks

    # ------------------------------------------------------------------ presets

    @classmethod
    def from_preset(cls, name: str, **overrides) -> "NBPConfig":
        cls.check_names(name, overrides)
        return cls(**{**PRESETS[name], **overrides})

    @classmethod
    def check_names(cls, preset: str, overrides: dict) -> None:
        """UserError for an unknown preset or field name (possible before the data fixes the grid)."""
        if preset not in PRESETS:
            raise UserError(f"unknown NBP preset {preset!r}; valid: {', '.join(PRESETS)}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise UserError(f"unknown NBPConfig field(s) {unknown}; valid: {', '.join(sorted(known))}")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["grid"], d["block"] = list(self.grid), list(self.block)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "NBPConfig":
        return cls(**d)

    def replace(self, **changes) -> "NBPConfig":
        return replace(self, **changes)
