"""`nbp bench data`: clips/s of our clip reader vs decoding every frame and keeping 17.

    nbp bench data --videos 4 --rounds 3

Both methods produce the same clip (same indices, same resize), and the JSON says
whether they did. Source videos are written first (UCF-101-like by default:
320x240, 25 fps, 7 s, H.264 with ffmpeg's default keyframe interval), unless
`--source DIR` points at a folder of real videos. The methods alternate file by
file inside one run, so a busy machine slows both alike; compare the ratio.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.data.clip_reader import clip_indices, open_video, read_clip, resize_frames
from nbp.errors import UserError


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Clip reading speed: decode needed frames vs decode all.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--source", type=str, default=None, help="folder of videos to read (default: write some)")
    parser.add_argument("--videos", type=int, default=4, help="source videos to write")
    parser.add_argument("--seconds", type=float, default=7.0, help="length of each written video")
    parser.add_argument("--source_fps", type=int, default=25)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--height", type=int, default=240)
    parser.add_argument("--gop", type=int, default=250, help="keyframe interval of the written videos (x264 default 250)")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--fps", type=float, default=8)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--position", type=str, default="center")
    parser.add_argument("--rounds", type=int, default=3, help="passes over all videos per method")
    return parser


def camera_pan_video(frames: int, height: int, width: int, seed: int) -> np.ndarray:
    """uint8 (T, H, W, C): a smooth random texture seen by a panning camera (codec-realistic motion)."""
    rng = np.random.default_rng(seed)
    coarse = torch.from_numpy(rng.integers(0, 256, (1, 3, height // 8, width // 4), dtype=np.uint8)).float()
    texture = torch.nn.functional.interpolate(coarse, size=(height, 2 * width), mode="bicubic", align_corners=False)
    texture = texture.clamp(0, 255).to(torch.uint8)[0].permute(1, 2, 0).numpy()
    shifts = (np.arange(frames) * (width / max(frames - 1, 1))).astype(int)
    return np.stack([texture[:, s : s + width] for s in shifts])


def write_sources(folder: Path, args) -> list[Path]:
    import av

    from nbp.video_io import video_codec

    paths, num_frames = [], round(args.seconds * args.source_fps)
    for i in range(args.videos):
        path = folder / f"source_{i}.mp4"
        with av.open(str(path), mode="w") as container:
            stream = container.add_stream(video_codec(), rate=args.source_fps)
            stream.width, stream.height, stream.pix_fmt = args.width, args.height, "yuv420p"
            stream.gop_size = args.gop
            for frame in camera_pan_video(num_frames, args.height, args.width, seed=i):
                container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            container.mux(stream.encode())
        paths.append(path)
    return paths


def read_clip_decode_all(path, frames: int, fps: float, size: int, position: str) -> np.ndarray:
    """The reference approach: decode every frame of the file, then keep the clip's frames."""
    reader = open_video(path)
    every = reader.get_batch(list(range(len(reader)))).asnumpy()
    indices = clip_indices(len(reader), float(reader.get_avg_fps()), frames, fps, position)
    return resize_frames(torch.from_numpy(every[indices]), size, "crop").numpy()


def run(args) -> dict:
    if args.position == "random":
        raise UserError("--position random would make the two methods read different clips; use center or start")
    with tempfile.TemporaryDirectory() as tmp:
        if args.source:
            from nbp.data.datasets import list_videos

            paths = list_videos(Path(args.source))
            if not paths:
                raise UserError(f"--source {args.source}: no video files found")
        else:
            paths = write_sources(Path(tmp), args)
        clip_args = (args.frames, args.fps, args.size, args.position)
        seconds = {"ours": 0.0, "decode_all": 0.0}
        identical = True
        for _ in range(args.rounds):
            for path in paths:
                start = time.perf_counter()
                ours = read_clip(path, *clip_args)
                seconds["ours"] += time.perf_counter() - start
                start = time.perf_counter()
                reference = read_clip_decode_all(path, *clip_args)
                seconds["decode_all"] += time.perf_counter() - start
                identical &= bool(np.array_equal(ours, reference))
        clips = args.rounds * len(paths)
        reader = open_video(paths[0])
        source = {"frames": len(reader), "fps": float(reader.get_avg_fps()), "shape": list(reader[0].shape)}
    ours, decode_all = clips / seconds["ours"], clips / seconds["decode_all"]
    return {
        "benchmark": "data",
        "clips_per_s": {"ours": round(ours, 2), "decode_all": round(decode_all, 2)},
        "speedup": round(ours / decode_all, 2),
        "identical_clips": identical,
        "clips_timed_per_method": clips,
        "settings": {
            "frames": args.frames,
            "fps": args.fps,
            "size": args.size,
            "position": args.position,
            "source": args.source or "written",
            "source_video": source,
            "gop": None if args.source else args.gop,
            "decoder_threads": 1,
        },
        "machine": {"cpus": os.cpu_count(), "processor": platform.processor() or platform.machine()},
    }


def main(argv: list[str], prog: str = "nbp bench data") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.rounds < 1 or args.videos < 1:
        raise UserError("--rounds and --videos must be >= 1")
    print(json.dumps(run(args)))
    return 0
