"""Read one fixed-length clip from a video file with decord, decoding only the frames it needs.

The clip's frame indices are computed first (resampled from the file's frame rate
to the target fps, placed at the start, centre or a random position), then only
those frames are decoded with `VideoReader.get_batch`. Frames are resized on the
way out: `crop` resizes the shorter side to `size` and centre-crops (aspect ratio
preserved); `squash` resizes straight to size x size, as the reference
implementation did (aspect ratio lost).
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import sys

import numpy as np
import torch
import torch.nn.functional as F

from nbp.errors import UserError

POSITIONS = ("center", "random", "start")
RESIZES = ("crop", "squash")


class VideoReadError(RuntimeError):
    """A file that cannot give the requested clip: unreadable, corrupt or too short."""


def clip_offsets(frames: int, source_fps: float, fps: float | None) -> np.ndarray:
    """Frame offsets, relative to the clip start, that sample `frames` frames at `fps`.

    A source at 25 fps sampled at 8 fps steps 3.125 source frames per output frame;
    offsets are rounded to the nearest source frame. fps=None keeps every frame.
    A target fps above the source repeats frames.
    """
    step = 1.0 if fps is None else source_fps / fps
    return np.floor(np.arange(frames) * step + 0.5).astype(np.int64)


def clip_start(num_frames: int, span: int, position: str, rng: np.random.Generator | None) -> int:
    """First source frame of a clip covering `span` source frames in a file of `num_frames`."""
    free = num_frames - span
    if position == "start":
        return 0
    if position == "center":
        return free // 2
    rng = rng if rng is not None else np.random.default_rng()
    return int(rng.integers(0, free + 1))


def clip_indices(
    num_frames: int,
    source_fps: float,
    frames: int,
    fps: float | None,
    position: str = "center",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """Source frame indices of the clip; raises VideoReadError if the file is too short."""
    offsets = clip_offsets(frames, source_fps, fps)
    span = int(offsets[-1]) + 1
    if span > num_frames:
        raise VideoReadError(
            f"too short: {num_frames} frames at {source_fps:g} fps, a {frames}-frame clip at {fps} fps needs {span}"
        )
    return clip_start(num_frames, span, position, rng) + offsets


def resized_shape(height: int, width: int, size: int, resize: str) -> tuple[int, int]:
    """Size before cropping: shorter side -> size (crop), or size x size (squash)."""
    if resize == "squash":
        return size, size
    scale = size / min(height, width)
    # max() guards against rounding the longer side below the crop size.
    return max(size, round(height * scale)), max(size, round(width * scale))


def resize_frames(frames: torch.Tensor, size: int, resize: str) -> torch.Tensor:
    """uint8 (T, H, W, C) -> uint8 (T, size, size, C): antialiased bilinear resize, then centre crop."""
    height, width = frames.shape[1:3]
    new_h, new_w = resized_shape(height, width, size, resize)
    if (new_h, new_w) != (height, width):
        # (T, C, H, W) view of channels-last uint8: torch's fast uint8 antialiased path,
        # about 10x faster than converting to float first, and within 1 level of it.
        x = frames.permute(0, 3, 1, 2)
        x = F.interpolate(x, size=(new_h, new_w), mode="bilinear", antialias=True, align_corners=False)
        frames = x.permute(0, 2, 3, 1)
    top, left = (new_h - size) // 2, (new_w - size) // 2
    return frames[:, top : top + size, left : left + size].contiguous()


def _check_settings(frames: int, fps: float | None, size: int, position: str, resize: str) -> None:
    if frames < 1:
        raise UserError(f"frames={frames}: must be >= 1")
    if fps is not None and not fps > 0:
        raise UserError(f"fps={fps}: must be positive (or None for the file's own rate)")
    if size < 1:
        raise UserError(f"size={size}: must be >= 1")
    if position not in POSITIONS:
        raise UserError(f"position={position!r}; valid: {', '.join(POSITIONS)}")
    if resize not in RESIZES:
        raise UserError(f"resize={resize!r}; valid: {', '.join(RESIZES)}")


@contextlib.contextmanager
def decoder_messages_hidden():
    """Hide what the C decoder prints straight to file descriptor 2 ("[mov,mp4...] moov atom not found").

    Our VideoReadError already says what went wrong and where; the command line shows that one line.
    Only for the main thread's own reads (the descriptor is process-wide).
    """
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def open_video(path: str):
    """A decord VideoReader (one decoding thread: data loader workers give the parallelism)."""
    import decord

    try:
        return decord.VideoReader(str(path), num_threads=1)
    except Exception as err:  # decord raises its own DECORDError / RuntimeError on any bad file
        raise VideoReadError(f"cannot open: {_first_line(err)}") from err


def _first_line(err: Exception) -> str:
    """The useful part of a decoder error: first line, without decord's "[time] file.cc:123:" prefix."""
    text = str(err).strip().splitlines()
    if not text:
        return type(err).__name__
    return re.sub(r"^\[[^\]]*\]\s*\S+:\d+:\s*", "", text[0])[:200]


def _decode(path, pick) -> tuple[np.ndarray, float]:
    """Decode the frames `pick(num_frames, source_fps)` names: (uint8 (T, H, W, C) in that order, the file's fps).

    Raises VideoReadError naming the file when it is unreadable, corrupt or too short.
    """
    try:
        reader = open_video(path)
        num_frames, source_fps = len(reader), float(reader.get_avg_fps())
        if num_frames < 1 or not math.isfinite(source_fps) or source_fps <= 0:
            raise VideoReadError(f"no usable frames ({num_frames} frames, {source_fps} fps)")
        indices = pick(num_frames, source_fps)
        # Upsampling repeats indices; decode each distinct frame once.
        unique, inverse = np.unique(indices, return_inverse=True)
        try:
            decoded = reader.get_batch(unique.tolist()).asnumpy()
        except Exception as err:  # truncated or corrupt stream
            raise VideoReadError(f"cannot decode frames {unique[0]}..{unique[-1]}: {_first_line(err)}") from err
        if decoded.shape[0] != len(unique) or decoded.ndim != 4 or decoded.shape[-1] != 3:
            raise VideoReadError(f"decoder returned shape {decoded.shape} for {len(unique)} frames")
    except VideoReadError as err:
        raise VideoReadError(f"{path}: {err}") from err.__cause__
    return decoded[inverse], source_fps


def read_clip(
    path,
    frames: int,
    fps: float | None,
    size: int,
    position: str = "center",
    resize: str = "crop",
    rng: np.random.Generator | None = None,
) -> np.ndarray:
    """One clip of `frames` frames at `fps`, size x size: uint8 numpy (T, H, W, C).

    Raises VideoReadError (naming the file) when the file is unreadable, corrupt or
    too short for the clip.
    """
    _check_settings(frames, fps, size, position, resize)
    clip, _ = _decode(path, lambda num_frames, source_fps: clip_indices(num_frames, source_fps, frames, fps,
                                                                        position, rng))
    return resize_frames(torch.from_numpy(clip), size, resize).numpy()


def read_all_frames(path, size: int, resize: str = "crop") -> tuple[np.ndarray, float]:
    """Every frame of a file, resized: (uint8 numpy (N, size, size, C), the file's frame rate).

    What a dataset caches to cut many clips from one decode (see `clip_from_frames`); raises
    VideoReadError (naming the file) like `read_clip`.
    """
    _check_settings(1, None, size, "start", resize)
    every, source_fps = _decode(path, lambda num_frames, source_fps: np.arange(num_frames))
    return resize_frames(torch.from_numpy(every), size, resize).numpy(), source_fps


def clip_from_frames(all_frames: np.ndarray, source_fps: float, frames: int, fps: float | None,
                     position: str = "center", rng: np.random.Generator | None = None) -> np.ndarray:
    """The clip `read_clip` would give, cut from a file's decoded frames (`read_all_frames`)."""
    indices = clip_indices(len(all_frames), source_fps, frames, fps, position, rng)
    return all_frames[indices]
