"""Video writers: files decoded by independent readers (decord for mp4, Pillow for gif and png)."""

import decord
import numpy as np
import pytest
import torch
from PIL import Image

from nbp.data.synthetic import SyntheticVideoDataset
from nbp.errors import UserError
from nbp.video_io import GrowingMp4, png_grid, write_gif, write_mp4, write_png_grid


@pytest.fixture(scope="module")
def clips():
    """Two synthetic clips, uint8 (B=2, C, T=9, H=32, W=32): pure colours on black."""
    ds = SyntheticVideoDataset(2, frames=9, size=32, seed=5)
    return torch.stack([ds[0]["video"], ds[1]["video"]])


def _decode_mp4(path):
    reader = decord.VideoReader(str(path))
    return reader.get_batch(list(range(len(reader)))).asnumpy().astype(int), reader.get_avg_fps()


def test_mp4_one_video_uint8_and_float(tmp_path, clips):
    frames, fps = _decode_mp4(write_mp4(tmp_path / "a.mp4", clips[0], fps=12, crf=0, pix_fmt="yuv444p"))
    expected = clips[0].permute(1, 2, 3, 0).numpy().astype(int)
    assert frames.shape == (9, 32, 32, 3) and fps == pytest.approx(12)
    assert np.abs(frames - expected).max() <= 1
    as_float, _ = _decode_mp4(write_mp4(tmp_path / "b.mp4", clips[0].float() / 255, crf=0, pix_fmt="yuv444p"))
    assert np.abs(as_float - expected).max() <= 1


def test_mp4_batch_is_side_by_side_and_default_is_playable(tmp_path, clips):
    frames, _ = _decode_mp4(write_mp4(tmp_path / "batch.mp4", clips))
    assert frames.shape == (9, 32, 64, 3)
    expected = torch.cat([clips[0], clips[1]], dim=-1).permute(1, 2, 3, 0).numpy().astype(int)
    # yuv420p halves the colour resolution: edges blur, the picture as a whole stays close.
    assert np.abs(frames - expected).mean() < 6


def test_mp4_odd_sizes_are_padded_for_yuv420p(tmp_path):
    video = torch.full((3, 4, 15, 21), 128, dtype=torch.uint8)
    frames, _ = _decode_mp4(write_mp4(tmp_path / "odd.mp4", video))
    assert frames.shape == (4, 16, 22, 3) and np.abs(frames - 128).max() <= 2


def test_gif(tmp_path, clips):
    path = write_gif(tmp_path / "a.gif", clips, fps=10)
    image = Image.open(path)
    assert image.n_frames == 9 and image.size == (64, 32) and image.info["duration"] == 100
    image.seek(4)
    expected = torch.cat([clips[0], clips[1]], dim=-1)[:, 4].permute(1, 2, 0).numpy()
    assert np.array_equal(np.array(image.convert("RGB")), expected)  # 7 pure colours fit any palette


def test_png_grid_rows_are_videos_columns_are_frames(tmp_path, clips):
    path = write_png_grid(tmp_path / "grid.png", clips.float() / 255, gap=2)
    image = np.array(Image.open(path).convert("RGB"))
    assert image.shape == (2 * 32 + 2, 9 * 32 + 8 * 2, 3)
    assert np.array_equal(image, png_grid(clips, gap=2))
    for row in range(2):
        for col in (0, 8):
            y, x = row * 34, col * 34
            assert np.array_equal(image[y : y + 32, x : x + 32], clips[row, :, col].permute(1, 2, 0).numpy())
    assert not image[32:34].any()  # the gap between rows is black


def test_bad_input_and_no_partial_files(tmp_path):
    with pytest.raises(UserError, match="shape"):
        write_mp4(tmp_path / "x.mp4", torch.zeros(3, 32, 32))
    with pytest.raises(UserError, match="channels"):
        write_gif(tmp_path / "x.gif", torch.zeros(4, 2, 8, 8))
    with pytest.raises(UserError, match="fps"):
        write_mp4(tmp_path / "x.mp4", torch.zeros(3, 2, 8, 8), fps=0)
    assert list(tmp_path.iterdir()) == []


def _frames_in(path) -> int:
    """Frames a reader can decode from a file that may still be growing (0 when none yet)."""
    import av

    try:
        with av.open(str(path)) as container:
            return sum(1 for _ in container.decode(video=0))
    except (av.error.FFmpegError, StopIteration):
        return 0


def test_growing_mp4_is_playable_while_written_and_renamed_when_finished(tmp_path, clips):
    path = tmp_path / "grow.mp4"
    video = GrowingMp4(path, fps=8, crf=0, pix_fmt="yuv444p")
    assert video.partial == tmp_path / "grow.partial.mp4"
    readable = []
    for start, end in [(0, 1), (1, 5), (5, 9)]:  # 1 frame, then 4, as a stream of latent frames gives them
        video.write(clips[0][:, start:end])
        readable.append(_frames_in(video.partial))
        assert not path.exists()
    # a frame's fragment is closed when the next one arrives: the file trails by one frame at most
    assert all(end - 1 <= n <= end for n, end in zip(readable, (1, 5, 9))), readable
    assert video.finish() == path and not video.partial.exists()
    assert video.stop() is None and path.exists()  # a Ctrl-C after finishing leaves the finished file alone
    frames, fps = _decode_mp4(path)
    assert frames.shape == (9, 32, 32, 3) and fps == pytest.approx(8)
    assert np.abs(frames - clips[0].permute(1, 2, 3, 0).numpy().astype(int)).max() <= 1


def test_growing_mp4_stopped_keeps_a_playable_partial(tmp_path, clips):
    video = GrowingMp4(tmp_path / "stop.mp4", crf=0, pix_fmt="yuv444p")
    video.write(clips[:, :, :5])  # a batch, side by side
    kept = video.stop()
    assert kept == tmp_path / "stop.partial.mp4" and not (tmp_path / "stop.mp4").exists()
    frames, _ = _decode_mp4(kept)
    assert frames.shape == (5, 32, 64, 3)
    assert GrowingMp4(tmp_path / "none.mp4").stop() is None and not list(tmp_path.glob("none*"))
    gone = GrowingMp4(tmp_path / "gone.mp4")
    gone.write(clips[0][:, :1])
    gone.discard()
    assert not list(tmp_path.glob("gone*"))
    with pytest.raises(UserError, match="fps=0"):
        GrowingMp4(tmp_path / "x.mp4", fps=0)
