"""What a synthetic frame shows: objects counted, colours seen, shapes told apart, centres tracked.

The demo scores generated videos with these: a real video of class c shows `class_colours(c)` and
`num_objects(c)` objects in (almost) every frame, so any difference is the generator's mistake.
"""

from __future__ import annotations

import numpy as np

from nbp.data.synthetic import COLOURS, object_size, shape_mask


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


def object_fills(video: np.ndarray, tolerance: int = 60) -> np.ndarray:
    """Fill of its bounding box of every object seen whole in a uint8 (T, H, W, C) clip: a flat float array.

    A square fills its box (1.0), a disc about pi/4 (0.8 at 10-13 px). Only regions of one palette
    colour whose box is within a third of an object's side of a whole object's in both directions
    are measured, so a fragment or two merged objects of one colour give no measurement instead of
    a wrong one. Pixels of another object inside the box count as unknown rather than empty: a
    square with a corner hidden behind another object still fills what is visible of its box.
    """
    from scipy import ndimage

    side = object_size(video.shape[1])
    masks = _palette_masks(video, tolerance)  # T H W K
    anything = masks.any(axis=-1)
    neighbours = np.ones((3, 3), dtype=bool)
    fills = []
    for t in range(len(video)):
        for k in range(len(COLOURS)):
            labels, found = ndimage.label(masks[t, :, :, k], structure=neighbours)
            for index, box in enumerate(ndimage.find_objects(labels), start=1):
                height, width = box[0].stop - box[0].start, box[1].stop - box[1].start
                if not all(abs(extent - side) <= side / 3 for extent in (height, width)):
                    continue
                # Pixels of other objects inside the box may hide part of this one: they count as unknown.
                box_mask = (labels[box] == index)
                known = height * width - int((anything[t][box] & ~box_mask).sum())
                if known >= height * width / 2:
                    fills.append(box_mask.sum() / known)
    return np.asarray(fills, dtype=np.float64)


def square_fill_threshold(size: int) -> float:
    """Fill between a disc's and a square's at this frame size: above it an object counts as a square."""
    return (1.0 + float(shape_mask(object_size(size), circle=True).mean())) / 2


def looks_square(video: np.ndarray, tolerance: int = 60) -> bool | None:
    """Do the objects of a uint8 (T, H, W, C) clip look square (True) or round (False)?

    A vote over every object seen whole in every frame (`object_fills`); None when no object is
    ever seen whole or the vote is tied, which a checker should count as wrong.
    """
    fills = object_fills(video, tolerance)
    squares = int((fills >= square_fill_threshold(video.shape[1])).sum())
    if not len(fills) or 2 * squares == len(fills):
        return None
    return 2 * squares > len(fills)


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
