"""`nbp eval ucf101`: class-conditional FVD on UCF-101 (the NBP protocol by default).

    nbp eval ucf101 --model model.pt --tokenizer tokenizer.pt --data data/UCF-101 --num-samples 10000 --protocol nbp

Labels are drawn from the train split's empirical class distribution; real clips
(centre 17 frames at 8 fps, the model's resolution) come from the same list;
FVD is scored on the first 16 frames. Generated videos are cached in shards
(`--cache`), so an interrupted run resumes where it stopped and the same cache
can be re-scored under another protocol. Under torchrun each rank generates and
scores its share of shards; the metric sums the statistics across ranks.
"""

from __future__ import annotations

import time

from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.errors import UserError


def build_parser(prog: str) -> ArgumentParser:
    from nbp.metrics.generation_eval import add_generation_args

    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Class-conditional FVD on UCF-101 (train split labels and clips).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--data", type=str, required=True, help="UCF-101 root (class folders + split lists)")
    parser.add_argument("--fold", type=int, default=1, help="UCF-101 split 1, 2 or 3")
    parser.add_argument("--num_samples", "--num-samples", type=int, default=10000, help="generated videos")
    parser.add_argument("--protocol", type=str, default="nbp", help="styleganv | nbp | tats")
    parser.add_argument("--out", type=str, default="runs/eval/ucf101.json", help="JSON report path")
    add_generation_args(parser)
    return parser


def main(argv: list[str], prog: str = "nbp eval ucf101") -> int:
    args = build_parser(prog).parse_args(argv)
    import numpy as np
    import torch

    from nbp.data import DatasetConfig, build_dataset
    from nbp.metrics import generation_eval as gen
    from nbp.devices import pick_device
    from nbp.metrics.evaluation import distributed_setup, finish, rank_share, score_videos, summary_line
    from nbp.metrics.fvd import FrechetVideoDistance
    from nbp.metrics.protocols import get_protocol
    from nbp.sampling import generate

    start = time.perf_counter()
    gen.check_generation_args(args)
    protocol = get_protocol(args.protocol)
    rank, world = distributed_setup()
    device = pick_device(args.device)
    # The detector first: a missing weights file must not cost the whole generation.
    metric = FrechetVideoDistance(protocol, detector=args.detector).to(device)
    metric.get_detector()
    model, tokenizer, checksums, (frames, height) = gen.load_checked_generator(
        args, device, "class", "UCF-101 evaluation", protocol.frames)
    config = model.config

    data_cfg = DatasetConfig(kind="ucf101", root=args.data, split="train", fold=args.fold, frames=frames,
                             fps=args.fps, size=height, clip="center")
    real = build_dataset(data_cfg)
    if len(real.class_names) != config.num_classes:
        raise UserError(f"{args.data} has {len(real.class_names)} classes but the model has {config.num_classes}")

    # Labels ~ the train split's empirical distribution; real clips: the same list, in a seeded order.
    rng = np.random.default_rng(args.seed)
    train_labels = np.array([label for _, label in real.videos])
    labels = torch.from_numpy(rng.choice(train_labels, size=args.num_samples, replace=True))
    real_order = rng.permutation(len(real))[: min(args.num_samples, len(real))].tolist()

    meta = {"task": "ucf101", **checksums, "seed": args.seed, "fold": args.fold, **gen.sampling_settings(args)}
    shards, cache = gen.open_shards(args, meta, rank, world)

    def make_shard(index: int):
        stream = gen.shard_generator(device, args.seed, index)
        cond = labels[shards.shard_range(index).start : shards.shard_range(index).stop]
        videos = [
            generate(model, tokenizer, cond=part.to(device), generator=stream, **gen.sampling_settings(args)).cpu()
            for part in cond.split(args.batch_size)
        ]
        return torch.cat(videos), cond

    generated_now = gen.sum_over_ranks(gen.fill_shards(shards, rank, world, make_shard), world)
    gen.barrier(world)

    for index in shards.shards_of_rank(rank, world):
        metric.update(shards.read(index)["videos"], real=False)
    my_real = [real_order[i] for i in rank_share(len(real_order), rank, world)]
    replaced = score_videos(metric, real, my_real, True, metric.batch_size, args.workers, "real")
    fvd = metric.compute().item()
    report = {
        "command": "eval ucf101",
        "fvd": fvd,
        "protocol": protocol.name,
        "protocol_settings": protocol.to_dict(),
        "counts": {"real": len(real_order), "fake": args.num_samples},
        "protocol_counts": {"real": protocol.num_real, "fake": protocol.num_fake},
        "detector": metric.detector_info(),
        "data": vars(data_cfg),
        "real_unreadable_replaced": replaced,
        **gen.run_fields(args, checksums, shards, cache, generated_now, world, device, start),
    }
    finish(report, args.out, summary_line("nbp eval ucf101", report), rank)
    return 0
