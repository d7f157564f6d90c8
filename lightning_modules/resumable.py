"""Exact resume: the data position and the random state come back with the checkpoint.

- `ResumableSampler` is a `DistributedSampler` (so Lightning does not replace it) that can start an
  epoch part-way through: the shuffled order is a function of (seed, epoch) only, and a resumed
  run skips the samples the interrupted run already consumed.
- `ResumableDataLoader` is a `DataLoader` with `state_dict()` / `load_state_dict()`. Lightning
  saves that state in every checkpoint and restores it before the first batch is drawn. It counts
  batches handed to the training loop (not batches prefetched by workers), so the position is
  the number of batches actually trained on.
- `StepSeed` reseeds torch / numpy / random at every training batch from (seed, epoch, batch,
  rank): dropout and condition dropout are a function of the position, identical in an
  uninterrupted and a resumed run, and different on every rank.
"""

from __future__ import annotations

import math
import random
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_warn
from torch.utils.data import DataLoader, Dataset, DistributedSampler


def _world() -> tuple[int, int]:
    """(num_replicas, rank) of the running process group, (1, 0) without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size(), dist.get_rank()
    return 1, 0


class ResumableSampler(DistributedSampler):
    """Per-epoch (seeded) order over the dataset, split across ranks, resumable mid-epoch.

    The global order of epoch e is a permutation drawn from `seed + e` (or 0..n-1 without
    shuffling), padded by wrapping (or cut, with drop_last) to a multiple of the world size; rank r
    takes every world_size-th element from r. Resuming at global sample c continues with element c.
    """

    def __init__(
        self,
        dataset: Dataset,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        world, my_rank = _world()
        super().__init__(
            dataset,
            num_replicas=world if num_replicas is None else num_replicas,
            rank=my_rank if rank is None else rank,
            shuffle=shuffle,
            seed=seed,
            drop_last=drop_last,
        )
        self._resume_epoch: int | None = None
        self._resume_global_offset = 0

    def global_order(self) -> list[int]:
        """All ranks' indices of the current epoch, in order (length total_size)."""
        n = len(self.dataset)
        if self.shuffle:
            generator = torch.Generator()
            generator.manual_seed(self.seed + self.epoch)
            order = torch.randperm(n, generator=generator).tolist()
        else:
            order = list(range(n))
        if self.drop_last:
            return order[: self.total_size]
        repeats = math.ceil(self.total_size / max(n, 1))
        return (order * repeats)[: self.total_size]

    def resume_at(self, epoch: int, global_offset: int) -> None:
        """The next iteration over `epoch` starts at global sample `global_offset`."""
        self._resume_epoch, self._resume_global_offset = epoch, global_offset

    def __iter__(self) -> Iterator[int]:
        start = self._resume_global_offset if self._resume_epoch == self.epoch else 0
        self._resume_epoch, self._resume_global_offset = None, 0  # only the first pass is partial
        return iter(self.global_order()[start + self.rank :: self.num_replicas])


class ResumableDataLoader(DataLoader):
    """A DataLoader over a `ResumableSampler` whose position is saved in Lightning checkpoints.

    Use it where a DataModule's `train_dataloader` builds a DataLoader: same arguments, with
    `shuffle` and `seed` going to the sampler. Resuming with another world size or batch size
    keeps the global sample position (rounded down to a whole global batch).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int = 1,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
        **kwargs: Any,
    ) -> None:
        if "sampler" in kwargs or "batch_sampler" in kwargs:
            raise ValueError("ResumableDataLoader builds its own sampler; pass shuffle/seed instead of sampler")
        sampler = ResumableSampler(dataset, shuffle=shuffle, seed=seed, drop_last=drop_last)
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last, **kwargs)
        self._batches_done = 0

    def __iter__(self) -> Iterator[Any]:
        # Count the batches as they are handed out, so prefetching workers do not move the position.
        self._batches_done = self._resume_batches()
        for batch in super().__iter__():
            self._batches_done += 1
            yield batch

    def _resume_batches(self) -> int:
        sampler = self.sampler
        if sampler._resume_epoch != sampler.epoch:
            return 0
        return sampler._resume_global_offset // (self.batch_size * sampler.num_replicas)

    def state_dict(self) -> dict[str, Any]:
        return {
            "epoch": self.sampler.epoch,
            "batches_done": self._batches_done,
            "batch_size": self.batch_size,
            "num_replicas": self.sampler.num_replicas,
            "seed": self.sampler.seed,
            "dataset_len": len(self.dataset),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state["dataset_len"] != len(self.dataset):
            rank_zero_warn(
                f"the dataset has {len(self.dataset)} items but the checkpoint was taken with "
                f"{state['dataset_len']}; the data position restarts at the beginning of epoch {state['epoch']}"
            )
            self.sampler.resume_at(state["epoch"], 0)
            return
        if state["seed"] != self.sampler.seed:
            rank_zero_warn(f"data seed changed from {state['seed']} to {self.sampler.seed}: the order differs from the interrupted run")
        consumed = state["batches_done"] * state["batch_size"] * state["num_replicas"]
        global_batch = self.batch_size * self.sampler.num_replicas
        offset = consumed - consumed % global_batch  # a whole number of (possibly new) global batches
        if offset != consumed:
            rank_zero_warn(f"global batch changed: resuming at sample {offset} of epoch {state['epoch']} instead of {consumed}")
        self.sampler.resume_at(state["epoch"], offset)


def step_seed(seed: int, epoch: int, batch_idx: int, rank: int) -> int:
    """A 63-bit seed that depends on every argument; statistically independent across them."""
    return int(np.random.SeedSequence([seed, epoch, batch_idx, rank]).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1)


class StepSeed(Callback):
    """Reseed all RNGs before every training batch from (seed, epoch, batch index, global rank)."""

    def __init__(self, seed: int | None = None) -> None:
        """seed: None takes the run's seed_everything (set by `nbp train`), else 0."""
        self.seed = seed

    def on_train_batch_start(self, trainer, pl_module, batch: Any, batch_idx: int) -> None:
        value = step_seed(self.seed or 0, trainer.current_epoch, batch_idx, trainer.global_rank)
        # torch.manual_seed would also queue a lazy seeding call for every device backend (CUDA, XPU,
        # MTIA), each formatting a stack trace: ~3 ms per step on CPU, 3% of a small model's step.
        torch.default_generator.manual_seed(value)
        if torch.cuda.is_initialized():
            torch.cuda.manual_seed_all(value)
        np.random.seed(value % (2**32))
        random.seed(value)
