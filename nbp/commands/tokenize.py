"""`nbp tokenize`: encode a dataset once with a tokenizer into a token cache (see nbp/token_cache.py).

    nbp tokenize --tokenizer runs/tokenizer_synthetic/tokenizer.pt \
        --data.kind synthetic --data.root data/synthetic --data.size 64 --out cache/synthetic_train

Re-running the same command after an interruption resumes at the first unfinished shard.
Unreadable videos are skipped, counted and listed in meta.json.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from torch.utils.data import DataLoader, Dataset

from nbp.devices import add_device_argument, pick_device
from nbp.errors import UserError, first_line, ignore_interrupt_in_worker, iterate_with_workers
from nbp.files import check_output_folder, sha256_file
from nbp.pixels import to_model
from nbp.progress import progress as progress_bar
from nbp.sampling import load_tokenizer
from nbp.token_cache import CacheMeta, TokenCacheWriter


def config_as_dict(config: Any) -> dict:
    """A dataclass config as plain JSON-able data (paths become strings)."""
    if config is None:
        return {}
    data = dataclasses.asdict(config) if dataclasses.is_dataclass(config) else dict(vars(config))
    return json.loads(json.dumps(data, default=str))


class SkipUnreadable(Dataset):
    """Wraps a video dataset so that an unreadable video becomes a 'skipped' record.

    Our file datasets replace an unreadable file by the next readable one (so training never
    stops); a cache must not hold that duplicate, so a substitute (its path is not the path
    listed at this index) is turned into a 'skipped' record too.
    """

    def __init__(self, dataset: Dataset):
        self.dataset = dataset
        self.listed = getattr(dataset, "videos", None)  # [(path, label)] of file-backed datasets

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict:
        from nbp.data.clip_reader import VideoReadError

        try:
            item = self.dataset[index]
        except (VideoReadError, RuntimeError) as err:  # RuntimeError: no readable file at all
            return {"skipped": f"item {index}: {first_line(err)}"}
        if self.listed is not None and str(item["path"]) != str(self.listed[index][0]):
            return {"skipped": str(self.listed[index][0])}
        return item


def collate_readable(items: list[dict]) -> dict:
    readable = [it for it in items if "skipped" not in it]
    batch = {"skipped": [it["skipped"] for it in items if "skipped" in it],
             "path": [str(it["path"]) for it in readable],
             "label": [int(it["label"]) for it in readable]}
    batch["video"] = torch.stack([it["video"] for it in readable]) if readable else None
    return batch


@torch.no_grad()
def encode_videos(tok, video_uint8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 (B, C, T, H, W) -> ids int64 (B, T', H', W'), in fp32 so ids do not depend on the device."""
    return tok.encode(to_model(video_uint8.to(device, non_blocking=True)))


def tokenize_dataset(tokenizer_path: str | Path, data_cfg, out: str | Path, batch_size: int = 8,
                     shard_size: int = 1024, num_workers: int = 0, device: str = "auto",
                     progress: bool = True) -> CacheMeta:
    from nbp.data import build_dataset

    dev = pick_device(device)
    if num_workers < 0:
        raise UserError(f"--num-workers {num_workers}: must be >= 0 (0 decodes in the main process)")
    check_output_folder(out)
    tok = load_tokenizer(tokenizer_path, dev)
    dataset = build_dataset(data_cfg)
    if len(dataset) == 0:
        raise UserError(f"the dataset {data_cfg.kind} at {data_cfg.root} has no videos for split {data_cfg.split!r}")
    grid = tuple(int(g) for g in tok.latent_shape(data_cfg.frames, data_cfg.size, data_cfg.size))
    classes = getattr(dataset, "class_names", None)
    meta = CacheMeta(
        tokenizer_sha256=sha256_file(tokenizer_path), tokenizer_config=config_as_dict(getattr(tok, "config", None)),
        vocab_size=int(tok.vocab_size), grid=grid, frames=int(data_cfg.frames), fps=float(data_cfg.fps),
        resolution=(int(data_cfg.size), int(data_cfg.size)), dataset=config_as_dict(data_cfg),
        shard_size=shard_size, num_source_items=len(dataset),
        num_classes=len(classes) if classes else None)
    writer = TokenCacheWriter(out, meta)
    pending = writer.pending_shards()
    safe = SkipUnreadable(dataset)
    todo = sum(len(writer.shard_range(k)) for k in pending)
    # closed on any exit, so an error or 'nbp: interrupted' starts on its own line
    with progress_bar(total=todo, desc=f"tokenize -> {out}", unit="video", enabled=progress) as bar:
        for k in pending:
            loader = DataLoader(torch.utils.data.Subset(safe, list(writer.shard_range(k))), batch_size=batch_size,
                                num_workers=num_workers, collate_fn=collate_readable, pin_memory=dev.type == "cuda",
                                worker_init_fn=ignore_interrupt_in_worker)
            ids, labels, sources, skipped = [], [], [], []
            for batch in iterate_with_workers(loader):
                skipped += batch["skipped"]
                if batch["video"] is not None:
                    ids.append(encode_videos(tok, batch["video"], dev).cpu())
                    labels += batch["label"]
                    sources += batch["path"]
                bar.update(len(batch["label"]) + len(batch["skipped"]))
            shard_ids = torch.cat(ids) if ids else torch.zeros((0, *grid), dtype=torch.long)
            if tuple(shard_ids.shape[1:]) != grid:
                raise UserError(f"the tokenizer produced grid {list(shard_ids.shape[1:])} for "
                                f"{data_cfg.frames}x{data_cfg.size}x{data_cfg.size} clips, expected {list(grid)}")
            writer.write_shard(k, shard_ids, labels, sources, skipped)
    return writer.finalize()


def build_parser(prog: str) -> ArgumentParser:
    from nbp.data import DatasetConfig

    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Encode a dataset into a token cache.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--tokenizer", type=str, required=True, help="tokenizer file (VideoTokenizer.save)")
    parser.add_argument("--data", type=DatasetConfig, required=True, help="the dataset to encode")
    parser.add_argument("--out", type=str, required=True, help="cache directory (created; resumed if present)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--shard-size", type=int, default=1024, help="videos per shard file")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers decoding videos")
    add_device_argument(parser)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def main(argv: list[str], prog: str = "nbp tokenize") -> int:
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    args = parser.instantiate_classes(args)
    for name in ("batch_size", "shard_size"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    meta = tokenize_dataset(args.tokenizer, args.data, args.out, batch_size=args.batch_size,
                            shard_size=args.shard_size, num_workers=args.num_workers, device=args.device,
                            progress=not args.no_progress)
    summary = {"out": str(args.out), "items": meta.num_items, "skipped": meta.num_skipped,
               "grid": list(meta.grid), "vocab_size": meta.vocab_size, "dtype": meta.dtype,
               "shards": meta.num_shards}
    print(json.dumps(summary))
    return 0
