"""Train the demo's tokenizer alone and score it: held-out PSNR, objects and shapes of its reconstructions.

    python3 scripts/demo_tokenizer_trial.py --out runs/tok48 --size 48 --seconds 216
    python3 scripts/demo_tokenizer_trial.py --out runs/tok48_1000 --size 48 --fsq-levels [8,5,5,5]

The same stages as `nbp demo` (its dataset of 400 videos per class and its tokenizer recipe), with
the frame size, compression, codebook and budget open to change, so a tokenizer setting can be
tried in minutes before whole demos are run. Prints the stage's result as JSON.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch
from jsonargparse import ArgumentParser

from lightning_modules.demo import cli
from lightning_modules.demo.runner import Budget, StageRunner


def main(argv: list[str]) -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=str, required=True)
    parser.add_argument("--size", type=int, default=cli.SIZE)
    parser.add_argument("--seconds", type=float, default=Budget(15).tokenizer_seconds)
    parser.add_argument("--spatial-downsample", type=int, default=cli.TOKENIZER_OVERRIDES["spatial_downsample"])
    parser.add_argument("--patch-size", type=int, default=cli.TOKENIZER_OVERRIDES.get("patch_size", 2))
    parser.add_argument("--fsq-levels", type=list[int], default=cli.TOKENIZER_OVERRIDES["fsq_levels"])
    parser.add_argument("--anchor-weight", type=float, default=cli.TOKENIZER_ANCHOR_WEIGHT)
    parser.add_argument("--edge-weight", type=float, default=cli.TOKENIZER_EDGE_WEIGHT)
    parser.add_argument("--train-frames", type=int, default=None, help="frames of a training clip (the config's: 9)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    cli.SIZE = args.size
    cli.TOKENIZER_OVERRIDES = {**cli.TOKENIZER_OVERRIDES, "spatial_downsample": args.spatial_downsample,
                               "patch_size": args.patch_size,
                               "fsq_levels": args.fsq_levels}
    cli.TOKENIZER_ANCHOR_WEIGHT = args.anchor_weight
    cli.TOKENIZER_EDGE_WEIGHT = args.edge_weight
    if args.train_frames is not None:
        cli.TOKENIZER_TRAIN_FRAMES = args.train_frames
    runner = StageRunner(Path(args.out))
    data = runner.run("data", lambda f: cli.stage_data(f, 15.0, args.seed))
    budget = Budget(15.0, tokenizer_share=args.seconds / 900)
    result = runner.run("tokenizer", lambda f: cli.stage_tokenizer(f, Path(data["root"]), budget, "cpu"))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
