"""`nbp bench rolling`: videos longer than the model's window, latent frame by latent frame.

A window model of the paper's UCF-101 layout (5x16x16 latent frames, rows of 16, random weights)
generates 17-, 33- and 65-frame videos (5, 9 and 17 latent frames) with `nbp.rolling`: time to the
first latent frame, total time and the time of each latent frame past the first window (one
re-prefill of the shifted window, then its rows). The same is timed with a rolling cache, the
alternative: shift the cached keys and values by one latent frame instead of recomputing them.
The rolling cache is not what the model was trained on (its cached keys keep the positions and
the attention of the window they were computed in), so it is timed here only, with the share of
tokens on which greedy decoding agrees with the exact re-prefill.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import platform
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp import precision
from nbp.config import PRESETS, NBPConfig
from nbp.devices import add_device_argument, add_threads_argument, pick_device, set_threads, sync
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.rolling import iter_latent_frames, latent_frames_for
from nbp.sampling_controls import SamplingControls, draw

GRID, ROW, CLASSES = (5, 16, 16), (1, 1, 16), 101


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False,
                            description="Measure rolling generation of long videos (JSON on stdout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--preset", type=str, default="tiny", help=f"transformer size ({', '.join(PRESETS)})")
    add_device_argument(parser)
    parser.add_argument("--dtype", type=str, default=None,
                        help=f"{' | '.join(precision.DTYPES)} (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--frames", type=int, nargs="+", default=[17, 33, 65], help="video lengths, 1 + 4k each")
    parser.add_argument("--vocab-size", type=int, default=64000)
    add_threads_argument(parser)
    return parser


def make_model(preset: str, vocab_size: int, device, dtype) -> NBPTransformer:
    config = NBPConfig.from_preset(preset, vocab_size=vocab_size, grid=GRID, block=ROW, condition="class",
                                   num_classes=CLASSES, dropout=0.0, window=GRID[0])
    return precision.cast_weights(NBPTransformer(config).to(device).eval(), dtype)


@torch.no_grad()
def time_re_prefill(model, cond, latent_frames: int, controls, device) -> tuple[dict, torch.Tensor]:
    """nbp.rolling as shipped: seconds to the first latent frame and in all, and the tokens."""
    generator = torch.Generator(device=device).manual_seed(0)
    sync(device)
    started = time.perf_counter()
    frames, first = [], None
    for frame in iter_latent_frames(model, cond, latent_frames, controls=controls, generator=generator):
        frames.append(frame)
        if first is None:
            sync(device)
            first = time.perf_counter() - started
    sync(device)
    total = time.perf_counter() - started
    return {"first_latent_frame_s": round(first, 4), "seconds": round(total, 4)}, torch.stack(frames, 1)


@torch.no_grad()
def rolling_cache_frames(model, cond, latent_frames: int, controls, generator) -> torch.Tensor:
    """The inexact alternative (start-block rows only): after the first window, drop the oldest latent
    frame's keys and values by moving the rest down one latent frame, feed the last row of the newest
    frame, and sample the next frame's rows on that cache."""
    cfg = model.config
    T, hw, L, P = cfg.grid[0], cfg.grid[1] * cfg.grid[2], cfg.block_len, cfg.prefix_len
    B = cond.shape[0]
    cache = model.new_cache(B)
    logits = model.prefill(cond, cache)
    seq = torch.zeros(B, cfg.num_tokens, dtype=torch.long, device=cond.device)
    blocks = cfg.num_tokens // L
    for k in range(blocks):
        seq[:, k * L:(k + 1) * L] = draw(logits, controls, generator)
        if k + 1 < blocks:
            logits = model.step(seq[:, k * L:(k + 1) * L], cache)
    frames = list(cfg.layout.seq_to_grid(seq).unbind(1))
    cache.hold_condition(model._everywhere(model._embed_prefix(cond), torch.zeros(B), B))  # mid-clip from here
    inputs_end = P + L + cfg.num_tokens - L  # the cache holds every input but the newest frame's last row
    for _ in range(T, latent_frames):
        for buffers in (cache.k, cache.v):
            for layer in buffers:
                layer[:, :, P + L:inputs_end - hw] = layer[:, :, P + L + hw:inputs_end].clone()
        cache.pos = inputs_end - hw
        cache.device_pos.fill_(cache.pos)
        seq = torch.cat([seq[:, hw:], torch.zeros_like(seq[:, :hw])], dim=1)
        start = cfg.num_tokens - hw
        logits = model.step(seq[:, start - L:start], cache)
        for k in range(hw // L):
            a = start + k * L
            seq[:, a:a + L] = draw(logits, controls, generator)
            if k + 1 < hw // L:
                logits = model.step(seq[:, a:a + L], cache)
        frames.append(cfg.layout.seq_to_grid(seq)[:, -1])
    return torch.stack(frames, 1)


def time_rolling_cache(model, cond, latent_frames: int, controls, device) -> tuple[float, torch.Tensor]:
    generator = torch.Generator(device=device).manual_seed(0)
    sync(device)
    started = time.perf_counter()
    tokens = rolling_cache_frames(model, cond, latent_frames, controls, generator)
    sync(device)
    return round(time.perf_counter() - started, 4), tokens


def main(argv: list[str], prog: str = "nbp bench rolling") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size}: must be >= 1")
    set_threads(args.threads)
    lengths = [latent_frames_for(n, 4) for n in args.frames]
    if args.preset not in PRESETS:
        raise UserError(f"--preset {args.preset!r} is unknown; valid: {', '.join(PRESETS)}")
    device = pick_device(args.device)
    dtype = precision.resolve_dtype(args.dtype, device, "--dtype")
    model = make_model(args.preset, args.vocab_size, device, dtype)
    cond = torch.arange(args.batch_size, device=device) % CLASSES
    sampled = SamplingControls(temperature=1.0, top_k=16000, top_p=0.9)
    time_re_prefill(model, cond, GRID[0], sampled, device)  # warm-up
    results = []
    for frames, latent in zip(args.frames, lengths):
        timing, _ = time_re_prefill(model, cond, latent, sampled, device)
        row = {"frames": frames, "latent_frames": latent, **timing}
        if latent > GRID[0]:
            cached_s, _ = time_rolling_cache(model, cond, latent, sampled, device)
            window_s = results[0]["seconds"] if results and results[0]["latent_frames"] == GRID[0] else None
            row["rolling_cache_seconds"] = cached_s
            if window_s is not None:
                extra = latent - GRID[0]
                row["per_extra_latent_frame_s"] = round((row["seconds"] - window_s) / extra, 4)
                row["rolling_cache_per_extra_latent_frame_s"] = round((cached_s - window_s) / extra, 4)
        results.append(row)
    greedy = SamplingControls(temperature=0.0)
    longest = max(lengths)
    _, exact = time_re_prefill(model, cond, longest, greedy, device)
    _, shifted = time_rolling_cache(model, cond, longest, greedy, device)
    beyond = slice(GRID[0], None)
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "threads": torch.get_num_threads(), "dtype": str(dtype).replace("torch.", ""),
        "preset": args.preset, "batch_size": args.batch_size, "vocab_size": args.vocab_size,
        "window_grid": list(GRID), "block": list(ROW),
        "results": results,
        "rolling_cache_greedy_agreement": round(float((exact[:, beyond] == shifted[:, beyond]).float().mean()), 4),
    }
    print(json.dumps(report))
    return 0
