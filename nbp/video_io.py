"""Writing videos a user looks at: mp4, gif, and a PNG grid of frames.

Input is one video (C, T, H, W) or a batch (B, C, T, H, W), uint8 [0, 255] or
float [0, 1] (torch tensor or numpy array). A batch becomes one video with the
clips side by side (mp4, gif) or one row per clip (PNG grid). Every file is
written to a temporary name and renamed into place.
"""

from __future__ import annotations

import os
import zlib
import struct
from pathlib import Path

import av
import numpy as np
import torch

from nbp.errors import UserError
from nbp.files import atomic_path, write_bytes_atomic
from nbp.pixels import to_uint8


def _as_batch(video) -> np.ndarray:
    """Any accepted input -> uint8 numpy (B, T, H, W, C) with 3 channels."""
    if isinstance(video, np.ndarray):
        video = torch.from_numpy(video)
    if not isinstance(video, torch.Tensor):
        raise UserError(f"expected a video tensor or array, got {type(video).__name__}")
    if video.dim() == 4:
        video = video.unsqueeze(0)
    if video.dim() != 5:
        raise UserError(f"expected a video (C,T,H,W) or batch (B,C,T,H,W), got shape {tuple(video.shape)}")
    if video.shape[1] == 1:  # grey -> RGB
        video = video.expand(-1, 3, -1, -1, -1)
    if video.shape[1] != 3:
        raise UserError(f"expected 1 or 3 channels in dim 1, got shape {tuple(video.shape)}")
    video = to_uint8(video.detach().cpu())
    return video.permute(0, 2, 3, 4, 1).contiguous().numpy()


def tile_side_by_side(video) -> np.ndarray:
    """(B, C, T, H, W) or (C, T, H, W) -> uint8 (T, H, B*W, C): the clips next to each other."""
    batch = _as_batch(video)
    return np.concatenate(list(batch), axis=2)


def video_codec() -> str:
    """H.264 when this PyAV build can encode it, else MPEG-4 part 2."""
    for name in ("libx264", "mpeg4"):
        try:
            av.codec.Codec(name, "w")
            return name
        except Exception:  # codec missing from this FFmpeg build
            continue
    raise RuntimeError("PyAV has neither a libx264 nor an mpeg4 encoder")


def _pad_to_even(frames: np.ndarray) -> np.ndarray:
    """Chroma-subsampled formats need even sizes; pad the bottom/right edge by repetition."""
    pad_h, pad_w = frames.shape[1] % 2, frames.shape[2] % 2
    if pad_h or pad_w:
        frames = np.pad(frames, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)), mode="edge")
    return frames


def _add_video_stream(container, height: int, width: int, fps: int, crf: int, pix_fmt: str, low_latency: bool = False):
    """The video stream every mp4 of ours has: H.264 at `crf` (else MPEG-4), one encoder thread.

    low_latency: each frame's packet comes out as the frame goes in (no lookahead, no B-frames),
    so a file written while frames are generated grows with them.
    """
    codec = video_codec()
    if codec != "libx264":
        pix_fmt = "yuv420p"  # mpeg4 has no 4:4:4 profile
    if pix_fmt != "yuv444p":  # chroma-subsampled: even sizes (the frames are padded to match)
        height, width = height + height % 2, width + width % 2
    stream = container.add_stream(codec, rate=fps)
    stream.height, stream.width = height, width
    stream.pix_fmt = pix_fmt
    stream.codec_context.thread_count = 1
    if codec == "libx264":
        stream.options = {"crf": str(crf), **({"tune": "zerolatency"} if low_latency else {})}
    else:
        stream.bit_rate = 8_000_000
    return stream


def _encode_frames(container, stream, frames: np.ndarray) -> None:
    if stream.pix_fmt != "yuv444p":
        frames = _pad_to_even(frames)
    for frame in frames:
        for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
            container.mux(packet)


def _flush(container, stream) -> None:
    for packet in stream.encode():  # the frames the encoder still holds
        container.mux(packet)


def encode_mp4(path: Path, frames: np.ndarray, fps: int, crf: int, pix_fmt: str) -> None:
    """Encode uint8 (T, H, W, C) frames into `path` (mp4 container)."""
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = _add_video_stream(container, frames.shape[1], frames.shape[2], fps, crf, pix_fmt)
        _encode_frames(container, stream, frames)
        _flush(container, stream)


def _check_mp4_settings(fps: int, pix_fmt: str) -> None:
    if fps <= 0:
        raise UserError(f"fps={fps}: must be positive")
    if pix_fmt not in ("yuv420p", "yuv444p"):
        raise UserError(f"pix_fmt={pix_fmt!r}; valid: yuv420p, yuv444p")


def write_mp4(path: str | os.PathLike, video, fps: int = 8, *, crf: int = 18, pix_fmt: str = "yuv420p") -> Path:
    """Write a video or a batch (side by side) as mp4 (H.264 if available, else MPEG-4).

    The default yuv420p plays everywhere; pass pix_fmt="yuv444p" for near-lossless
    colour at sharp edges (H.264 High 4:4:4, not every player supports it).
    """
    _check_mp4_settings(fps, pix_fmt)
    path = Path(path)
    frames = tile_side_by_side(video)
    with atomic_path(path) as tmp:
        encode_mp4(tmp, frames, fps, crf, pix_fmt)
    return path


def write_gif(path: str | os.PathLike, video, fps: int = 8) -> Path:
    """Write a video or a batch (side by side) as a looping gif (256-colour palette)."""
    from PIL import Image  # Pillow comes with tensorboard, one of our dependencies

    if fps <= 0:
        raise UserError(f"fps={fps}: must be positive")
    path = Path(path)
    frames = [Image.fromarray(f) for f in tile_side_by_side(video)]
    with atomic_path(path) as tmp:
        frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=round(1000 / fps),
            loop=0,
        )
    return path


def _png_bytes(image: np.ndarray) -> bytes:
    """Encode uint8 (H, W, 3) as a PNG (8-bit RGB, no filtering): small and dependency-free."""
    height, width, _ = image.shape

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)  # 8 bit, colour type 2 = RGB
    rows = np.concatenate([np.zeros((height, 1), np.uint8), image.reshape(height, width * 3)], axis=1)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows.tobytes(), 6)) + chunk(b"IEND", b"")


def png_grid(videos, gap: int = 2) -> np.ndarray:
    """uint8 (rows*H + gaps, T*W + gaps, 3): one row per video, one column per frame, black gaps."""
    batch = _as_batch(videos)
    b, t, h, w, _ = batch.shape
    grid = np.zeros((b * h + (b - 1) * gap, t * w + (t - 1) * gap, 3), dtype=np.uint8)
    for row in range(b):
        for col in range(t):
            y, x = row * (h + gap), col * (w + gap)
            grid[y : y + h, x : x + w] = batch[row, col]
    return grid


def write_png_grid(path: str | os.PathLike, videos, gap: int = 2) -> Path:
    """Write a PNG with one row per video and one column per frame."""
    path = Path(path)
    write_bytes_atomic(path, _png_bytes(png_grid(videos, gap)))
    return path


def partial_path(path: str | os.PathLike) -> Path:
    """Where a growing `NAME.mp4` lives until it is finished: `NAME.partial.mp4`."""
    path = Path(path)
    return path.with_name(f"{path.stem}.partial{path.suffix}")


class GrowingMp4:
    """An mp4 written while its frames are being made.

    The frames go to `NAME.partial.mp4`, a fragmented mp4 that players can open while it
    grows (it trails the frames written by one: a frame's fragment is closed when the next
    frame arrives); `finish` renames it to `NAME.mp4`, so a file under the final name is
    always complete. `stop` closes what was written, a playable shorter video, and leaves it
    under the partial name. Input: (C, T, H, W) or a batch side by side, as for write_mp4.
    """

    MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame"

    def __init__(self, path: str | os.PathLike, fps: int = 8, *, crf: int = 18, pix_fmt: str = "yuv420p"):
        _check_mp4_settings(fps, pix_fmt)
        self.path = Path(path)
        self.partial = partial_path(self.path)
        self.fps, self.crf, self.pix_fmt = fps, crf, pix_fmt
        self.frames = 0
        self._container = self._stream = None

    def write(self, video) -> None:
        frames = tile_side_by_side(video)
        if self._container is None:  # opened at the first frames, which give the size
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._container = av.open(str(self.partial), mode="w", format="mp4",
                                      options={"movflags": self.MOVFLAGS, "flush_packets": "1"})
            self._stream = _add_video_stream(self._container, frames.shape[1], frames.shape[2], self.fps,
                                             self.crf, self.pix_fmt, low_latency=True)
        _encode_frames(self._container, self._stream, frames)
        self.frames += len(frames)

    def finish(self) -> Path:
        """Close the file and give it its final name."""
        if not self.frames:
            raise UserError(f"{self.path}: no frames were written")
        self._close()
        os.replace(self.partial, self.path)
        return self.path

    def stop(self) -> Path | None:
        """Close the file where it is (the partial name); None when there is none (no frame yet, or finished)."""
        self._close()
        return self.partial if self.partial.exists() else None

    def discard(self) -> None:
        """Close the file and delete it."""
        self._close()
        self.partial.unlink(missing_ok=True)

    def _close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            try:
                _flush(container, self._stream)
            finally:
                container.close()
