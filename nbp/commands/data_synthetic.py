"""`nbp data synthetic`: write the built-in synthetic dataset as real mp4 files (UCF-101 layout).

    nbp data synthetic --out data/synthetic --videos-per-class 20 --frames 17 --size 64 --fps 8 --seed 0

Prints one JSON line with what was written. Re-running with the same settings
writes identical frames.
"""

from __future__ import annotations

import json
import time

from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.errors import UserError
from nbp.files import check_output_folder


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Write the synthetic bouncing-shapes dataset (UCF-101 layout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--out", type=str, required=True, help="output folder (created if missing)")
    parser.add_argument("--videos_per_class", "--videos-per-class", type=int, default=20,
                        help="videos per class; one fifth (at least one) goes to the test split")
    parser.add_argument("--frames", type=int, default=17, help="frames per video")
    parser.add_argument("--size", type=int, default=64, help="frame side in pixels")
    parser.add_argument("--fps", type=int, default=8, help="frame rate stored in the files")
    parser.add_argument("--seed", type=int, default=0, help="the same seed writes the same videos")
    return parser


def main(argv: list[str], prog: str = "nbp data synthetic") -> int:
    args = build_parser(prog).parse_args(argv)
    from nbp.data.synthetic import CLASS_NAMES, split_sizes, write_synthetic_dataset

    if args.videos_per_class < 2:
        raise UserError(f"--videos-per-class {args.videos_per_class}: need at least 2 (one train, one test video)")
    if args.frames < 1:
        raise UserError(f"--frames {args.frames}: must be >= 1")
    if args.size < 5:
        raise UserError(f"--size {args.size}: must be >= 5 (objects are 1/5 of the frame)")
    if args.fps < 1:
        raise UserError(f"--fps {args.fps}: must be >= 1")
    check_output_folder(args.out)
    sizes = split_sizes(args.videos_per_class)
    start = time.perf_counter()
    out = write_synthetic_dataset(
        args.out, videos_per_class=args.videos_per_class, frames=args.frames, size=args.size, fps=args.fps, seed=args.seed
    )
    summary = {
        "out": str(out),
        "classes": list(CLASS_NAMES),
        "train_videos": sizes["train"] * len(CLASS_NAMES),
        "test_videos": sizes["test"] * len(CLASS_NAMES),
        "frames": args.frames,
        "size": args.size,
        "fps": args.fps,
        "seed": args.seed,
        "seconds": round(time.perf_counter() - start, 2),
    }
    print(json.dumps(summary))
    return 0
