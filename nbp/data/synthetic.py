"""The built-in synthetic dataset: coloured squares or circles bouncing on black.

Six classes (1, 2 or 3 objects; all squares or all circles). Object k is always
drawn in palette colour k (red, then green, then blue), so a video's colours tell
its objects apart and show its class's count at a glance. Every object has a side /
diameter of 1/5 of the frame, a random start fully inside the frame and a constant
velocity of 1..3 px/frame per axis at 64 px (scaled with the size), bouncing
elastically off the edges. Positions are kept as floats and rounded only when
drawn, so small sizes still move smoothly.

Every video has its own seed derived from (seed, split, class, index), so video k
of a class is the same whatever the dataset size: subsets are stable.

`write_synthetic_dataset` writes real mp4 files in the UCF-101 layout (class
folders, classInd.txt, trainlist01.txt, testlist01.txt) so the UCF-101 loader
reads it; `SyntheticVideoDataset` renders the same videos on the fly.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from nbp.errors import UserError

CLASS_NAMES = ("OneSquare", "TwoSquares", "ThreeSquares", "OneCircle", "TwoCircles", "ThreeCircles")

# Pure, full-intensity colours. Object k of a video is drawn in COLOURS[k]; the other three never
# appear in real videos, so a sample showing one of them has an object of the wrong colour. Fixed
# rather than random colours: a tiny model then learns the count instead of colours (measured in
# docs/experiments/2026-12-07-demo.md, "Why each object has a fixed colour").
COLOURS = np.array(
    [[255, 0, 0], [0, 255, 0], [0, 0, 255], [255, 255, 0], [255, 0, 255], [0, 255, 255]], dtype=np.uint8
)

SPLITS = ("train", "test")
_SPLIT_CODE = {"train": 0, "test": 1}

# H.264 settings for the written files: 4:4:4 chroma (no colour bleeding at the sharp object
# edges) and CRF 0 (lossless x264): decoded frames differ from the generator by at most 1 level
# (the RGB <-> YUV rounding), and on flat black backgrounds lossless files are no larger than
# lossy ones (docs/experiments/2026-12-08-demo.md).
SYNTHETIC_CRF = 0
SYNTHETIC_PIX_FMT = "yuv444p"


def num_objects(class_id: int) -> int:
    return class_id % 3 + 1


def is_circle(class_id: int) -> bool:
    return class_id >= 3


def object_size(size: int) -> int:
    """Side (square) or diameter (circle): 1/5 of the frame, rounded, at least 1 px."""
    return max(1, round(size / 5))


def shape_mask(side: int, circle: bool) -> np.ndarray:
    """Boolean (side, side) stamp: all True for a square, a disc for a circle."""
    if not circle:
        return np.ones((side, side), dtype=bool)
    centres = np.arange(side) + 0.5  # pixel centres
    dy, dx = np.meshgrid(centres - side / 2, centres - side / 2, indexing="ij")
    return dy**2 + dx**2 <= (side / 2) ** 2


def _bounce(pos: np.ndarray, vel: np.ndarray, limit: float) -> None:
    """Reflect positions that left [0, limit] back inside and flip their velocity (in place)."""
    low, high = pos < 0, pos > limit
    pos[low] = -pos[low]
    pos[high] = 2 * limit - pos[high]
    vel[low | high] *= -1
    np.clip(pos, 0, limit, out=pos)  # a step larger than the free space cannot escape


def render_video(class_id: int, frames: int, size: int, rng: np.random.Generator) -> np.ndarray:
    """One synthetic video of class `class_id`: uint8 (T, H, W, C)."""
    if not 0 <= class_id < len(CLASS_NAMES):
        raise UserError(f"class_id={class_id} is out of range; valid: 0..{len(CLASS_NAMES) - 1}")
    if frames < 1 or size < 5:
        raise UserError(f"frames={frames}, size={size}: need frames >= 1 and size >= 5")
    count = num_objects(class_id)
    side = object_size(size)
    limit = float(size - side)  # top-left corner range that keeps the object inside

    colours = COLOURS[object_colours(count)]
    pos = rng.uniform(0.0, limit, size=(count, 2))  # (y, x) top-left corners, float
    speed = rng.integers(1, 4, size=(count, 2)) * (size / 64)
    vel = speed * rng.choice([-1.0, 1.0], size=(count, 2))
    stamp = shape_mask(side, is_circle(class_id))

    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    for t in range(frames):
        for colour, (y, x) in zip(colours, np.rint(pos).astype(int)):
            video[t, y : y + side, x : x + side][stamp] = colour
        pos += vel
        _bounce(pos, vel, limit)
    return video


def object_colours(count: int) -> list[int]:
    """Palette indices of the objects of a video with `count` objects: object k is colour k."""
    return list(range(count))


def class_colours(class_id: int) -> list[int]:
    """The palette colours every video of `class_id` shows: one per object, in order."""
    return object_colours(num_objects(class_id))


def video_rng(seed: int, split: str, class_id: int, index: int) -> np.random.Generator:
    """The generator of one video; independent of how many videos the dataset has."""
    return np.random.default_rng([seed, _SPLIT_CODE[split], class_id, index])


def split_sizes(videos_per_class: int) -> dict[str, int]:
    """Videos per class in each split: one fifth (at least one) goes to test."""
    if videos_per_class < 2:
        raise UserError(f"videos_per_class={videos_per_class}: need at least 2 (one train, one test)")
    test = max(1, videos_per_class // 5)
    return {"train": videos_per_class - test, "test": test}


def video_name(class_id: int, split: str, index: int) -> str:
    """Relative path of a written video, as it appears in the split files."""
    name = CLASS_NAMES[class_id]
    return f"{name}/v_{name}_{split}{index:03d}.mp4"


def write_synthetic_dataset(
    out: str | Path, videos_per_class: int = 20, frames: int = 17, size: int = 64, fps: int = 8, seed: int = 0
) -> Path:
    """Write the synthetic dataset as mp4 files in the UCF-101 layout under `out`; return `out`."""
    from nbp.files import write_bytes_atomic
    from nbp.video_io import write_mp4

    out = Path(out)
    if fps <= 0:
        raise UserError(f"fps={fps}: must be positive")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    sizes = split_sizes(videos_per_class)
    lists: dict[str, list[str]] = {split: [] for split in SPLITS}
    for class_id in range(len(CLASS_NAMES)):
        for split in SPLITS:
            for index in range(sizes[split]):
                video = render_video(class_id, frames, size, video_rng(seed, split, class_id, index))
                rel = video_name(class_id, split, index)
                tensor = torch.from_numpy(video).permute(3, 0, 1, 2)  # (C, T, H, W)
                write_mp4(out / rel, tensor, fps=fps, crf=SYNTHETIC_CRF, pix_fmt=SYNTHETIC_PIX_FMT)
                # UCF-101 conventions: trainlist lines carry a 1-based label, testlist lines do not.
                lists[split].append(f"{rel} {class_id + 1}" if split == "train" else rel)

    # Split files last: a dataset interrupted mid-write has no lists, so it cannot be half-read.
    class_ind = "".join(f"{i + 1} {name}\n" for i, name in enumerate(CLASS_NAMES))
    write_bytes_atomic(out / "classInd.txt", class_ind.encode())
    write_bytes_atomic(out / "trainlist01.txt", ("\n".join(lists["train"]) + "\n").encode())
    write_bytes_atomic(out / "testlist01.txt", ("\n".join(lists["test"]) + "\n").encode())
    return out


class SyntheticVideoDataset(Dataset):
    """The synthetic videos rendered on the fly, in the same order as the written split lists.

    Items: {"video": uint8 (C, T, H, W), "label": class id, "path": the relative file name}.
    """

    def __init__(self, videos_per_class: int, frames: int = 17, size: int = 64, seed: int = 0, split: str = "train"):
        if split not in SPLITS:
            raise UserError(f"split={split!r} is not valid for the synthetic dataset; valid: {', '.join(SPLITS)}")
        self.frames, self.size, self.seed, self.split = frames, size, seed, split
        per_class = split_sizes(videos_per_class)[split]
        self.items = [(c, i) for c in range(len(CLASS_NAMES)) for i in range(per_class)]
        self.skipped = 0  # nothing to skip; kept so every dataset has the counter

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        class_id, i = self.items[index]
        video = render_video(class_id, self.frames, self.size, video_rng(self.seed, self.split, class_id, i))
        return {
            "video": torch.from_numpy(video).permute(3, 0, 1, 2).contiguous(),
            "label": class_id,
            "path": video_name(class_id, self.split, i),
        }
