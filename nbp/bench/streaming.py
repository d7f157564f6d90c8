"""`nbp bench streaming`: time to first frame and frames/s of `stream(...)` for videos of several lengths,
and the streaming decoder's cost per latent frame; JSON on stdout.

    nbp bench streaming                                        # the demo's sizes, random weights
    nbp bench streaming --frames 17 33 65 129
    nbp bench streaming --preset base --tokenizer-preset ucf101 --size 128 --device cuda
    nbp bench streaming --model runs/nbp/model.pt --tokenizer runs/tokenizer/tokenizer.pt

Random weights unless files are given (speed does not depend on them). The transformer is a window
model (NBPConfig.window) over the tokenizer's grid of a --window-frames clip, so longer videos slide
the window; `--preset demo` is configs/nbp/synthetic.yaml's model (its whole first latent frame token
by token), the other presets the paper's layout (rows, one hybrid first block).
For each length: the median over --rounds (each round runs every length in turn) of the seconds to the
first frame, the seconds to the last, and the seconds `generate` takes for the same video (what a user
waits without streaming).
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp import precision
from nbp.config import PRESETS, NBPConfig
from nbp.devices import add_device_argument, add_threads_argument, pick_device, set_threads, sync
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.rolling import latent_frames_for
from nbp.sampling import generate, load_model, load_tokenizer
from nbp.streaming import stream
from tokenizer import TokenizerConfig, VideoTokenizer
from tokenizer.streaming import StreamingDecoder

# configs/nbp/synthetic.yaml's transformer
DEMO = dict(n_layer=2, n_head=4, n_embd=64, class_every_position=True)
CLASSES = 6


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False,
                            description="Streaming: time to first frame and frames/s by video length (JSON on stdout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33, 65], help="video lengths, 1 + 4k each")
    parser.add_argument("--preset", type=str, default="demo", help=f"transformer: demo, {', '.join(PRESETS)}")
    parser.add_argument("--tokenizer-preset", type=str, default="synthetic", help="synthetic, ucf101, k600, magvit2")
    parser.add_argument("--size", type=int, default=32, help="frame height and width in pixels")
    parser.add_argument("--window-frames", type=int, default=17, help="pixel frames of the transformer's window")
    parser.add_argument("--model", type=str, default=None, help="a model file instead of random weights")
    parser.add_argument("--tokenizer", type=str, default=None, help="a tokenizer file instead of random weights")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3, help="timed runs per length (the median is reported)")
    add_device_argument(parser)
    parser.add_argument("--dtype", type=str, default=None,
                        help=f"{' | '.join(precision.DTYPES)} (default: bfloat16 on CUDA, float32 on CPU)")
    add_threads_argument(parser)
    return parser


def check_args(args) -> None:
    if args.preset != "demo" and args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset!r} is invalid; valid: demo, {', '.join(PRESETS)}")
    for name in ("batch_size", "rounds", "size", "window_frames"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name.replace('_', '-')} {getattr(args, name)} is invalid; use >= 1")
    if bool(args.model) != bool(args.tokenizer):
        raise UserError("--model and --tokenizer go together (the model's tokens need its tokenizer)")


def make_tokenizer(args, device) -> VideoTokenizer:
    if args.tokenizer:
        return load_tokenizer(args.tokenizer, device)
    torch.manual_seed(0)
    return VideoTokenizer(TokenizerConfig.from_preset(args.tokenizer_preset)).to(device).eval()


def make_model(args, tokenizer, device, dtype) -> NBPTransformer:
    if args.model:
        return load_model(args.model, device, dtype)
    grid = tokenizer.latent_shape(args.window_frames, args.size, args.size)
    layout = dict(grid=grid, block=(1, 1, grid[2]), first_block="hybrid", window=grid[0])
    if args.preset == "demo":
        config = NBPConfig.from_preset("tiny", **DEMO, **layout, hybrid_blocks=grid[1],
                                       vocab_size=tokenizer.vocab_size, num_classes=CLASSES, dropout=0.0)
    else:
        config = NBPConfig.from_preset(args.preset, **layout, vocab_size=tokenizer.vocab_size,
                                       num_classes=CLASSES, dropout=0.0)
    torch.manual_seed(0)
    return precision.cast_weights(NBPTransformer(config).to(device).eval(), dtype)


def condition(model, batch: int, device):
    if model.config.condition == "class":
        return torch.arange(batch, device=device) % model.config.num_classes, None
    if model.config.condition == "frames":
        raise UserError("--model is frames-conditioned; this benchmark times class-conditional and "
                        "unconditional models")
    return None, batch


def time_stream(model, tokenizer, cond, num, frames: int, dtype, device) -> tuple[float, float]:
    """(seconds to the first frame, seconds to the last) of one streamed video."""
    sync(device)
    started = time.perf_counter()
    pieces = stream(model, tokenizer, cond, num, frames=frames, seed=0, dtype=dtype)
    next(pieces)
    sync(device)
    first_s = time.perf_counter() - started
    for _ in pieces:
        pass
    sync(device)
    return first_s, time.perf_counter() - started


def time_generate(model, tokenizer, cond, num, frames: int, dtype, device) -> float:
    sync(device)
    started = time.perf_counter()
    generate(model, tokenizer, cond, num, frames=frames, seed=0, dtype=dtype)
    sync(device)
    return time.perf_counter() - started


@torch.no_grad()
def decoder_costs(tokenizer, latent: int, batch: int, grid_hw, rounds: int, dtype, device) -> dict:
    """Seconds of each push of the streaming decoder over `latent` latent frames (median over rounds),
    against decoding the clip so far again (what a decoder without state would do at every latent frame)."""
    ids = torch.randint(tokenizer.vocab_size, (batch, latent, *grid_hw), generator=torch.Generator().manual_seed(0))
    ids = ids.to(device)
    StreamingDecoder(tokenizer, dtype).push(ids[:, :2])  # warm-up
    runs = [_push_seconds(tokenizer, ids, dtype, device) for _ in range(rounds)]
    pushes = [statistics.median(column) for column in zip(*runs)]
    redecode = {t: round(statistics.median(_decode_seconds(tokenizer, ids[:, :t], dtype, device) for _ in range(rounds)), 5)
                for t in sorted({2, (latent + 1) // 2, latent})}
    later = pushes[1:]
    quarter = max(1, len(later) // 4)
    return {
        "latent_frames": latent,
        "first_push_s": round(pushes[0], 5),
        "push_s_median_first_quarter": round(statistics.median(later[:quarter]), 5),
        "push_s_median_last_quarter": round(statistics.median(later[-quarter:]), 5),
        "push_s": [round(p, 5) for p in pushes],
        "whole_clip_decode_s_by_latent_frames": redecode,
    }


def _push_seconds(tokenizer, ids, dtype, device) -> list[float]:
    decoder, seconds = StreamingDecoder(tokenizer, dtype), []
    for t in range(ids.shape[1]):
        sync(device)
        started = time.perf_counter()
        decoder.push(ids[:, t])
        sync(device)
        seconds.append(time.perf_counter() - started)
    return seconds


def _decode_seconds(tokenizer, ids, dtype, device) -> float:
    sync(device)
    started = time.perf_counter()
    tokenizer.decode(ids, dtype=dtype)
    sync(device)
    return time.perf_counter() - started


def length_row(frames: int, streamed: list, generated: list, batch: int, temporal_downsample: int) -> dict:
    first_s = statistics.median(r[0] for r in streamed)
    total_s = statistics.median(r[1] for r in streamed)
    return {
        "frames": frames,
        "latent_frames": latent_frames_for(frames, temporal_downsample),
        "time_to_first_frame_s": round(first_s, 4),
        "time_to_first_frame_s_each_round": [round(r[0], 4) for r in streamed],
        "total_s": round(total_s, 4),
        "frames_per_s": round(batch * frames / total_s, 3),
        "frames_per_s_after_first": round(batch * (frames - 1) / max(total_s - first_s, 1e-9), 3),
        "generate_s": round(statistics.median(generated), 4),
    }


def main(argv: list[str], prog: str = "nbp bench streaming") -> int:
    args = build_parser(prog).parse_args(argv)
    check_args(args)
    set_threads(args.threads)
    device = pick_device(args.device)
    dtype = precision.resolve_dtype(args.dtype, device, "--dtype")
    tokenizer = make_tokenizer(args, device)
    s = tokenizer.config.temporal_downsample
    lengths = [latent_frames_for(n, s) for n in [args.window_frames, *args.frames]]  # one line if one is invalid
    model = make_model(args, tokenizer, device, dtype)
    cond, num = condition(model, args.batch_size, device)
    time_stream(model, tokenizer, cond, num, 1 + s * (model.config.grid[0] - 1), dtype, device)  # warm-up

    # rounds go over every length in turn, so a machine that gets busier mid-run slows all lengths alike
    streamed = {frames: [] for frames in args.frames}
    generated = {frames: [] for frames in args.frames}
    for _ in range(args.rounds):
        for frames in args.frames:
            streamed[frames].append(time_stream(model, tokenizer, cond, num, frames, dtype, device))
            generated[frames].append(time_generate(model, tokenizer, cond, num, frames, dtype, device))
    by_length = [length_row(frames, streamed[frames], generated[frames], args.batch_size, s) for frames in args.frames]
    for row in by_length:
        print(f"{row['frames']} frames: first after {row['time_to_first_frame_s']} s, all after {row['total_s']} s "
              f"(generate: {row['generate_s']} s)", file=sys.stderr, flush=True)

    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "dtype": precision.dtype_name(dtype),
        "batch_size": args.batch_size,
        "rounds": args.rounds,
        "model": args.model or f"preset:{args.preset} (random weights)",
        "tokenizer": args.tokenizer or f"preset:{args.tokenizer_preset} (random weights)",
        "params": model.num_params(),
        "grid": list(model.config.grid),
        "window": model.config.window,
        "model_calls_per_window": model.config.decode_steps,
        "by_length": by_length,
        "decoder": decoder_costs(tokenizer, max(lengths), args.batch_size, model.config.grid[1:], args.rounds,
                                 dtype, device),
    }
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    print(json.dumps(report, indent=2))
    return 0
