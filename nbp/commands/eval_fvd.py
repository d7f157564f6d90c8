"""`nbp eval fvd`: FVD between two sets of videos under a named protocol.

    nbp eval fvd --real data/ucf101_real --fake samples/ --protocol nbp --detector i3d_torchscript.pt

`--real` / `--fake` take a folder of videos (read recursively, in sorted order)
or a DatasetConfig file (YAML/JSON). Writes a JSON report (default
fvd_report.json), prints a one-line summary on stderr and the report on stdout.
Under torchrun every rank scores its share and the metric sums the statistics.
"""

from __future__ import annotations

import time

from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.devices import add_device_argument
from nbp.errors import UserError
from nbp.files import check_output_file

# Where in a longer real file the scored window is taken (StyleGAN-V: one random window per video).
DEFAULT_CLIP = {"styleganv": "random", "nbp": "center", "tats": "random"}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="FVD between real and generated videos under a named protocol.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--real", type=str, required=True, help="folder of real videos, or a DatasetConfig YAML/JSON")
    parser.add_argument("--fake", type=str, required=True, help="folder of generated videos, or a DatasetConfig YAML/JSON")
    parser.add_argument("--protocol", type=str, default="nbp", help="styleganv | nbp | tats")
    parser.add_argument("--detector", type=str, default=None, help="TorchScript I3D or i3d_pretrained_400.pt state dict")
    parser.add_argument("--num_real", "--num-real", type=int, default=None, help="default: the protocol's count or all")
    parser.add_argument("--num_fake", "--num-fake", type=int, default=None, help="default: the protocol's count or all")
    parser.add_argument("--size", type=int, default=128, help="frame side the folder videos are read at (crop)")
    parser.add_argument("--fps", type=float, default=None, help="resample folder videos to this rate (default: keep every frame)")
    parser.add_argument("--clip", type=str, default=None, help="center | random | start (default per protocol)")
    parser.add_argument("--pre_resize", "--pre-resize", type=int, default=None, help="resize frames to this square first (K600: 64)")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0, help="seeds random clip positions")
    parser.add_argument("--out", type=str, default="fvd_report.json", help="JSON report path")
    return parser


def _count(requested: int | None, available: int, protocol_count: int, flag: str) -> int:
    if requested is None:
        return min(available, protocol_count)
    if requested < 2 or requested > available:
        raise UserError(f"{flag} {requested}: must be between 2 and the {available} videos available")
    return requested


def main(argv: list[str], prog: str = "nbp eval fvd") -> int:
    args = build_parser(prog).parse_args(argv)
    import torch

    from nbp.devices import pick_device
    from nbp.metrics.evaluation import distributed_setup, finish, rank_share, score_videos, summary_line, video_source
    from nbp.metrics.fvd import FrechetVideoDistance
    from nbp.metrics.protocols import get_protocol

    start = time.perf_counter()
    overrides = {"pre_resize": args.pre_resize} if args.pre_resize else {}
    protocol = get_protocol(args.protocol, **overrides)
    if args.batch_size < 1 or args.workers < 0:
        raise UserError(f"--batch-size {args.batch_size} / --workers {args.workers}: need batch >= 1, workers >= 0")
    clip = args.clip or DEFAULT_CLIP[protocol.name]
    for flag, value in (("--size", args.size), ("--fps", args.fps), ("--pre-resize", args.pre_resize)):
        if value is not None and not value > 0:
            raise UserError(f"{flag} {value}: must be > 0")
    check_output_file(args.out)
    torch.manual_seed(args.seed)
    rank, world = distributed_setup()
    device = pick_device(args.device)
    sources = {}
    for side, spec in (("real", args.real), ("fake", args.fake)):
        cfg, dataset = video_source(spec, protocol.frames, args.size, args.fps, clip)
        sources[side] = (spec, cfg, dataset)
    n_real = _count(args.num_real, len(sources["real"][2]), protocol.num_real, "--num-real")
    n_fake = _count(args.num_fake, len(sources["fake"][2]), protocol.num_fake, "--num-fake")

    metric = FrechetVideoDistance(protocol, detector=args.detector, batch_size=args.batch_size).to(device)
    metric.get_detector()  # fail on missing weights before decoding anything
    replaced = {}
    for side, count in (("real", n_real), ("fake", n_fake)):
        indices = rank_share(count, rank, world)
        replaced[side] = score_videos(metric, sources[side][2], indices, side == "real", args.batch_size, args.workers, side)
    fvd = metric.compute().item()
    report = {
        "command": "eval fvd",
        "fvd": fvd,
        "protocol": protocol.name,
        "protocol_settings": protocol.to_dict(),
        "counts": metric.counts() if world == 1 else {"real": n_real, "fake": n_fake},
        "protocol_counts": {"real": protocol.num_real, "fake": protocol.num_fake},
        "comparable_counts": n_real >= protocol.num_real and n_fake >= protocol.num_fake,
        "detector": metric.detector_info(),
        "real": {"source": args.real, "dataset": vars(sources["real"][1]), "unreadable_replaced": replaced["real"]},
        "fake": {"source": args.fake, "dataset": vars(sources["fake"][1]), "unreadable_replaced": replaced["fake"]},
        "seed": args.seed,
        "world_size": world,
        "device": str(device),
        "seconds": round(time.perf_counter() - start, 2),
    }
    finish(report, args.out, summary_line("nbp eval fvd", report), rank)
    return 0
