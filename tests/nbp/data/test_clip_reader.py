"""The clip reader on real files: index resampling, clip position, crop vs squash, bad files."""

import decord
import numpy as np
import pytest
import torch

from nbp.data.clip_reader import (
    VideoReadError,
    clip_indices,
    clip_offsets,
    read_clip,
    resize_frames,
    resized_shape,
)
from nbp.errors import UserError
from nbp.video_io import write_mp4


def _counter_video(num_frames: int, height: int = 32, width: int = 32) -> torch.Tensor:
    """uint8 (C, T, H, W) whose frame t is flat grey level 4 * t: the frame index can be read back."""
    levels = torch.arange(num_frames, dtype=torch.uint8) * 4
    return levels.view(1, -1, 1, 1).expand(3, num_frames, height, width).contiguous()


@pytest.fixture(scope="module")
def counter_file(tmp_path_factory):
    """60 frames at 25 fps, losslessly coded, frame t has grey level 4t."""
    path = tmp_path_factory.mktemp("clips") / "counter.mp4"
    write_mp4(path, _counter_video(60), fps=25, crf=0, pix_fmt="yuv444p")
    return path


def _frame_ids(clip: np.ndarray) -> list[int]:
    return [int(round(frame.mean() / 4)) for frame in clip]


def test_offsets_resample_the_source_rate():
    # 25 -> 8 fps: one output frame every 3.125 source frames, rounded to the nearest.
    assert clip_offsets(6, 25, 8).tolist() == [0, 3, 6, 9, 13, 16]
    assert clip_offsets(4, 30, 8).tolist() == [0, 4, 8, 11]  # 0, 3.75, 7.5, 11.25
    assert clip_offsets(5, 8, 8).tolist() == [0, 1, 2, 3, 4]
    assert clip_offsets(5, 25, None).tolist() == [0, 1, 2, 3, 4]
    assert clip_offsets(5, 4, 8).tolist() == [0, 1, 1, 2, 2]  # upsampling repeats frames


def test_positions():
    # 17 frames at 8 fps from 25 fps span 51 source frames; a 60-frame file leaves 9 free.
    assert clip_indices(60, 25, 17, 8, "start")[0] == 0
    assert clip_indices(60, 25, 17, 8, "center")[0] == 4
    starts = {int(clip_indices(60, 25, 17, 8, "random", np.random.default_rng(s))[0]) for s in range(50)}
    assert starts == set(range(10))
    with pytest.raises(VideoReadError, match="too short"):
        clip_indices(50, 25, 17, 8)


def test_read_clip_decodes_exactly_the_computed_frames(counter_file):
    assert _frame_ids(read_clip(counter_file, 17, 8, 32, "start")) == clip_offsets(17, 25, 8).tolist()
    assert _frame_ids(read_clip(counter_file, 17, 8, 32, "center")) == (4 + clip_offsets(17, 25, 8)).tolist()
    assert _frame_ids(read_clip(counter_file, 10, None, 32, "start")) == list(range(10))
    assert _frame_ids(read_clip(counter_file, 3, 50, 32, "start")) == [0, 1, 1]


def test_read_clip_equals_decoding_every_frame(tmp_path):
    """Seeking with get_batch gives the same pixels as decoding the whole file (random content, yuv420p)."""
    video = torch.randint(0, 256, (3, 70, 24, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    path = write_mp4(tmp_path / "noise.mp4", video, fps=30)
    clip = read_clip(path, 9, 10, 24, "center")
    every = decord.VideoReader(str(path)).get_batch(list(range(70))).asnumpy()
    indices = clip_indices(70, 30, 9, 10, "center")
    expected = resize_frames(torch.from_numpy(every[indices]), 24, "crop").numpy()
    assert np.array_equal(clip, expected)


def _stripes(height: int, width: int) -> torch.Tensor:
    """Left quarter red, middle half green, right quarter blue: uint8 (T=1, H, W, C)."""
    frame = torch.zeros(1, height, width, 3, dtype=torch.uint8)
    frame[:, :, : width // 4, 0] = 255
    frame[:, :, width // 4 : 3 * width // 4, 1] = 255
    frame[:, :, 3 * width // 4 :, 2] = 255
    return frame


def test_crop_keeps_aspect_and_squash_does_not():
    assert resized_shape(240, 320, 128, "crop") == (128, 171)
    assert resized_shape(320, 240, 128, "crop") == (171, 128)
    assert resized_shape(240, 320, 128, "squash") == (128, 128)
    frames = _stripes(48, 96)  # 1:2 aspect -> crop keeps only the green middle half
    cropped = resize_frames(frames, 32, "crop")
    assert cropped.shape == (1, 32, 32, 3)
    # The antialiasing filter blends one column at each side with the outer stripes.
    inner = cropped[:, :, 1:-1]
    assert (inner[..., 1] == 255).all() and (inner[..., [0, 2]] == 0).all()
    assert cropped[..., 1].min() >= 200
    squashed = resize_frames(frames, 32, "squash")
    assert squashed.shape == (1, 32, 32, 3)
    assert squashed[0, :, 0, 0].min() == 255 and squashed[0, :, -1, 2].min() == 255


def test_crop_on_a_real_file(tmp_path):
    video = _stripes(48, 96).permute(3, 0, 1, 2).expand(3, 20, 48, 96).contiguous()
    path = write_mp4(tmp_path / "wide.mp4", video, fps=8, crf=0, pix_fmt="yuv444p")
    clip = read_clip(path, 17, 8, 32, resize="crop")
    assert clip.shape == (17, 32, 32, 3)
    assert np.abs(clip[:, :, 1:-1].astype(int) - np.array([0, 255, 0])).max() <= 2


def test_bad_files_raise_video_read_error(tmp_path, counter_file):
    garbage = tmp_path / "garbage.mp4"
    garbage.write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    truncated = tmp_path / "truncated.mp4"
    truncated.write_bytes(counter_file.read_bytes()[:2000])
    for path in (garbage, truncated, tmp_path / "missing.mp4"):
        with pytest.raises(VideoReadError, match=str(path.name)):
            read_clip(path, 17, 8, 32)
    with pytest.raises(VideoReadError, match="too short"):
        read_clip(counter_file, 17, 4, 32)  # 17 frames at 4 fps need 97 of the 60 frames


def test_bad_settings_are_user_errors(counter_file):
    with pytest.raises(UserError, match="position"):
        read_clip(counter_file, 17, 8, 32, position="middle")
    with pytest.raises(UserError, match="resize"):
        read_clip(counter_file, 17, 8, 32, resize="stretch")
    with pytest.raises(UserError, match="fps"):
        read_clip(counter_file, 17, 0, 32)
