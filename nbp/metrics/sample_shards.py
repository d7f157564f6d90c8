"""Generated videos cached on disk in fixed-size shards, so a long evaluation can be resumed.

`cache/meta.json` records what the samples depend on (model and tokenizer
checksums, seed, sampling settings, counts); `cache/shard_00007.pt` holds samples
[7 * shard_size, 8 * shard_size) as uint8 videos plus their conditions. A shard
is written atomically, so a rerun regenerates only shards that do not exist yet.
Each shard is generated from its own seed, so the result does not depend on how
many runs, or ranks, produced it.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from nbp.errors import UserError
from nbp.files import torch_save_atomic, write_json_atomic


class SampleShards:
    def __init__(self, root: str | Path, num_samples: int, shard_size: int, meta: dict):
        if num_samples < 1 or shard_size < 1:
            raise UserError(f"num_samples={num_samples} and shard_size={shard_size} must both be >= 1")
        self.root, self.num_samples, self.shard_size = Path(root), num_samples, shard_size
        self.meta = {**meta, "num_samples": num_samples, "shard_size": shard_size}

    @property
    def num_shards(self) -> int:
        return -(-self.num_samples // self.shard_size)

    def shard_range(self, index: int) -> range:
        return range(index * self.shard_size, min((index + 1) * self.shard_size, self.num_samples))

    def path(self, index: int) -> Path:
        return self.root / f"shard_{index:05d}.pt"

    def open(self) -> None:
        """Create the cache, or check that an existing one was made with the same settings."""
        meta_path = self.root / "meta.json"
        # Temporary files of a run killed mid-write are never part of the cache.
        for stale in self.root.glob(".*.tmp") if self.root.is_dir() else ():
            stale.unlink(missing_ok=True)
        if meta_path.is_file():
            try:
                found = json.loads(meta_path.read_text())
                if not isinstance(found, dict):
                    raise ValueError("not a JSON object")
            except (ValueError, UnicodeDecodeError) as err:
                raise UserError(f"sample cache {meta_path} is damaged ({err}); delete the folder {self.root} "
                                f"(it is regenerated) or pass another --cache") from None
            differ = sorted(k for k in set(found) | set(self.meta) if found.get(k) != self.meta.get(k))
            if differ:
                raise UserError(
                    f"sample cache {self.root} was made with other settings ({', '.join(differ)} differ); "
                    "pass another --cache folder or delete this one"
                )
        else:
            write_json_atomic(meta_path, self.meta)

    def shards_of_rank(self, rank: int, world: int) -> list[int]:
        return list(range(rank, self.num_shards, world))

    def missing(self, rank: int = 0, world: int = 1) -> list[int]:
        return [k for k in self.shards_of_rank(rank, world) if not self.path(k).is_file()]

    def write(self, index: int, videos: torch.Tensor, cond: torch.Tensor) -> None:
        expected = len(self.shard_range(index))
        if videos.dtype != torch.uint8 or videos.shape[0] != expected:
            raise ValueError(f"shard {index} needs {expected} uint8 videos, got {videos.shape[0]} {videos.dtype}")
        torch_save_atomic({"videos": videos.cpu().contiguous(), "cond": cond.cpu().contiguous()}, self.path(index))

    def read(self, index: int) -> dict[str, torch.Tensor]:
        try:
            return torch.load(self.path(index), map_location="cpu", weights_only=True)
        except Exception as err:
            raise UserError(f"cannot read sample shard {self.path(index)}: {type(err).__name__}; delete it and rerun") from err
