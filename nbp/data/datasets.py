"""Video clip datasets: UCF-101, Kinetics-600 and a generic folder of videos.

Every dataset is a list of (path, label) plus the clip settings; an item is
{"video": uint8 (C, T, H, W), "label": int (-1 when none), "path": str}.

Bad files never crash an epoch: a file that is unreadable, corrupt or too short
is skipped, a substitute clip (the next readable file) is returned, the path is
reported once with a `SkippedVideoWarning`, and `dataset.skipped` counts the
distinct skipped files. With DataLoader workers each worker process holds its own
copy of the dataset, so each worker counts and warns for the files it met; the
warning names the worker and its running count. Construction fails with a
UserError naming what was searched when the root, a split file, or every video
is missing or unreadable.

With `cache=True` a dataset decodes each file once, keeps all its frames (resized) in RAM and
cuts every later clip from them: for small datasets read many times (the synthetic set at 400
videos per class is ~100 MB of frames), where decoding was 7% of a small tokenizer's training
step. Each DataLoader worker holds its own cache.
"""

from __future__ import annotations

import csv
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, get_worker_info

from nbp.data.clip_reader import POSITIONS, RESIZES, VideoReadError, clip_from_frames, read_all_frames, read_clip
from nbp.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg")


class SkippedVideoWarning(UserWarning):
    """A video file was skipped (unreadable, corrupt or too short); another clip was used."""


def _require_dir(path: Path, what: str) -> Path:
    if not path.is_dir():
        raise UserError(f"{what} not found: {path} is not a folder")
    return path


def list_videos(folder: Path) -> list[Path]:
    """All video files below `folder`, sorted, so the order is the same on every machine."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames.sort()
        found += [Path(dirpath, f) for f in sorted(filenames) if f.lower().endswith(VIDEO_EXTENSIONS)]
    return found


class VideoClipDataset(Dataset):
    """Clips from a fixed list of (path, label) with skip-and-count for bad files."""

    def __init__(
        self,
        videos: list[tuple[str, int]],
        frames: int = 17,
        fps: float | None = 8,
        size: int = 128,
        clip: str = "center",
        resize: str = "crop",
        searched: str = "",
        cache: bool = False,
    ):
        if clip not in POSITIONS:
            raise UserError(f"clip={clip!r}; valid: {', '.join(POSITIONS)}")
        if resize not in RESIZES:
            raise UserError(f"resize={resize!r}; valid: {', '.join(RESIZES)}")
        if not videos:
            raise UserError(f"no videos found; searched {searched}")
        self.videos = [(str(p), int(label)) for p, label in videos]
        self.frames, self.fps, self.size, self.clip, self.resize = frames, fps, size, clip, resize
        self.skipped_paths: set[str] = set()
        # path -> (every frame, resized; the file's fps). Filled on first read when caching.
        self.cache: dict[str, tuple[np.ndarray, float]] | None = {} if cache else None
        self._check_one_readable(searched)

    @property
    def skipped(self) -> int:
        """Distinct files skipped so far in this process (see the module note about workers)."""
        return len(self.skipped_paths)

    def __len__(self) -> int:
        return len(self.videos)

    def _check_one_readable(self, searched: str) -> None:
        """Fail now, not mid-epoch, when no file gives a clip; stops at the first good file."""
        for index in range(len(self.videos)):
            try:
                self._read(index)
                return
            except VideoReadError as err:
                self._report_skip(self.videos[index][0], err)
        raise UserError(
            f"none of the {len(self.videos)} videos gives a {self.frames}-frame clip at {self.fps} fps; searched {searched}"
        )

    def _read(self, index: int) -> np.ndarray:
        path = self.videos[index][0]
        # Random clip positions draw from torch's generator: seeded by torch.manual_seed
        # and re-seeded per DataLoader worker, so workers do not repeat each other.
        rng = np.random.default_rng(int(torch.randint(2**62, ()))) if self.clip == "random" else None
        if self.cache is None:
            return read_clip(path, self.frames, self.fps, self.size, self.clip, self.resize, rng)
        if path not in self.cache:
            self.cache[path] = read_all_frames(path, self.size, self.resize)
        all_frames, source_fps = self.cache[path]
        try:
            return clip_from_frames(all_frames, source_fps, self.frames, self.fps, self.clip, rng)
        except VideoReadError as err:  # too short for the clip
            raise VideoReadError(f"{path}: {err}") from None

    def _report_skip(self, path: str, err: Exception) -> None:
        if path in self.skipped_paths:
            return
        self.skipped_paths.add(path)
        worker = get_worker_info()
        where = f"worker {worker.id}" if worker is not None else "main process"
        warnings.warn(
            f"skipped video ({where}: {self.skipped} skipped so far): {err}", SkippedVideoWarning, stacklevel=3
        )

    def __getitem__(self, index: int) -> dict:
        # Try the requested file, then the following ones: a bad file gets a substitute clip.
        for attempt in range(len(self.videos)):
            current = (index + attempt) % len(self.videos)
            path, label = self.videos[current]
            if path in self.skipped_paths:
                continue
            try:
                clip = self._read(current)
            except VideoReadError as err:
                self._report_skip(path, err)
                continue
            video = torch.from_numpy(clip).permute(3, 0, 1, 2).contiguous()  # (C, T, H, W)
            return {"video": video, "label": label, "path": path}
        raise RuntimeError(f"every one of the {len(self.videos)} videos failed to read")


# ----------------------------------------------------------------------------- UCF-101


def read_class_index(path: Path) -> list[str]:
    """classInd.txt: lines "1 ApplyEyeMakeup" -> class names in label order (label = number - 1)."""
    classes = {}
    for line_no, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not parts[0].isdigit():
            raise UserError(f"{path}:{line_no}: expected '<number> <ClassName>', got {line.strip()!r}")
        classes[int(parts[0]) - 1] = parts[1]
    if sorted(classes) != list(range(len(classes))):
        raise UserError(f"{path}: class numbers must run 1..{len(classes)} without gaps")
    return [classes[i] for i in range(len(classes))]


def parse_ucf_split(split_file: Path, class_names: list[str]) -> list[tuple[str, int]]:
    """trainlist0N.txt ("Class/v_Class_g08_c01.avi 1") or testlist0N.txt ("Class/v_Class_g01_c01.avi").

    The label comes from the class folder via classInd.txt, the same for both lists;
    names are matched ignoring case, because the official lists and folders mix cases.
    """
    classes = {name.lower(): i for i, name in enumerate(class_names)}
    entries = []
    for line_no, line in enumerate(split_file.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        # "<path> <label>" or "<path>"; the path itself may contain spaces.
        head, _, tail = text.rpartition(" ")
        rel = (head.strip() if head and tail.isdigit() else text).replace("\\", "/")
        class_name = rel.split("/")[0].lower()
        if "/" not in rel or class_name not in classes:
            raise UserError(f"{split_file}:{line_no}: {rel!r} is not '<Class>/<file>' with a class from classInd.txt")
        entries.append((rel, classes[class_name]))
    return entries


def _case_insensitive_index(root: Path) -> dict[str, Path]:
    """lower-case relative path -> real path, for split lists whose case differs from the files on disk."""
    return {str(p.relative_to(root)).replace(os.sep, "/").lower(): p for p in list_videos(root)}


def _resolve_listed(root: Path, entries: list[tuple[str, int]], searched: str) -> list[tuple[str, int]]:
    """Map split-list entries to files; listed files that do not exist are reported once and dropped."""
    videos, missing, index = [], [], None
    for rel, label in entries:
        path = root / rel
        if not path.is_file():
            index = _case_insensitive_index(root) if index is None else index
            path = index.get(rel.lower())
        if path is None:
            missing.append(rel)
        else:
            videos.append((str(path), label))
    if missing and videos:
        warnings.warn(
            f"{len(missing)} of {len(entries)} listed videos are missing under {root} (first: {missing[0]})",
            SkippedVideoWarning,
            stacklevel=3,
        )
    if not videos:
        raise UserError(f"none of the {len(entries)} videos listed in {searched} exists under {root}")
    return videos


class UCF101Dataset(VideoClipDataset):
    """UCF-101 with the official split files (classInd.txt, trainlist0N.txt, testlist0N.txt).

    `root` holds the class folders (or a `UCF-101/` folder with them); the split
    files are looked up in `root` and in `root/ucfTrainTestlist/` (the official zip).
    """

    def __init__(
        self,
        root,
        split: str = "train",
        fold: int = 1,
        frames: int = 17,
        fps: float | None = 8,
        size: int = 128,
        clip: str = "center",
        resize: str = "crop",
        cache: bool = False,
    ):
        if split not in ("train", "test"):
            raise UserError(f"split={split!r} is not a UCF-101 split; valid: train, test")
        if fold not in (1, 2, 3):
            raise UserError(f"fold={fold} is not a UCF-101 fold; valid: 1, 2, 3")
        root = _require_dir(Path(root), "UCF-101 root")
        video_root = root / "UCF-101" if (root / "UCF-101").is_dir() else root
        list_dirs = [root, root / "ucfTrainTestlist", video_root]
        split_file = self._find(list_dirs, f"{split}list0{fold}.txt")
        self.class_names = read_class_index(self._find(list_dirs, "classInd.txt"))
        entries = parse_ucf_split(split_file, self.class_names)
        videos = _resolve_listed(video_root, entries, str(split_file))
        searched = f"{split_file} under {video_root}"
        super().__init__(videos, frames, fps, size, clip, resize, searched=searched, cache=cache)

    @staticmethod
    def _find(folders: list[Path], name: str) -> Path:
        for folder in folders:
            if (folder / name).is_file():
                return folder / name
        raise UserError(f"UCF-101 split file {name} not found; searched {', '.join(str(f) for f in dict.fromkeys(folders))}")


# ----------------------------------------------------------------------------- Kinetics-600


def _kinetics_file_name(youtube_id: str, start: str, end: str) -> str:
    """File name stem used by the common Kinetics downloaders: <id>_<start:06d>_<end:06d>."""
    return f"{youtube_id}_{int(float(start)):06d}_{int(float(end)):06d}"


def parse_kinetics_csv(csv_path: Path) -> list[tuple[str, str]]:
    """Rows of the official annotation CSV -> [(file stem, label name)]."""
    with open(csv_path, newline="") as f:
        reader = csv.DictReader(f)
        needed = {"youtube_id", "time_start", "time_end", "label"}
        if reader.fieldnames is None or not needed <= set(reader.fieldnames):
            raise UserError(f"{csv_path}: needs the columns {', '.join(sorted(needed))}; found {reader.fieldnames}")
        return [(_kinetics_file_name(r["youtube_id"], r["time_start"], r["time_end"]), r["label"]) for r in reader]


class Kinetics600Dataset(VideoClipDataset):
    """Kinetics-600 from `root/<split>/<class>/*.mp4`, or from the annotation CSV.

    With `csv`, rows (youtube_id, time_start, time_end, label) are matched to files
    named `<youtube_id>_<start:06d>_<end:06d>.<ext>` anywhere below `root/<split>`
    (or `root` when there is no split folder); labels are the sorted label names.
    """

    def __init__(
        self,
        root,
        split: str = "train",
        csv: str | None = None,
        frames: int = 17,
        fps: float | None = 8,
        size: int = 128,
        clip: str = "center",
        resize: str = "crop",
        cache: bool = False,
    ):
        if split not in ("train", "val", "test"):
            raise UserError(f"split={split!r} is not a Kinetics split; valid: train, val, test")
        root = _require_dir(Path(root), "Kinetics-600 root")
        candidates = [root / split] + ([root / "validate"] if split == "val" else [])
        split_dir = next((d for d in candidates if d.is_dir()), None)
        if csv is not None:
            videos, searched = self._from_csv(Path(csv), split_dir or root)
        else:
            if split_dir is None:
                raise UserError(f"Kinetics-600 split folder not found; searched {', '.join(map(str, candidates))}")
            videos, searched = self._from_folders(split_dir), f"{split_dir}/<class>/*"
        super().__init__(videos, frames, fps, size, clip, resize, searched=searched, cache=cache)

    def _from_folders(self, split_dir: Path) -> list[tuple[str, int]]:
        classes = sorted(d.name for d in split_dir.iterdir() if d.is_dir())
        self.class_names = classes
        return [(str(p), i) for i, name in enumerate(classes) for p in list_videos(split_dir / name)]

    def _from_csv(self, csv_path: Path, video_root: Path) -> tuple[list[tuple[str, int]], str]:
        if not csv_path.is_file():
            raise UserError(f"Kinetics-600 csv not found: {csv_path}")
        rows = parse_kinetics_csv(csv_path)
        self.class_names = sorted({label for _, label in rows})
        label_ids = {name: i for i, name in enumerate(self.class_names)}
        by_stem = {p.stem: p for p in list_videos(video_root)}
        videos = [(str(by_stem[stem]), label_ids[label]) for stem, label in rows if stem in by_stem]
        missing = len(rows) - len(videos)
        if missing and videos:
            warnings.warn(
                f"{missing} of {len(rows)} videos in {csv_path} are missing under {video_root}",
                SkippedVideoWarning,
                stacklevel=3,
            )
        return videos, f"{csv_path} rows under {video_root}"


# ----------------------------------------------------------------------------- any folder


class VideoFolderDataset(VideoClipDataset):
    """All videos below `root`. Labels from sub-folder names (sorted) when every video sits in
    `root/<label>/`; otherwise (videos directly in root, or mixed depths) labels are -1."""

    def __init__(
        self,
        root,
        frames: int = 17,
        fps: float | None = 8,
        size: int = 128,
        clip: str = "center",
        resize: str = "crop",
        cache: bool = False,
    ):
        root = _require_dir(Path(root), "video folder")
        paths = list_videos(root)
        labelled = bool(paths) and all(len(p.relative_to(root).parts) == 2 for p in paths)
        if labelled:
            self.class_names = sorted({p.parent.name for p in paths})
            label_ids = {name: i for i, name in enumerate(self.class_names)}
            videos = [(str(p), label_ids[p.parent.name]) for p in paths]
        else:
            self.class_names = []
            videos = [(str(p), -1) for p in paths]
        searched = f"{root} (recursively, for {', '.join(VIDEO_EXTENSIONS)})"
        super().__init__(videos, frames, fps, size, clip, resize, searched=searched, cache=cache)
