"""The demo's judges against videos whose objects, colours and centres are known."""

import numpy as np

from lightning_modules.demo.judges import count_objects, object_centres, shown_colours
from nbp.data.synthetic import (CLASS_NAMES, COLOURS, class_colours, is_circle, num_objects, object_size, render_video,
                                shape_mask, video_rng)


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


def test_looks_square_tells_rendered_squares_from_circles_at_every_size():
    from lightning_modules.demo.judges import looks_square

    for size in (32, 48, 64):
        for seed in (0, 7):
            for class_id in range(len(CLASS_NAMES)):
                for index in range(6):
                    video = render_video(class_id, 17, size, video_rng(seed, "test", class_id, index))
                    assert looks_square(video) is (not is_circle(class_id)), (size, seed, class_id, index)


def test_object_fills_are_the_stamps_fills_and_skip_what_is_not_one_whole_object():
    from lightning_modules.demo.judges import object_fills, square_fill_threshold

    for size in (32, 48, 64):
        side = object_size(size)
        disc = shape_mask(side, circle=True)
        assert disc.mean() < square_fill_threshold(size) < 1.0
        video = np.zeros((1, size, size, 3), dtype=np.uint8)
        video[0, 1:1 + side, 1:1 + side][disc] = COLOURS[0]  # a red disc
        video[0, -side - 1:-1, -side - 1:-1] = COLOURS[1]  # a green square
        np.testing.assert_allclose(sorted(object_fills(video)), [disc.mean(), 1.0])
        # a square with its corners cut off (what a blurring tokenizer does) reads as round
        leg = side // 4 + 1
        dy, dx = np.meshgrid(np.arange(side), np.arange(side), indexing="ij")
        near = np.minimum(dy, side - 1 - dy) + np.minimum(dx, side - 1 - dx) < leg  # a triangle in each corner
        rounded = video.copy()
        rounded[0, -side - 1:-1, -side - 1:-1][near] = 0
        assert sorted(object_fills(rounded))[1] < square_fill_threshold(size)

    size, side = 48, object_size(48)
    video = np.zeros((1, size, size, 3), dtype=np.uint8)
    video[0, 2:2 + side, 2:2 + side] = COLOURS[0]  # red square, its lower right corner under ...
    video[0, 2 + side - 3:2 + 2 * side - 3, 2 + side - 3:2 + 2 * side - 3] = COLOURS[1]  # ... a green one
    np.testing.assert_allclose(object_fills(video), [1.0, 1.0])  # hidden pixels are unknown, not empty
    pieces = np.zeros_like(video)
    pieces[0, 2:5, 2:5] = COLOURS[0]  # a fragment: too small a box to judge
    pieces[0, 20:20 + side, 20:20 + 2 * side] = COLOURS[2]  # two blue squares merged: too wide a box
    assert object_fills(pieces).size == 0


def test_looks_square_abstains_without_a_whole_object():
    from lightning_modules.demo.judges import looks_square

    assert looks_square(np.zeros((3, 48, 48, 3), dtype=np.uint8)) is None
