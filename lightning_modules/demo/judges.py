"""What a synthetic frame shows: objects counted, colours seen, centres tracked.

The demo scores generated videos with these: a real video of class c shows `class_colours(c)` and
`num_objects(c)` objects in (almost) every frame, so any difference is the generator's mistake.
"""

from __future__ import annotations

import numpy as np

from nbp.data.synthetic import COLOURS, object_size


def shown_colours(video: np.ndarray, min_pixels: int = 40, tolerance: int = 60) -> list[int]:
    """Which palette colours (indices into COLOURS) a uint8 (T, H, W, C) clip shows: a check of samples.

    A colour counts when at least `min_pixels` pixels over the clip are within `tolerance` levels
    (per channel) of it. Every video of class c shows exactly `class_colours(c)`; a sample whose
    objects change colour shows others, one that loses an object fewer.
    """
    pixels = _palette_masks(video, tolerance).reshape(-1, len(COLOURS)).sum(axis=0)
    return np.flatnonzero(pixels >= min_pixels).tolist()


def count_objects(video: np.ndarray, min_pixels: int | None = None, tolerance: int = 60) -> np.ndarray:
    """(T,) int: per frame of a uint8 (T, H, W, C) clip, how many objects it shows.

    An object is a connected region (8-neighbours) of one palette colour covering at least
    `min_pixels` pixels (default: a fifth of an object at this frame size, so specks do not count).
    Unlike `shown_colours` this sees a sample that draws two objects of one colour, or breaks
    one into pieces. Real videos show their class's count in ~99% of frames (less only where
    two objects of a clip overlap).
    """
    from scipy import ndimage

    if min_pixels is None:
        min_pixels = max(1, object_size(video.shape[1]) ** 2 // 5)
    masks = _palette_masks(video, tolerance)  # T H W K
    neighbours = np.ones((3, 3), dtype=bool)
    counts = np.zeros(len(video), dtype=np.int64)
    for t in range(len(video)):
        for k in range(len(COLOURS)):
            labels, found = ndimage.label(masks[t, :, :, k], structure=neighbours)
            if found:
                counts[t] += int((np.bincount(labels.ravel())[1:] >= min_pixels).sum())
    return counts


def object_centres(video: np.ndarray, min_pixels: int = 10, tolerance: int = 60) -> np.ndarray:
    """(T, K, 2) float: per frame, the (y, x) centre of the pixels of each palette colour, NaN where
    fewer than `min_pixels` pixels show it. Every object of a real video has its own colour, so
    this tracks the objects of a clip (or of a prediction) frame by frame."""
    masks = _palette_masks(video, tolerance)  # T H W K
    counts = masks.sum(axis=(1, 2))  # T K
    ys = np.arange(masks.shape[1])[None, :, None, None]
    xs = np.arange(masks.shape[2])[None, None, :, None]
    with np.errstate(invalid="ignore", divide="ignore"):
        centres = np.stack([(masks * ys).sum(axis=(1, 2)) / counts, (masks * xs).sum(axis=(1, 2)) / counts], axis=-1)
    centres[counts < min_pixels] = np.nan
    return centres


def _palette_masks(video: np.ndarray, tolerance: int) -> np.ndarray:
    """(..., K) bool: which pixels of a uint8 (..., C) array are within `tolerance` levels of palette colour k."""
    distance = np.abs(video[..., None, :].astype(np.int16) - COLOURS.astype(np.int16)).max(axis=-1)
    return distance < tolerance
