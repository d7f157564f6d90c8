"""Token cache: a dataset encoded once by the tokenizer, stored as memory-mapped shards.

Layout of a cache directory:

    meta.json               what produced the cache (tokenizer sha256 + config, dataset config,
                            grid, frames, fps, resolution, dtype) and, once finished, the source list
    shard_00000.ids.npy     ids of up to `shard_size` videos, (n, T', H', W'), uint16 or int32
    shard_00000.json        labels and source paths of that shard; written last, so its presence
                            marks the shard finished

Shard k always covers dataset items [k * shard_size, (k + 1) * shard_size), so an interrupted
run resumes by skipping the shards whose marker exists. Unreadable videos are skipped and
listed in their shard's marker. Every file is written under a temporary name and renamed.

Reading (`TokenCache`) memory-maps the shards and checks `meta.json` against what the caller
expects (tokenizer checksum, grid), failing with a one-line `UserError` on a mismatch.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nbp.errors import UserError
from nbp.files import atomic_path, write_json_atomic

FORMAT_VERSION = 1
META_NAME = "meta.json"

# The fields that must agree for a half-written cache to be resumed, or for a reader to trust it.
IDENTITY_KEYS = ("format", "tokenizer_sha256", "tokenizer_config", "vocab_size", "grid", "dtype",
                 "frames", "fps", "resolution", "dataset", "shard_size", "num_source_items")


def storage_dtype(vocab_size: int) -> np.dtype:
    """uint16 holds ids < 65536 (FSQ 8,8,8,5,5,5 = 64,000 fits); larger vocabularies need int32."""
    if vocab_size <= 0:
        raise UserError(f"vocab_size must be positive, got {vocab_size}")
    return np.dtype(np.uint16) if vocab_size <= np.iinfo(np.uint16).max + 1 else np.dtype(np.int32)


def shard_stem(index: int) -> str:
    return f"shard_{index:05d}"


@dataclass
class CacheMeta:
    """What produced a cache; everything here is JSON-serialisable."""

    tokenizer_sha256: str
    tokenizer_config: dict
    vocab_size: int
    grid: tuple[int, int, int]
    frames: int
    fps: float
    resolution: tuple[int, int]
    dataset: dict
    shard_size: int
    num_source_items: int
    dtype: str = ""
    format: int = FORMAT_VERSION
    complete: bool = False
    num_items: int = 0
    num_skipped: int = 0
    sources: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    num_classes: int | None = None

    def __post_init__(self):
        self.grid = tuple(int(g) for g in self.grid)
        self.resolution = tuple(int(r) for r in self.resolution)
        if len(self.grid) != 3 or min(self.grid) < 1:
            raise UserError(f"token cache grid must be 3 positive ints (T', H', W'), got {self.grid}")
        if self.shard_size < 1:
            raise UserError(f"shard_size must be >= 1, got {self.shard_size}")
        if not self.dtype:
            self.dtype = storage_dtype(self.vocab_size).name

    @property
    def num_shards(self) -> int:
        return max(1, math.ceil(self.num_source_items / self.shard_size))

    def to_json(self) -> dict:
        d = dict(self.__dict__)
        d["grid"], d["resolution"] = list(self.grid), list(self.resolution)
        return d

    @classmethod
    def from_json(cls, d: dict) -> "CacheMeta":
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    def identity(self) -> dict:
        return {k: self.to_json()[k] for k in IDENTITY_KEYS}


def read_meta(root: str | Path) -> CacheMeta:
    path = Path(root) / META_NAME
    if not path.is_file():
        raise UserError(f"{root} is not a token cache (no {META_NAME}); create one with 'nbp tokenize'")
    try:
        return CacheMeta.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, KeyError, UnicodeDecodeError) as err:
        raise UserError(f"{path} is not a valid token cache meta file ({type(err).__name__}: {err}); "
                        f"delete the cache and run 'nbp tokenize' again") from None


class TokenCacheWriter:
    """Writes shards of a cache; `pending_shards()` lists what is left after an interruption."""

    def __init__(self, root: str | Path, meta: CacheMeta):
        self.root = Path(root)
        self.meta = meta
        self.dtype = np.dtype(meta.dtype)
        self._prepare_directory()

    def _prepare_directory(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        meta_path = self.root / META_NAME
        if meta_path.exists():
            old = read_meta(self.root)
            if old.identity() != self.meta.identity():
                changed = [k for k in IDENTITY_KEYS if old.identity()[k] != self.meta.identity()[k]]
                raise UserError(
                    f"{self.root} already holds a token cache made with different settings "
                    f"({', '.join(changed)}); choose a new --out directory or delete the old one")
            self.meta = CacheMeta.from_json({**old.to_json(), "complete": old.complete})
        else:
            write_json_atomic(meta_path, self.meta.to_json())
        # Temporary files left by a killed run (the rename never happened): safe to drop.
        for stale in self.root.glob(".*.tmp"):
            stale.unlink(missing_ok=True)

    def shard_done(self, index: int) -> bool:
        stem = shard_stem(index)
        return (self.root / f"{stem}.json").is_file() and (self.root / f"{stem}.ids.npy").is_file()

    def pending_shards(self) -> list[int]:
        return [k for k in range(self.meta.num_shards) if not self.shard_done(k)]

    def shard_range(self, index: int) -> range:
        start = index * self.meta.shard_size
        return range(start, min(start + self.meta.shard_size, self.meta.num_source_items))

    def write_shard(self, index: int, ids: np.ndarray | torch.Tensor, labels: Sequence[int],
                    sources: Sequence[str], skipped: Sequence[str] = ()) -> None:
        """Write one shard: the ids file first, then the marker that declares it finished."""
        ids = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
        expected = (len(labels), *self.meta.grid)
        if ids.shape != expected or len(sources) != len(labels):
            raise ValueError(f"shard {index}: ids {ids.shape}, {len(labels)} labels, {len(sources)} sources; "
                             f"expected ids {expected}")
        if ids.size and (ids.min() < 0 or ids.max() >= self.meta.vocab_size):
            raise ValueError(f"shard {index}: ids outside [0, {self.meta.vocab_size})")
        stem = shard_stem(index)
        with atomic_path(self.root / f"{stem}.ids.npy") as tmp, open(tmp, "wb") as f:
            np.save(f, ids.astype(self.dtype))
        marker = {"count": len(labels), "labels": [int(x) for x in labels],
                  "sources": [str(s) for s in sources], "skipped": [str(s) for s in skipped]}
        write_json_atomic(self.root / f"{stem}.json", marker)

    def finalize(self) -> CacheMeta:
        """Collect the shard markers into meta.json and mark the cache complete."""
        pending = self.pending_shards()
        if pending:
            raise RuntimeError(f"cannot finalize {self.root}: shards {pending[:5]} are not written")
        sources, skipped, labels = [], [], []
        for k in range(self.meta.num_shards):
            marker = json.loads((self.root / f"{shard_stem(k)}.json").read_text())
            sources += marker["sources"]
            skipped += marker["skipped"]
            labels += marker["labels"]
        self.meta.sources, self.meta.skipped = sources, skipped
        self.meta.num_items, self.meta.num_skipped = len(sources), len(skipped)
        self.meta.complete = True
        if self.meta.num_classes is None and labels and max(labels) >= 0:
            self.meta.num_classes = int(max(labels)) + 1
        write_json_atomic(self.root / META_NAME, self.meta.to_json())
        return self.meta


class TokenCache(Dataset):
    """A finished token cache as a Dataset of `{"tokens": int64 (T', H', W'), "label": int}`.

    `tokenizer_sha256` / `grid`, when given, must match what the cache was made with.
    """

    def __init__(self, root: str | Path, tokenizer_sha256: str | None = None,
                 grid: Iterable[int] | None = None, vocab_size: int | None = None):
        self.root = Path(root)
        self.meta = read_meta(self.root)
        if not self.meta.complete:
            raise UserError(f"token cache {self.root} is unfinished; re-run the same 'nbp tokenize' "
                            f"command to resume it")
        self.check(tokenizer_sha256=tokenizer_sha256, grid=grid, vocab_size=vocab_size)
        self._shards: list[np.ndarray] = []
        labels = []
        for k in range(self.meta.num_shards):
            marker, ids = self._read_shard(k)
            if ids.shape[0] != marker["count"] or tuple(ids.shape[1:]) != self.meta.grid:
                raise UserError(f"token cache shard {self.root / shard_stem(k)} has shape {ids.shape}, "
                                f"expected ({marker['count']}, {', '.join(map(str, self.meta.grid))})")
            self._shards.append(ids)
            labels += marker["labels"]
        self.labels = np.asarray(labels, dtype=np.int64)
        counts = [len(s) for s in self._shards]
        self._starts = np.cumsum([0] + counts)

    def _read_shard(self, index: int) -> tuple[dict, np.ndarray]:
        """(marker, memory-mapped ids) of one shard; UserError naming the file when it is damaged."""
        stem = self.root / shard_stem(index)
        path = stem.with_name(stem.name + ".json")
        try:
            marker = json.loads(path.read_text())
            marker["count"], marker["labels"]  # noqa: B018  (a marker without them is damaged)
            path = stem.with_name(stem.name + ".ids.npy")
            return marker, np.load(path, mmap_mode="r")
        except (OSError, ValueError, KeyError, TypeError, EOFError) as err:
            raise UserError(f"token cache file {path} is damaged or missing ({type(err).__name__}); "
                            f"delete it and re-run the same 'nbp tokenize' command to rewrite it") from None

    def check(self, tokenizer_sha256: str | None = None, grid: Iterable[int] | None = None,
              vocab_size: int | None = None) -> None:
        if tokenizer_sha256 is not None and tokenizer_sha256 != self.meta.tokenizer_sha256:
            raise UserError(f"token cache {self.root} was made by a different tokenizer (sha256 "
                            f"{self.meta.tokenizer_sha256[:12]}..., expected {tokenizer_sha256[:12]}...); "
                            f"re-run 'nbp tokenize' with this tokenizer")
        if grid is not None and tuple(int(g) for g in grid) != self.meta.grid:
            raise UserError(f"token cache {self.root} has latent grid {list(self.meta.grid)}, but the model "
                            f"expects {list(grid)}; tokenize with a matching tokenizer and frame count")
        if vocab_size is not None and int(vocab_size) != self.meta.vocab_size:
            raise UserError(f"token cache {self.root} has vocab_size {self.meta.vocab_size}, but the model "
                            f"expects {vocab_size}")

    @property
    def grid(self) -> tuple[int, int, int]:
        return self.meta.grid

    @property
    def vocab_size(self) -> int:
        return self.meta.vocab_size

    def __len__(self) -> int:
        return int(self._starts[-1])

    def __getitem__(self, index: int) -> dict[str, Any]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(index)
        shard = int(np.searchsorted(self._starts, index, side="right")) - 1
        row = self._shards[shard][index - self._starts[shard]]
        return {"tokens": torch.from_numpy(row.astype(np.int64)), "label": int(self.labels[index])}
