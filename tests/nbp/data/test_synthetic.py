"""The synthetic generator and its on-disk UCF-101-style copy."""

import decord
import numpy as np
import pytest

from nbp.data.synthetic import (
    CLASS_NAMES,
    COLOURS,
    SyntheticVideoDataset,
    object_size,
    render_video,
    video_rng,
    write_synthetic_dataset,
)
from nbp.errors import UserError


def _object_pixels(frame: np.ndarray, colour: np.ndarray) -> np.ndarray:
    return np.all(frame == colour, axis=-1)


@pytest.mark.parametrize("class_id", range(6))
@pytest.mark.parametrize("size", [32, 64])
def test_content_rules(class_id, size):
    video = render_video(class_id, 17, size, video_rng(3, "train", class_id, 0))
    assert video.shape == (17, size, size, 3) and video.dtype == np.uint8
    # Only black and the first `count` palette colours (red, green, blue): object k is colour k.
    colours = {tuple(c) for c in video.reshape(-1, 3)} - {(0, 0, 0)}
    assert colours == {tuple(c) for c in COLOURS[:class_id % 3 + 1]}
    side = object_size(size)
    for colour in colours:
        mask = _object_pixels(video[0], np.array(colour))
        ys, xs = np.nonzero(mask)
        # Fully inside the frame: bounding box at most `side` on each axis.
        assert ys.max() - ys.min() + 1 <= side and xs.max() - xs.min() + 1 <= side
        area = mask.sum()
        if class_id == 0:  # a lone square is never occluded
            assert area == side * side
        if class_id == 3:  # a lone disc fills about pi/4 of its box
            assert abs(area / side**2 - np.pi / 4) < 0.12


def _track(video: np.ndarray, colour) -> np.ndarray:
    """Bounding-box top-left of the single object of `colour` in every frame, (T, 2)."""
    out = []
    for frame in video:
        ys, xs = np.nonzero(_object_pixels(frame, np.array(colour)))
        out.append((ys.min(), xs.min()))
    return np.array(out)


@pytest.mark.parametrize("size", [32, 64, 128])
def test_motion_speed_scales_with_size_and_bounces(size):
    speeds, bounced = [], False
    for index in range(8):
        video = render_video(0, 40, size, video_rng(0, "train", 0, index))
        colour = [c for c in COLOURS if _object_pixels(video[0], c).any()][0]
        steps = np.diff(_track(video, colour), axis=0)
        speeds.append(np.abs(steps))
        # A velocity sign flip on an axis means the square bounced off an edge.
        bounced |= bool((np.sign(steps[1:]) * np.sign(steps[:-1]) < 0).any())
    speeds = np.concatenate(speeds)
    scale = size / 64
    # Rounded drawing of float positions: per-frame steps within 1..3 px (scaled) plus 1 px rounding.
    assert speeds.max() <= np.ceil(3 * scale) + 1
    assert abs(speeds.mean() - 2 * scale) < 0.6 * scale + 0.3
    assert bounced


def test_deterministic_and_subset_stable():
    a = SyntheticVideoDataset(4, frames=9, size=32, seed=7)
    b = SyntheticVideoDataset(10, frames=9, size=32, seed=7)
    assert np.array_equal(a[0]["video"], SyntheticVideoDataset(4, frames=9, size=32, seed=7)[0]["video"])
    # Video k of a class is the same whatever the dataset size.
    first_of_class_1_a = next(i for i in range(len(a)) if a[i]["label"] == 1)
    first_of_class_1_b = next(i for i in range(len(b)) if b[i]["label"] == 1)
    assert np.array_equal(a[first_of_class_1_a]["video"], b[first_of_class_1_b]["video"])
    assert not np.array_equal(a[0]["video"], SyntheticVideoDataset(4, frames=9, size=32, seed=8)[0]["video"])
    assert not np.array_equal(a[0]["video"], SyntheticVideoDataset(4, frames=9, size=32, seed=7, split="test")[0]["video"])


def test_written_files_decode_to_the_generator(synthetic_root):
    """Real files -> decord -> frames equal the generator within 1 level (lossless H.264, YUV rounding)."""
    for split in ("train", "test"):
        ds = SyntheticVideoDataset(4, frames=17, size=32, seed=0, split=split)
        listed = (synthetic_root / f"{split}list01.txt").read_text().split("\n")
        assert len([line for line in listed if line]) == len(ds) == 6 * (3 if split == "train" else 1)
        for item in ds:
            reader = decord.VideoReader(str(synthetic_root / item["path"]))
            assert len(reader) == 17 and reader.get_avg_fps() == pytest.approx(8)
            decoded = reader.get_batch(list(range(17))).asnumpy().astype(int)
            expected = item["video"].permute(1, 2, 3, 0).numpy().astype(int)
            assert np.abs(decoded - expected).max() <= 1, item["path"]


def test_ucf_split_files_format(synthetic_root):
    class_ind = (synthetic_root / "classInd.txt").read_text().split()
    assert class_ind == [tok for i, name in enumerate(CLASS_NAMES) for tok in (str(i + 1), name)]
    train = (synthetic_root / "trainlist01.txt").read_text().splitlines()
    test = (synthetic_root / "testlist01.txt").read_text().splitlines()
    assert train[0] == "OneSquare/v_OneSquare_train000.mp4 1"
    assert train[-1].endswith(" 6") and all(len(line.split()) == 2 for line in train)
    assert all(len(line.split()) == 1 for line in test)
    assert not {line.split()[0] for line in train} & set(test)  # no video in both splits


def test_bad_settings_raise_user_error(tmp_path):
    with pytest.raises(UserError, match="videos_per_class"):
        write_synthetic_dataset(tmp_path, videos_per_class=1)
    with pytest.raises(UserError, match="split"):
        SyntheticVideoDataset(4, split="val")
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a folder"):
        write_synthetic_dataset(tmp_path / "file", videos_per_class=2)
