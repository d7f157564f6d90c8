"""`nbp eval recon`: how well a tokenizer reconstructs a dataset; JSON on stdout.

    nbp eval recon --tokenizer runs/tokenizer_synthetic/tokenizer.pt \
        --data.kind synthetic --data.root data/synthetic --data.split test --data.size 32

Reports mean per-video PSNR and SSIM (on [0, 1] pixels), codebook usage and perplexity of the
ids, and reconstruction FVD (real clips vs their reconstructions) when the FVD detector can be
loaded; otherwise the `fvd` field is left out and the reason is printed on stderr.
"""

from __future__ import annotations

import sys
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser
from torch.utils.data import DataLoader

from nbp.commands.tokenize import SkipUnreadable, collate_readable, config_as_dict
from nbp.devices import add_device_argument, pick_device
from nbp.sampling import load_tokenizer
from nbp.data import DatasetConfig, build_dataset
from nbp.devices import add_device_argument, pick_device
from nbp.errors import UserError, ignore_interrupt_in_worker
from nbp.files import check_output_file, write_json_atomic
from nbp.metrics.frame_quality import frame_ssim
from nbp.pixels import model_to_unit, to_model
from tokenizer.metrics import code_histogram, codebook_stats, video_psnr


def try_fvd_metric(protocol: str, device: torch.device):
    """The FVD metric with its detector loaded, or (None, reason) when that is not possible here."""
    try:
        from nbp.metrics.fvd import FrechetVideoDistance

        metric = FrechetVideoDistance(protocol=protocol).to(device)
        metric.get_detector()
        return metric, None
    except ImportError as err:
        return None, f"the FVD metric is not available ({err})"
    except UserError as err:
        return None, str(err)


@torch.no_grad()
def evaluate_reconstruction(tokenizer_path: str, data: DatasetConfig, batch_size: int = 8, limit: int | None = None,
                            device: str = "auto", fvd: bool = True, fvd_protocol: str = "nbp",
                            num_workers: int = 0) -> dict:
    dev = pick_device(device)
    tok = load_tokenizer(tokenizer_path, dev)
    dataset = SkipUnreadable(build_dataset(data))
    if len(dataset) == 0:
        raise UserError(f"the dataset {data.kind} at {data.root} has no videos for split {data.split!r}")
    if limit is not None:
        dataset = torch.utils.data.Subset(dataset, range(min(limit, len(dataset))))
    metric, reason = try_fvd_metric(fvd_protocol, dev) if fvd else (None, "disabled by --fvd false")
    loader = DataLoader(dataset, batch_size=batch_size, num_workers=num_workers, collate_fn=collate_readable,
                        worker_init_fn=ignore_interrupt_in_worker)

    psnr, ssim, skipped = [], [], []
    counts = torch.zeros(tok.vocab_size, dtype=torch.long)
    start = time.perf_counter()
    for batch in loader:
        skipped += batch["skipped"]
        if batch["video"] is None:
            continue
        target = batch["video"].to(dev)
        ids = tok.encode(to_model(target))
        pred = model_to_unit(tok.decode(ids))
        target_unit = target.float() / 255.0
        psnr.append(video_psnr(pred, target_unit).cpu())
        ssim.append(frame_ssim(pred, target_unit).mean(1).float().cpu())  # per video
        counts += code_histogram(ids, tok.vocab_size).cpu()
        if metric is not None:
            metric.update(target, real=True)
            metric.update(pred, real=False)
    if not psnr:
        raise UserError(f"no readable videos in {data.root} ({len(skipped)} skipped)")
    result = {
        "psnr": float(torch.cat(psnr).mean()),
        "ssim": float(torch.cat(ssim).mean()),
        **codebook_stats(counts),
        "vocab_size": int(tok.vocab_size),
        "videos": int(sum(len(p) for p in psnr)),
        "skipped": len(skipped),
        "seconds": round(time.perf_counter() - start, 2),
        "tokenizer": str(tokenizer_path),
        "data": config_as_dict(data),
        "device": str(dev),
    }
    if metric is not None:
        try:
            result["fvd"] = float(metric.compute())
            result["fvd_protocol"] = fvd_protocol
        except UserError as err:  # e.g. too few videos for a covariance
            reason = str(err)
    if "fvd" not in result:
        print(f"nbp eval recon: no fvd: {reason}", file=sys.stderr)
    return result


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Reconstruction quality of a tokenizer on a dataset (JSON).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--tokenizer", type=str, required=True, help="tokenizer file (or TokenizerModule .ckpt)")
    parser.add_class_arguments(DatasetConfig, "data", help="the dataset to reconstruct")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--limit", type=int | None, default=None, help="evaluate at most this many videos")
    add_device_argument(parser)
    parser.add_argument("--fvd", type=bool, default=True, help="also compute reconstruction FVD when possible")
    parser.add_argument("--fvd_protocol", type=str, default="nbp", help="styleganv, nbp or tats")
    parser.add_argument("--num_workers", type=int, default=0)
    parser.add_argument("--out", type=str | None, default=None, help="also write the JSON to this file")
    return parser


def main(argv: list[str], prog: str = "nbp eval recon") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.batch_size < 1 or (args.limit is not None and args.limit < 1):
        raise UserError(f"--batch_size={args.batch_size} and --limit={args.limit} must be >= 1")
    if args.num_workers < 0:
        raise UserError(f"--num_workers {args.num_workers}: must be >= 0 (0 decodes in the main process)")
    if args.fvd:
        from nbp.metrics.protocols import get_protocol

        get_protocol(args.fvd_protocol)  # an unknown name is a mistake, not "no fvd"
    if args.out:
        check_output_file(args.out)
    data = DatasetConfig(**vars(args.data)) if not isinstance(args.data, DatasetConfig) else args.data
    result = evaluate_reconstruction(args.tokenizer, data, args.batch_size, args.limit, args.device, args.fvd,
                                     args.fvd_protocol, args.num_workers)
    if args.out:
        write_json_atomic(args.out, result)
    import json

    print(json.dumps(result, indent=2))
    return 0
