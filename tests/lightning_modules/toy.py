"""A tiny LightningModule + DataModule for testing the training machinery in real processes.

Importable by class path (`tests.lightning_modules.toy.ToyModule`) from `nbp train fit` runs started
in the repository root. It records what it trained on so tests can compare runs step by step.
"""

from __future__ import annotations

import json
import math
import os
import signal
from pathlib import Path

import lightning as L
import torch
from torch import nn
from torch.utils.data import Dataset

from lightning_modules.resumable import ResumableDataLoader


class ToyDataset(Dataset):
    """n fixed (x, y) pairs of a noisy linear function; items carry their index."""

    def __init__(self, n: int = 24, dim: int = 8, seed: int = 0):
        generator = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, dim, generator=generator)
        self.y = self.x.sum(dim=1, keepdim=True) + 0.1 * torch.randn(n, 1, generator=generator)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> dict:
        return {"x": self.x[i], "y": self.y[i], "index": i}


class ToyData(L.LightningDataModule):
    def __init__(self, n: int = 24, batch_size: int = 4, seed: int = 0, num_workers: int = 0):
        super().__init__()
        self.n, self.batch_size, self.seed, self.num_workers = n, batch_size, seed, num_workers

    def train_dataloader(self):
        return ResumableDataLoader(
            ToyDataset(self.n), batch_size=self.batch_size, shuffle=True, seed=self.seed, num_workers=self.num_workers
        )


class ToyModule(L.LightningModule):
    """MLP regression with AdamW + warmup/cosine schedule (so optimizer and scheduler state matter).

    dump_dir: each rank appends one JSON line per step (step, loss, sample indices) to
      steps_rank{r}.jsonl and saves its final weights to weights_rank{r}.pt.
    nan_at_step: the loss of that global step is multiplied by NaN (only on rank `nan_rank`, if >= 0).
    die_at_step: SIGKILL this process right after that step's checkpoint hooks ran.
    """

    tokens_per_sample = 8  # one "token" per input feature; lets throughput tests check tokens/s

    def __init__(
        self,
        hidden: int = 16,
        dropout: float = 0.0,
        lr: float = 0.05,
        total_steps: int = 20,
        dump_dir: str | None = None,
        nan_at_step: int = -1,
        nan_rank: int = -1,
        die_at_step: int = -1,
    ):
        super().__init__()
        self.save_hyperparameters()
        self.net = nn.Sequential(nn.Linear(8, hidden), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden, 1))

    def training_step(self, batch, batch_idx):
        loss = nn.functional.mse_loss(self.net(batch["x"]), batch["y"])
        if self.global_step == self.hparams.nan_at_step and self.hparams.nan_rank in (-1, self.global_rank):
            loss = loss * float("nan")
        self._record(loss, batch)
        self.log("train/loss", loss)
        return loss

    def _record(self, loss, batch) -> None:
        if not self.hparams.dump_dir:
            return
        line = {"step": self.global_step, "loss": loss.item(), "index": batch["index"].tolist()}
        path = Path(self.hparams.dump_dir) / f"steps_rank{self.global_rank}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a") as f:
            f.write(json.dumps(line) + "\n")

    def on_train_batch_end(self, outputs, batch, batch_idx):
        # runs after the callbacks' on_train_batch_end, i.e. after this step's checkpoint
        if self.global_step == self.hparams.die_at_step:
            os.kill(os.getpid(), signal.SIGKILL)

    def on_train_end(self):
        if self.hparams.dump_dir:
            path = Path(self.hparams.dump_dir) / f"weights_rank{self.global_rank}.pt"
            torch.save({k: v.detach().cpu() for k, v in self.state_dict().items()}, path)

    def configure_optimizers(self):
        optimizer = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, betas=(0.9, 0.95), weight_decay=0.01)
        warmup, total = 3, self.hparams.total_steps

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


class DumpWeights(L.Callback):
    """Save every rank's final weights (any LightningModule) as weights_rank{r}.pt in `out_dir`."""

    def __init__(self, out_dir: str):
        self.out_dir = out_dir

    def on_train_end(self, trainer, pl_module):
        Path(self.out_dir).mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().cpu().clone() for k, v in pl_module.state_dict().items()}
        torch.save(state, Path(self.out_dir) / f"weights_rank{trainer.global_rank}.pt")


class StepTimer(L.Callback):
    """Write {"steps", "seconds", "steps_per_s"} of the optimizer steps after the first to `out` (rank 0).

    The first step is left out: it includes building the optimizer state and warming caches.
    Tests record these numbers; they never assert on them.
    """

    def __init__(self, out: str):
        self.out = out
        self._start = None
        self._steps = 0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        import time

        if self._start is None:
            self._start, self._first_step = time.perf_counter(), trainer.global_step
        else:  # optimizer steps, so accumulated micro-batches count once
            self._steps = trainer.global_step - self._first_step
            self._seconds = time.perf_counter() - self._start

    def on_train_end(self, trainer, pl_module):
        if trainer.is_global_zero and self._steps:
            record = {"steps": self._steps, "seconds": self._seconds, "steps_per_s": self._steps / self._seconds}
            Path(self.out).write_text(json.dumps(record))
