"""`nbp bench tokenizer`: encode and decode speed (clips/s) and peak memory of a tokenizer; JSON on stdout.

    nbp bench tokenizer --preset ucf101 --frames 17 --size 128 --batch 1 --rounds 3
    nbp bench tokenizer --tokenizer runs/tokenizer_synthetic/tokenizer.pt --size 32

Weights are random unless `--tokenizer` gives a file (speed does not depend on them). On a GPU
the default dtype is bf16 autocast (the quantizer stays float32). Each phase gets `--warmup` untimed
calls (default 1), then the median of `--rounds` timed calls is reported.
"""

from __future__ import annotations

import json
import platform
import statistics
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.devices import add_device_argument, pick_device, sync
from nbp.errors import UserError
from tokenizer import TokenizerConfig, VideoTokenizer

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Tokenizer encode/decode clips/s (JSON).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--preset", type=str, default="ucf101", help="synthetic, ucf101 or k600 (random weights)")
    parser.add_argument("--tokenizer", type=str | None, default=None, help="a tokenizer file instead of a preset")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls before timing (0: time the first call)")
    add_device_argument(parser)
    parser.add_argument("--dtype", type=str, default="auto", help="auto (bf16 on GPU, fp32 on CPU), fp32, bf16, fp16")
    return parser


def time_call(fn, device: torch.device, rounds: int, warmup: int):
    """(median seconds of `rounds` calls after `warmup` untimed calls, the last result)."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        out = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def main(argv: list[str], prog: str = "nbp bench tokenizer") -> int:
    args = build_parser(prog).parse_args(argv)
    if min(args.frames, args.size, args.batch, args.rounds) < 1 or args.warmup < 0:
        raise UserError("--frames, --size, --batch and --rounds must all be >= 1, --warmup >= 0")
    device = pick_device(args.device)
    dtype_name = args.dtype if args.dtype != "auto" else ("bf16" if device.type == "cuda" else "fp32")
    if dtype_name not in DTYPES:
        raise UserError(f"--dtype {args.dtype}; valid: auto, {', '.join(DTYPES)}")

    tok = VideoTokenizer.load(args.tokenizer) if args.tokenizer else VideoTokenizer(TokenizerConfig.from_preset(args.preset))
    tok = tok.to(device).eval()
    grid = tok.latent_shape(args.frames, args.size, args.size)
    video = torch.rand(args.batch, 3, args.frames, args.size, args.size, device=device) * 2 - 1
    autocast = torch.autocast(device.type, dtype=DTYPES[dtype_name], enabled=dtype_name != "fp32")
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    with torch.inference_mode(), autocast:
        encode_s, ids = time_call(lambda: tok.encode(video), device, args.rounds, args.warmup)
        decode_s, _ = time_call(lambda: tok.decode(ids), device, args.rounds, args.warmup)

    result = {
        "tokenizer": args.tokenizer or f"preset:{args.preset} (random weights)",
        "params_m": round(sum(p.numel() for p in tok.parameters()) / 1e6, 2),
        "clip": [args.frames, args.size, args.size],
        "grid": list(grid),
        "batch": args.batch,
        "rounds": args.rounds,
        "warmup": args.warmup,
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({platform.processor() or platform.machine()})",
        "threads": torch.get_num_threads(),
        "dtype": dtype_name,
        "encode_clips_per_s": round(args.batch / encode_s, 3),
        "decode_clips_per_s": round(args.batch / decode_s, 3),
        "encode_s_per_batch": round(encode_s, 4),
        "decode_s_per_batch": round(decode_s, 4),
    }
    if device.type == "cuda":
        result["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    print(json.dumps(result, indent=2))
    return 0
