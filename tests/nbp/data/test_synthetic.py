"""The synthetic generator and its on-disk UCF-101-style copy."""

import decord
import numpy as np
import pytest

from nbp.data.synthetic import (
    CLASS_NAMES,
    COLOURS,
    SyntheticVideoDataset,
    class_colours,
    count_objects,
    num_objects,
    object_centres,
    object_size,
    render_video,
    shown_colours,
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


def test_shown_colours_are_the_class_colours_and_flag_changes():
    for class_id in range(len(CLASS_NAMES)):
        assert class_colours(class_id) == list(range(num_objects(class_id)))
        for index in range(5):
            video = render_video(class_id, 17, 32, video_rng(3, "test", class_id, index))
            assert shown_colours(video) == class_colours(class_id)
    video = render_video(1, 17, 32, video_rng(3, "test", 1, 0))  # red and green
    changed = video.copy()
    changed[9:][(video[9:] == COLOURS[1]).all(-1)] = COLOURS[4]  # green turns magenta half way
    assert shown_colours(changed) == [0, 1, 4]
    vanished = video.copy()
    vanished[(video == COLOURS[0]).all(-1)] = 0  # red is never drawn
    assert shown_colours(vanished) == [1]
    assert shown_colours(np.zeros_like(video)) == []
    speck = np.zeros_like(video)
    speck[0, :5, :5] = COLOURS[2]  # 25 pixels: below the 40-pixel floor, noise rather than an object
    assert shown_colours(speck) == []


def test_object_centres_track_each_colour_frame_by_frame():
    video = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    video[0, 3:9, 10:16] = COLOURS[0]  # a 6x6 red square: centre (5.5, 12.5)
    video[1, 5:11, 12:18] = COLOURS[0]  # moved by (2, 2)
    video[1, 20:26, 0:6] = COLOURS[3]  # a yellow one appears in frame 1
    video[2, 0:2, 0:2] = COLOURS[0]  # 4 red pixels: below the floor, not an object
    centres = object_centres(video)
    assert centres.shape == (3, len(COLOURS), 2)
    np.testing.assert_allclose(centres[0, 0], [5.5, 12.5])
    np.testing.assert_allclose(centres[1, 0], [7.5, 14.5])
    np.testing.assert_allclose(centres[1, 3], [22.5, 2.5])
    assert np.isnan(centres[0, 3]).all() and np.isnan(centres[2]).all()
    # a rendered clip: every object is found in every frame (none is ever fully hidden here)
    clip = render_video(1, 17, 32, video_rng(0, "test", 1, 0))
    found = ~np.isnan(object_centres(clip)[..., 0])
    assert (found.sum(axis=1) == 2).all()


def test_count_objects_counts_regions_of_one_colour():
    video = np.zeros((5, 32, 32, 3), dtype=np.uint8)
    video[0, 2:8, 2:8] = COLOURS[0]  # frame 0: one red square
    video[1, 2:8, 2:8] = COLOURS[0]  # frame 1: two red squares (a colour count would say 1)
    video[1, 20:26, 20:26] = COLOURS[0]
    video[2, 2:8, 2:8] = COLOURS[0]  # frame 2: red touching green: two objects, not one blob
    video[2, 2:8, 8:14] = COLOURS[1]
    video[3, 2:8, 2:8] = COLOURS[0]  # frame 3: one square plus a 2x2 speck (below a fifth of 36 px)
    video[3, 20:22, 20:22] = COLOURS[2]
    video[4, 2:5, 2:5] = COLOURS[0]  # frame 4: two 3x3 pieces touching at a corner: one region
    video[4, 5:8, 5:8] = COLOURS[0]
    np.testing.assert_array_equal(count_objects(video), [1, 2, 2, 1, 1])
    assert count_objects(video, min_pixels=4).tolist() == [1, 2, 2, 2, 1]  # the speck counts now
    # rendered clips of every class: the class's count in (nearly) every frame
    for class_id in range(len(CLASS_NAMES)):
        for index in range(4):
            counts = count_objects(render_video(class_id, 17, 32, video_rng(3, "test", class_id, index)))
            assert (counts == num_objects(class_id)).mean() >= 0.8, (class_id, index, counts)
