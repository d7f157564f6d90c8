"""`nbp bench fvd`: FVD feature extraction speed, and a check that the pipeline separates distributions.

    nbp bench fvd --videos 8 --batch-size 4 --size 128
    nbp bench fvd --videos 4 --separation data/synthetic

Speed: videos/s through protocol preprocessing + the I3D for uint8 videos of
(frames, size, size), after one untimed warm-up batch, with the time split
between preprocessing and the detector. Without `--detector` the I3D has random
weights (seeded): the speed is the same as with the real weights, the scores are not.

`--separation ROOT` scores a folder of videos (e.g. the synthetic dataset) two
ways: FVD between two disjoint halves (every other video) and FVD between all
videos and a copy whose frames are shuffled in time. A working pipeline gives
the second a larger value. With a random I3D these numbers are NOT comparable
to published FVD.
"""

from __future__ import annotations

import json
import platform
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.devices import add_device_argument, sync
from nbp.errors import UserError


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="FVD feature extraction speed (JSON on stdout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--videos", type=int, default=8, help="videos timed")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=4)
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128, help="input frame side before preprocessing")
    parser.add_argument("--protocol", type=str, default="nbp", help="styleganv | nbp | tats")
    parser.add_argument("--detector", type=str, default=None, help="detector file (default: a seeded random I3D)")
    add_device_argument(parser)
    parser.add_argument("--separation", type=str, default=None, help="folder of videos for the separation check")
    parser.add_argument("--separation_size", "--separation-size", type=int, default=64, help="frame side read for it")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def random_i3d_detector(seed: int):
    from nbp.metrics.detector import I3DDetector
    from nbp.metrics.i3d import InceptionI3d

    torch.manual_seed(seed)
    network = InceptionI3d()
    # He-normal convolutions keep the activation scale through ~60 ReLU layers; PyTorch's
    # default init shrinks it until every video gets nearly the same logits (FVD ~ 1e-12).
    for module in network.modules():
        if isinstance(module, torch.nn.Conv3d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    return I3DDetector(network, source=f"random He-normal init (seed {seed})", sha256=None)


def time_extraction(metric, videos: torch.Tensor, batch_size: int, device: torch.device) -> dict:
    """Seconds spent in preprocessing and in the detector over all `videos`, batch by batch."""
    detector, protocol = metric.get_detector(), metric.protocol
    seconds = {"preprocess": 0.0, "detector": 0.0}
    with torch.no_grad():
        for start in range(0, videos.shape[0], batch_size):
            sync(device)
            t0 = time.perf_counter()
            x = protocol.preprocess(videos[start : start + batch_size].to(device))
            sync(device)
            t1 = time.perf_counter()
            detector(x, rescale=protocol.rescale, resize=protocol.resize)
            sync(device)
            t2 = time.perf_counter()
            seconds["preprocess"] += t1 - t0
            seconds["detector"] += t2 - t1
    return seconds


def shuffled_in_time(videos: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each video with its frames in a random order (same content, broken motion)."""
    out = torch.empty_like(videos)
    for i in range(videos.shape[0]):
        out[i] = videos[i][:, torch.randperm(videos.shape[2], generator=generator)]
    return out


def separation(metric_factory, root: str, frames: int, size: int, seed: int) -> dict:
    from nbp.metrics.evaluation import video_source

    _, dataset = video_source(root, frames, size, None, "center")
    if len(dataset) < 4:
        raise UserError(f"--separation {root}: needs at least 4 videos, found {len(dataset)}")
    scorer = metric_factory()
    # only the scored frames are shuffled, so the copy holds exactly the frames the detector sees
    videos = torch.stack([dataset[i]["video"] for i in range(len(dataset))])[:, :, : scorer.protocol.frames]
    shuffled = shuffled_in_time(videos, torch.Generator().manual_seed(seed))
    feats = scorer.extract_features(videos)
    feats_shuffled = scorer.extract_features(shuffled)

    def fvd(real: torch.Tensor, fake: torch.Tensor) -> float:
        metric = metric_factory()
        metric.update_features(real, True)
        metric.update_features(fake, False)
        return metric.compute().item()

    return {
        "videos": len(dataset),
        "frame_size": size,
        "fvd_disjoint_halves": fvd(feats[0::2], feats[1::2]),
        "fvd_vs_time_shuffled_copy": fvd(feats, feats_shuffled),
        "fvd_halves_vs_shuffled_halves": fvd(feats[0::2], feats_shuffled[1::2]),
    }


def run(args) -> dict:
    from nbp.devices import pick_device
    from nbp.metrics.fvd import FrechetVideoDistance
    from nbp.metrics.protocols import get_protocol

    if args.videos < 1 or args.batch_size < 1:
        raise UserError(f"--videos {args.videos} / --batch-size {args.batch_size}: both must be >= 1")
    protocol = get_protocol(args.protocol)
    device = pick_device(args.device)
    if args.detector:
        from nbp.metrics.detector import load_detector_file

        detector = load_detector_file(args.detector)
    else:
        detector = random_i3d_detector(args.seed)
    detector = detector.to(device).eval()

    def metric_factory():
        return FrechetVideoDistance(protocol, detector=detector, batch_size=args.batch_size).to(device)

    metric = metric_factory()
    g = torch.Generator().manual_seed(args.seed)
    videos = torch.randint(0, 256, (args.videos, 3, args.frames, args.size, args.size), generator=g, dtype=torch.uint8)
    time_extraction(metric, videos[: args.batch_size], args.batch_size, device)  # warm-up
    seconds = time_extraction(metric, videos, args.batch_size, device)
    total = seconds["preprocess"] + seconds["detector"]
    result = {
        "benchmark": "fvd",
        "protocol": protocol.name,
        "detector": {**detector.describe(), "random_init": args.detector is None},
        "videos_per_s": round(args.videos / total, 3),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "videos_timed": args.videos,
        "batch_size": args.batch_size,
        "input": {"frames": args.frames, "size": args.size, "dtype": "uint8"},
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
        "torch_threads": torch.get_num_threads(),
    }
    if args.separation:
        result["separation"] = separation(metric_factory, args.separation, args.frames, args.separation_size, args.seed)
        if args.detector is None:
            result["separation"]["note"] = "random-weight I3D: a sanity check only, NOT comparable to published FVD"
    return result


def main(argv: list[str], prog: str = "nbp bench fvd") -> int:
    args = build_parser(prog).parse_args(argv)
    print(json.dumps(run(args), indent=2))
    return 0
