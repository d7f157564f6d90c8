"""VideoDataModule: batches of uint8 clips `{"video": (B, C, T, H, W), "label": (B,), "path": [...]}`.

Training and validation sets are each a `DatasetConfig`; without `val`, validation uses the
test split of `train` with centre clips (so it is the same videos every time).
Unreadable files are skipped and counted by the datasets themselves.
"""

from __future__ import annotations

import dataclasses

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightning_modules.resumable import ResumableDataLoader
from nbp.data import DatasetConfig, build_dataset
from nbp.errors import UserError, ignore_interrupt_in_worker


class VideoDataModule(L.LightningDataModule):
    def __init__(self, train: DatasetConfig, val: DatasetConfig | None = None, batch_size: int = 8,
                 val_batch_size: int | None = None, num_workers: int = 0, seed: int = 0):
        """
        Args:
            train: the training videos.
            val: the validation videos (None: no validation).
            batch_size: training clips per process.
            val_batch_size: validation clips per process (None: batch_size).
            num_workers: DataLoader worker processes (each decodes its own clips).
            seed: fixes the shuffling order of every epoch (identical across a resume).
        """
        super().__init__()
        if batch_size < 1 or (val_batch_size is not None and val_batch_size < 1):
            raise UserError(f"VideoDataModule: batch_size={batch_size} and val_batch_size={val_batch_size} must be >= 1")
        if num_workers < 0:
            raise UserError(f"VideoDataModule.num_workers={num_workers} must be >= 0")
        self.train_config = train
        self.val_config = val if val is not None else dataclasses.replace(train, split="test", clip="center")
        self.batch_size, self.val_batch_size = batch_size, val_batch_size or batch_size
        self.num_workers, self.seed = num_workers, seed
        self._train = self._val = None

    def setup(self, stage: str | None = None) -> None:
        if self._train is None:
            self._train = build_dataset(self.train_config)
            self._val = build_dataset(self.val_config)

    def _common(self, batch_size: int) -> dict:
        workers = self.num_workers
        return dict(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                    pin_memory=torch.cuda.is_available(), worker_init_fn=ignore_interrupt_in_worker)

    def train_dataloader(self) -> DataLoader:
        if len(self._train) < self.batch_size:
            raise UserError(f"the training set has {len(self._train)} videos, fewer than batch_size={self.batch_size}; "
                            "lower data.init_args.batch_size")
        # Seeded order per epoch whose position is saved in checkpoints (exact resume).
        return ResumableDataLoader(self._train, shuffle=True, seed=self.seed, drop_last=True,
                                   **self._common(self.batch_size))

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self._val, shuffle=False, **self._common(self.val_batch_size))

    def test_dataloader(self) -> DataLoader:
        return self.val_dataloader()

    predict_dataloader = test_dataloader
