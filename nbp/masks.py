"""Block-causal attention masks for the sequence [condition prefix][start block][video blocks ...].

Rules: prefix tokens see each other; every token sees the prefix; the start
block is bidirectional ("start_block" mode) or causal ("hybrid" mode: the
first `hybrid_blocks` video blocks are generated token by token); video block k
sees the start block and video blocks <= k. In "context" mode (the reference's
frame-prediction layout) there is no start block: the prefix is itself cut into
blocks (block-causal from position 0) and its last block plays the start block.

All of these rules collapse into one number per position, its *group*: a
query may attend to a key iff group(key) <= group(query). The prefix is
group 0, the start block one group (start_block) or one group per token
(hybrid), and each video block one group. Masks are built once per shape and
cached; nothing here runs per step.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch

FIRST_BLOCK_MODES = ("start_block", "hybrid", "context")


@dataclass(frozen=True)
class MaskSpec:
    """The shape of a training sequence: prefix length, block length, number of video blocks, first-block mode.

    The sequence holds prefix_len + block_len * num_blocks positions: the start
    block, then the video blocks that are inputs (the last block is only a target).
    In hybrid mode the start block is `start_len` = hybrid_blocks * block_len
    positions long, one group each, and the video inputs begin at block
    hybrid_blocks - 1 (the last block the start block generates).
    """

    prefix_len: int
    block_len: int
    num_blocks: int
    first_block: str = "start_block"
    hybrid_blocks: int = 1

    def __post_init__(self):
        if self.prefix_len < 0 or self.block_len < 1 or self.num_blocks < 1:
            raise ValueError(f"invalid mask shape {self}")
        if self.first_block not in FIRST_BLOCK_MODES:
            raise ValueError(f"first_block={self.first_block!r}; valid: {FIRST_BLOCK_MODES}")
        if self.first_block == "context" and (self.prefix_len < self.block_len or self.prefix_len % self.block_len):
            raise ValueError(f"first_block='context' needs a prefix of whole blocks, got {self}")
        limit = self.num_blocks if self.first_block == "hybrid" else 1
        if not 1 <= self.hybrid_blocks <= limit:
            raise ValueError(f"hybrid_blocks={self.hybrid_blocks} must be in 1..{limit} for first_block={self.first_block!r}")

    @property
    def start_len(self) -> int:
        return 0 if self.first_block == "context" else self.hybrid_blocks * self.block_len

    @property
    def seq_len(self) -> int:
        inputs = self.num_blocks - 1 if self.first_block == "context" else self.num_blocks
        return self.prefix_len + self.block_len * inputs


@lru_cache(maxsize=64)
def group_ids(spec: MaskSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """(S,) long: the attention group of every position (see the module docstring)."""
    if spec.first_block == "context":
        groups = torch.arange(spec.seq_len, device="cpu") // spec.block_len
        return groups.to(device)
    prefix = torch.zeros(spec.prefix_len, dtype=torch.long, device="cpu")
    if spec.first_block == "hybrid":
        start = 1 + torch.arange(spec.start_len, device="cpu")
    else:
        start = torch.ones(spec.block_len, dtype=torch.long, device="cpu")
    first_video_group = int(start[-1]) + 1
    video_blocks = spec.num_blocks - spec.hybrid_blocks
    video = first_video_group + torch.arange(video_blocks, device="cpu").repeat_interleave(spec.block_len)
    return torch.cat([prefix, start, video]).to(device)


@lru_cache(maxsize=64)
def block_causal_mask(spec: MaskSpec, device: torch.device | str = "cpu") -> torch.Tensor:
    """(S, S) bool, True where the query (row) may attend to the key (column). Cached: do not modify."""
    groups = group_ids(spec, device)
    return groups[None, :] <= groups[:, None]


def group_boundaries(spec: MaskSpec) -> list[int]:
    """Sorted positions where a new group starts, plus the sequence length (for checking decode steps)."""
    groups = group_ids(spec).tolist()
    starts = [i for i in range(len(groups)) if i == 0 or groups[i] != groups[i - 1]]
    return starts + [spec.seq_len]
