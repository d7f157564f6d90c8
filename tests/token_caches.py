"""Learnable token caches written the way `nbp tokenize` writes them, for training tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from nbp.token_cache import CacheMeta, TokenCacheWriter


def write_token_cache(root: Path, ids: np.ndarray, labels: np.ndarray, vocab: int, classes: int, frames: int,
                      resolution=(16, 16), shard_size: int = 32) -> Path:
    """A finished cache of `ids` (N, T', H', W') and their `labels` (N,), written shard by shard."""
    meta = CacheMeta(tokenizer_sha256="0" * 64, tokenizer_config={}, vocab_size=vocab, grid=tuple(ids.shape[1:]),
                     frames=frames, fps=8, resolution=tuple(resolution), dataset={"kind": "test"},
                     shard_size=shard_size, num_source_items=len(ids), num_classes=classes)
    writer = TokenCacheWriter(root, meta)
    for k in writer.pending_shards():
        r = writer.shard_range(k)
        writer.write_shard(k, ids[r.start:r.stop], labels[r.start:r.stop], [f"v{i}" for i in r])
    writer.finalize()
    return root


def write_pattern_cache(root: Path, n: int = 48, seed: int = 0, grid=(2, 4, 4), vocab: int = 16, classes: int = 3,
                        frames: int = 5, resolution=(16, 16), shard_size: int = 32) -> Path:
    """Each class has its own fixed token grid with 10% of the tokens replaced at random: learnable."""
    rng = np.random.default_rng(seed)
    patterns = rng.integers(0, vocab, size=(classes, *grid))
    labels = np.arange(n) % classes
    ids = patterns[labels]
    ids = np.where(rng.random(ids.shape) < 0.1, rng.integers(0, vocab, size=ids.shape), ids)
    return write_token_cache(root, ids, labels, vocab, classes, frames, resolution, shard_size)
