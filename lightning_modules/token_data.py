"""TokenDataModule: batches of token grids for transformer training.

Two sources, same batches `{"tokens": int64 (B, T', H', W'), "label": int64 (B,)}`:
- a token cache written by `nbp tokenize` (the fast path: the tokenizer never runs in training);
- on the fly: video datasets plus a tokenizer file; clips are decoded by the DataLoader and
  encoded on the training device right after the batch is moved there.
"""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader

from lightning_modules.resumable import ResumableDataLoader
from nbp.data import DatasetConfig
from nbp.errors import UserError, ignore_interrupt_in_worker
from nbp.token_cache import TokenCache
from nbp.token_windows import TokenWindows


def collate_tokens(items: list[dict]) -> dict:
    batch = {"tokens": torch.stack([it["tokens"] for it in items]),
             "label": torch.tensor([it["label"] for it in items], dtype=torch.long)}
    if "clip_start" in items[0]:
        batch["clip_start"] = torch.tensor([it["clip_start"] for it in items], dtype=torch.bool)
    return batch


def collate_videos(items: list[dict]) -> dict:
    """Video items -> a batch; unreadable videos (already turned into 'skipped' records) are dropped."""
    readable = [it for it in items if "skipped" not in it]
    if not readable:
        return {"video": torch.zeros(0, dtype=torch.uint8), "label": torch.zeros(0, dtype=torch.long)}
    return {"video": torch.stack([it["video"] for it in readable]),
            "label": torch.tensor([int(it["label"]) for it in readable], dtype=torch.long)}


def compression_of(tokenizer_config: dict) -> dict:
    """The tokenizer facts a model file records (see nbp.model_file.TOKENIZER_FIELDS)."""
    from nbp.model_file import TOKENIZER_FIELDS

    return {k: tokenizer_config[k] for k in TOKENIZER_FIELDS if k in tokenizer_config}


class TokenDataModule(L.LightningDataModule):
    def __init__(self, train_cache: str | None = None, val_cache: str | None = None,
                 tokenizer: str | None = None, train_data: DatasetConfig | None = None,
                 val_data: DatasetConfig | None = None, batch_size: int = 32, val_batch_size: int | None = None,
                 num_workers: int = 0, seed: int = 0, window: int | None = None):
        """Give `train_cache` (and optionally `val_cache`), or `tokenizer` with `train_data` (and `val_data`).

        Args:
            train_cache: token cache directory of the training split (written by `nbp tokenize`).
            val_cache: token cache directory of the held-out split (validation, test and predict).
            tokenizer: tokenizer file; with it, clips are tokenized on the fly instead of read from a cache.
            train_data: the training videos (DatasetConfig) when tokenizing on the fly.
            val_data: the held-out videos (DatasetConfig) when tokenizing on the fly.
            batch_size: training batch per process.
            val_batch_size: held-out batch per process (None: batch_size).
            num_workers: DataLoader worker processes.
            seed: fixes the shuffling order of every epoch (identical across a resume).
            window: train on windows of this many latent frames of longer clips (token caches only):
                every window of every training clip, shuffled; held-out clips at their start, middle
                and end. Each batch then says which windows start their clip ("clip_start").
        """
        super().__init__()
        self.save_hyperparameters()
        on_the_fly = tokenizer is not None
        if on_the_fly == (train_cache is not None):
            raise UserError("TokenDataModule needs exactly one source: train_cache (a token cache directory) "
                            "or tokenizer + train_data (tokenize on the fly)")
        if on_the_fly and train_data is None:
            raise UserError("TokenDataModule: tokenizing on the fly needs train_data (a dataset config)")
        if batch_size < 1:
            raise UserError(f"TokenDataModule.batch_size={batch_size} is invalid; it must be >= 1")
        if window is not None and (on_the_fly or window < 2):
            raise UserError(f"TokenDataModule.window={window} is invalid: at least 2 latent frames, and only with "
                            f"train_cache (tokenize long clips first)")
        if num_workers < 0:
            raise UserError(f"TokenDataModule.num_workers={num_workers} is invalid; it must be >= 0")
        self.on_the_fly = on_the_fly
        self._tokenizer = None
        self._train = self._val = None

    # ------------------------------------------------------------------ what the model needs to know

    def describe(self) -> dict:
        """Grid, vocabulary and number of classes of the training tokens (read without loading shards)."""
        if self.on_the_fly:
            tok = self.tokenizer
            cfg = self.hparams.train_data
            grid = tuple(int(g) for g in tok.latent_shape(cfg.frames, cfg.size, cfg.size))
            from nbp.data import build_dataset

            classes = getattr(build_dataset(cfg), "class_names", None)
            return {"grid": grid, "vocab_size": int(tok.vocab_size), "num_classes": len(classes) if classes else None,
                    "tokenizer": compression_of(vars(tok.config)), "window": 0}
        from nbp.token_cache import read_meta

        meta = read_meta(self.hparams.train_cache)
        grid, window = meta.grid, self.hparams.window
        if window is not None:
            if window > grid[0]:
                raise UserError(f"TokenDataModule.window={window} is longer than the clips of "
                                f"{self.hparams.train_cache} ({grid[0]} latent frames, {meta.frames} pixel frames)")
            grid = (window, *grid[1:])
        return {"grid": grid, "vocab_size": meta.vocab_size, "num_classes": meta.num_classes,
                "tokenizer": compression_of(meta.tokenizer_config or {}), "window": window or 0}

    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from nbp.sampling import load_tokenizer

            self._tokenizer = load_tokenizer(self.hparams.tokenizer, torch.device("cpu"))
            self._tokenizer.requires_grad_(False)
        return self._tokenizer

    # ------------------------------------------------------------------ datasets

    def setup(self, stage: str | None = None) -> None:
        if self._train is not None:
            return
        if self.on_the_fly:
            from nbp.commands.tokenize import SkipUnreadable
            from nbp.data import build_dataset

            self._train = SkipUnreadable(build_dataset(self.hparams.train_data))
            val = self.hparams.val_data
            self._val = SkipUnreadable(build_dataset(val)) if val is not None else None
        else:
            self._train = TokenCache(self.hparams.train_cache)
            val = self.hparams.val_cache
            self._val = TokenCache(val) if val is not None else None
            if self._val is not None:
                self._val.check(tokenizer_sha256=self._train.meta.tokenizer_sha256, grid=self._train.grid)
            window = self.hparams.window
            if window is not None:
                clip_frames = self._train.grid[0]
                self._train = TokenWindows(self._train, clip_frames, window, "all")
                if self._val is not None:
                    self._val = TokenWindows(self._val, clip_frames, window, "fixed")

    def _loader(self, dataset, train: bool, batch_size: int) -> DataLoader:
        collate = collate_videos if self.on_the_fly else collate_tokens
        workers = self.hparams.num_workers
        common = dict(batch_size=batch_size, num_workers=workers, persistent_workers=workers > 0,
                      collate_fn=collate, pin_memory=torch.cuda.is_available(),
                      worker_init_fn=ignore_interrupt_in_worker)
        if train:
            # Shuffled per (seed, epoch) and split across ranks; its position is saved in checkpoints,
            # so a resumed run continues with the very next batch.
            return ResumableDataLoader(dataset, shuffle=True, seed=self.hparams.seed, drop_last=True, **common)
        return DataLoader(dataset, shuffle=False, **common)

    def train_dataloader(self) -> DataLoader:
        if len(self._train) < self.hparams.batch_size:
            raise UserError(f"the training set has {len(self._train)} items, fewer than batch_size="
                            f"{self.hparams.batch_size}; lower data.init_args.batch_size")
        return self._loader(self._train, train=True, batch_size=self.hparams.batch_size)

    def val_dataloader(self):
        if self._val is None:
            return []
        return self._loader(self._val, train=False,
                            batch_size=self.hparams.val_batch_size or self.hparams.batch_size)

    def test_dataloader(self):
        """The held-out cache (val_cache): what `nbp train test` and `predict` score."""
        if self._val is None:
            raise UserError("nbp train test/predict need data.init_args.val_cache (or val_data): the held-out tokens")
        return self.val_dataloader()

    predict_dataloader = test_dataloader

    # ------------------------------------------------------------------ on-the-fly encoding, on the device

    def on_after_batch_transfer(self, batch: dict, dataloader_idx: int) -> dict:
        if "video" not in batch:
            return batch
        video = batch.pop("video")
        tok = self.tokenizer
        if video.shape[0] == 0:  # every video of this batch was unreadable
            batch["tokens"] = torch.zeros(0, dtype=torch.long, device=video.device)
            return batch
        if next(tok.parameters()).device != video.device:
            tok.to(video.device)
        from nbp.commands.tokenize import encode_videos

        batch["tokens"] = encode_videos(tok, video, video.device)
        return batch

