"""DatasetConfig: the one YAML-able description of a video dataset, and build_dataset."""

from __future__ import annotations

from dataclasses import dataclass

from torch.utils.data import Dataset

from nbp.data.clip_reader import POSITIONS, RESIZES
from nbp.errors import UserError

KINDS = ("ucf101", "k600", "folder", "synthetic")
SPLITS = ("train", "test", "val")


@dataclass
class DatasetConfig:
    """Which videos, and how clips are cut from them.

    kind: "ucf101" (root + official split files), "k600" (root/split/class or a csv),
      "folder" (any folder of videos), "synthetic" (with a root: the files written by
      `nbp data synthetic`, read as UCF-101; without a root: rendered on the fly).
    split / fold: UCF-101 uses train|test and folds 1..3; Kinetics train|val|test;
      ignored by "folder"; synthetic uses train|test.
    frames, fps, size: clip length, target frame rate (resampled from each file's
      rate; None keeps every frame) and output side in pixels.
    clip: where in the file the clip is taken (center|random|start).
    resize: "crop" (shorter side to size, centre crop) or "squash" (straight to size).
    csv: Kinetics annotation CSV (youtube_id, time_start, time_end, label), optional.
    root: the dataset folder (synthetic without a root: rendered on the fly).
    videos_per_class, seed: synthetic rendered on the fly only (no root).
    cache: decode each file once and keep all its frames in RAM (size x size x 3 bytes per
      frame, per DataLoader worker); for small datasets only. Synthetic videos rendered on
      the fly have nothing to decode and ignore it.
    """

    kind: str = "synthetic"
    root: str | None = None
    split: str = "train"
    fold: int = 1
    frames: int = 17
    fps: float | None = 8
    size: int = 128
    clip: str = "center"
    resize: str = "crop"
    csv: str | None = None
    videos_per_class: int | None = None
    seed: int = 0
    cache: bool = False

    def __post_init__(self):
        _one_of("kind", self.kind, KINDS)
        _one_of("split", self.split, SPLITS)
        _one_of("clip", self.clip, POSITIONS)
        _one_of("resize", self.resize, RESIZES)
        if self.kind != "synthetic" and not self.root:
            raise UserError(f"DatasetConfig.root is required for kind={self.kind!r} (a folder of videos)")
        if self.kind == "synthetic" and self.split == "val":
            raise UserError("DatasetConfig.split='val' does not exist for kind='synthetic'; valid: train, test")
        if self.kind == "ucf101" and self.split == "val":
            raise UserError("DatasetConfig.split='val' does not exist for kind='ucf101'; valid: train, test")
        if self.fold not in (1, 2, 3):
            raise UserError(f"DatasetConfig.fold={self.fold}; valid: 1, 2, 3 (UCF-101 folds)")
        if self.frames < 1:
            raise UserError(f"DatasetConfig.frames={self.frames}; must be >= 1")
        if self.fps is not None and not self.fps > 0:
            raise UserError(f"DatasetConfig.fps={self.fps}; must be > 0, or null for each file's own rate")
        if self.size < 1:
            raise UserError(f"DatasetConfig.size={self.size}; must be >= 1")
        if self.csv is not None and self.kind != "k600":
            raise UserError(f"DatasetConfig.csv is only used by kind='k600', not kind={self.kind!r}")
        if self.videos_per_class is not None:
            if self.kind != "synthetic":
                raise UserError(f"DatasetConfig.videos_per_class is only used by kind='synthetic', not {self.kind!r}")
            if self.videos_per_class < 2:
                raise UserError(f"DatasetConfig.videos_per_class={self.videos_per_class}; must be >= 2")


def _one_of(field: str, value, valid: tuple) -> None:
    if value not in valid:
        raise UserError(f"DatasetConfig.{field}={value!r}; valid: {', '.join(map(str, valid))}")


def build_dataset(cfg: DatasetConfig) -> Dataset:
    """The Dataset described by `cfg`; errors a user can cause are UserError."""
    from nbp.data.datasets import Kinetics600Dataset, UCF101Dataset, VideoFolderDataset
    from nbp.data.synthetic import SyntheticVideoDataset

    clip = dict(frames=cfg.frames, fps=cfg.fps, size=cfg.size, clip=cfg.clip, resize=cfg.resize, cache=cfg.cache)
    if cfg.kind == "ucf101":
        return UCF101Dataset(cfg.root, split=cfg.split, fold=cfg.fold, **clip)
    if cfg.kind == "k600":
        return Kinetics600Dataset(cfg.root, split=cfg.split, csv=cfg.csv, **clip)
    if cfg.kind == "folder":
        return VideoFolderDataset(cfg.root, **clip)
    if cfg.root:  # files written by `nbp data synthetic`: UCF-101 layout, read like UCF-101
        return UCF101Dataset(cfg.root, split=cfg.split, fold=1, **clip)
    return SyntheticVideoDataset(
        cfg.videos_per_class or 20, frames=cfg.frames, size=cfg.size, seed=cfg.seed, split=cfg.split
    )
