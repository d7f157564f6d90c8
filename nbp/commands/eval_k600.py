"""`nbp eval k600`: frame prediction on Kinetics-600 (5 context frames, the rest predicted).

    nbp eval k600 --model model.pt --tokenizer tokenizer.pt --data data/k600 --split val --num-samples 50000

The model sees the tokens of the first context frames of each real clip and
predicts the rest; as in NBP, the scored prediction starts with the tokenizer's
reconstruction of the context. FVD is computed on the first 16 frames after
resizing to 64x64 (then to 224 per the protocol), and PSNR / SSIM on the
predicted frames against the ground truth. Clips cycle through the list when
--num-samples exceeds it. Generated videos are cached in shards and resumable.
"""

from __future__ import annotations

import time

from jsonargparse import ActionConfigFile, ArgumentParser



def build_parser(prog: str) -> ArgumentParser:
    from nbp.metrics.generation_eval import add_generation_args

    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Kinetics-600 frame prediction: FVD at 64x64, PSNR and SSIM.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--data", type=str, required=True, help="Kinetics-600 root (split/class/video files)")
    parser.add_argument("--split", type=str, default="val", help="train | val | test")
    parser.add_argument("--csv", type=str, default=None, help="Kinetics annotation CSV (optional)")
    parser.add_argument("--kind", type=str, default="k600", help="dataset kind: k600, or folder/ucf101 for other videos")
    parser.add_argument("--num_samples", "--num-samples", type=int, default=50000, help="predicted videos")
    parser.add_argument("--protocol", type=str, default="nbp", help="styleganv | nbp | tats")
    parser.add_argument("--fvd_size", "--fvd-size", type=int, default=64, help="frames are resized to this before the detector")
    parser.add_argument("--out", type=str, default="runs/eval/k600.json", help="JSON report path")
    add_generation_args(parser)
    return parser


def main(argv: list[str], prog: str = "nbp eval k600") -> int:
    args = build_parser(prog).parse_args(argv)
    import torch

    from nbp.data import DatasetConfig, build_dataset
    from nbp.metrics import generation_eval as gen
    from nbp.devices import pick_device
    from nbp.metrics.evaluation import distributed_setup, finish, summary_line
    from nbp.metrics.frame_quality import FrameQuality
    from nbp.metrics.fvd import FrechetVideoDistance
    from nbp.metrics.protocols import get_protocol
    from nbp.sampling import context_pixel_frames, generate

    start = time.perf_counter()
    gen.check_generation_args(args)
    protocol = get_protocol(args.protocol, pre_resize=args.fvd_size)
    rank, world = distributed_setup()
    device = pick_device(args.device)
    # The detector first: a missing weights file must not cost the whole generation.
    metric = FrechetVideoDistance(protocol, detector=args.detector).to(device)
    metric.get_detector()
    model, tokenizer, checksums, (frames, height) = gen.load_checked_generator(
        args, device, "frames", "K600 frame prediction", protocol.frames)
    context = context_pixel_frames(tokenizer, model.config)

    data_cfg = DatasetConfig(kind=args.kind, root=args.data, split=args.split, csv=args.csv, frames=frames,
                             fps=args.fps, size=height, clip="center")
    real = build_dataset(data_cfg)

    def clips(indices: range) -> torch.Tensor:
        return torch.stack([real[i % len(real)]["video"] for i in indices])  # uint8 (B, 3, T, H, W)

    meta = {"task": "k600", **checksums, "seed": args.seed, "data": vars(data_cfg), **gen.sampling_settings(args)}
    shards, cache = gen.open_shards(args, meta, rank, world)

    def make_shard(index: int):
        stream = gen.shard_generator(device, args.seed, index)
        span = shards.shard_range(index)
        truth = clips(span)
        videos = [
            generate(model, tokenizer, cond=part[:, :, :context].to(device), generator=stream,
                     **gen.sampling_settings(args)).cpu()
            for part in truth.split(args.batch_size)
        ]
        return torch.cat(videos), torch.tensor(list(span))

    generated_now = gen.sum_over_ranks(gen.fill_shards(shards, rank, world, make_shard), world)
    gen.barrier(world)

    quality = FrameQuality().to(device)
    for index in shards.shards_of_rank(rank, world):
        fake = shards.read(index)["videos"]
        truth = clips(shards.shard_range(index))
        metric.update(fake, real=False)
        metric.update(truth, real=True)
        quality.update(fake[:, :, context:].to(device), truth[:, :, context:].to(device))
    fvd = metric.compute().item()
    frame_scores = quality.compute()
    report = {
        "command": "eval k600",
        "fvd": fvd,
        "psnr": frame_scores["psnr"],
        "ssim": frame_scores["ssim"],
        "predicted_frames_scored": frame_scores["frames"],
        "context_frames": context,
        "protocol": protocol.name,
        "protocol_settings": protocol.to_dict(),
        "counts": {"real": args.num_samples, "fake": args.num_samples, "distinct_real_clips": min(len(real), args.num_samples)},
        "protocol_counts": {"real": 50000, "fake": 50000},
        "detector": metric.detector_info(),
        "data": vars(data_cfg),
        **gen.run_fields(args, checksums, shards, cache, generated_now, world, device, start),
    }
    finish(report, args.out, summary_line("nbp eval k600", report) + f", PSNR {frame_scores['psnr']:.2f}, SSIM {frame_scores['ssim']:.3f}", rank)
    return 0
