"""`nbp bench sampling`: how fast block-parallel decoding is, versus next-token prediction and versus no cache.

Random weights (speed does not depend on them), the paper's UCF-101 layout:
17x128x128 -> 5x16x16 = 1280 tokens, rows of 16 with a hybrid first block
(95 model calls), against the same model with block (1, 1, 1) (1280 calls).
The official-* presets are the released models' exact layouts (nbp/official/):
official-ucf-* with its text prefix, placeholders and 96016-row shared vocabulary,
official-k600-* predicting 3 latent frames from 2 (48 calls); --size tiny keeps
the layout with the tiny widths, for a CPU.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import json
import platform
import sys
import time

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp import precision
from nbp.config import PRESETS, NBPConfig
from nbp.devices import add_device_argument, add_threads_argument, pick_device, set_threads, sync
from nbp.errors import UserError
from nbp.model import NBPTransformer
from nbp.sampler import pad_rows, sample_sequence
from nbp.sampling_controls import SamplingControls, draw

GRID, ROW, FRAMES, RESOLUTION = (5, 16, 16), (1, 1, 16), 17, 128
VOCAB, CLASSES = 64000, 101
# the released models: (layout, size); the UCF-101 one shares its vocabulary with 32000 LLaMA text ids
OFFICIAL = {f"official-{task}-{size}": (task, size) for task in ("ucf", "k600") for size in ("base", "3b")}
UCF_TEXT_TOKENS, UCF_VIDEO_OFFSET = 8, 32000 + ROW[2]


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Measure block-parallel sampling speed (JSON on stdout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--preset", type=str, default="tiny",
                        help=f"transformer size ({', '.join(PRESETS)}) or a released model ({', '.join(OFFICIAL)})")
    parser.add_argument("--size", type=str, default=None,
                        help="official-* presets only: another size for the same layout (e.g. tiny on a CPU)")
    add_device_argument(parser)
    parser.add_argument("--dtype", type=str, default=None,
                        help=f"{' | '.join(precision.DTYPES)} (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--batch-size", type=int, default=1)
    parser.add_argument("--compile", type=bool, default=False, help="torch.compile the decode step")
    parser.add_argument("--ntp", type=bool, default=True, help="also time next-token prediction (1280 calls)")
    parser.add_argument("--no-cache", type=bool, default=True,
                        help="also time NBP without a cache (full forward at every step)")
    parser.add_argument("--decode", type=bool, default=True,
                        help="also time tokenizer decoding (ucf101 tokenizer preset, random weights)")
    add_threads_argument(parser, "CPU threads for torch (default: torch's choice); 1 is fastest for tiny models "
                                 "on a busy CPU")
    parser.add_argument("--vocab-size", type=int, default=VOCAB,
                        help="tokenizer vocabulary (64000 = the paper's FSQ); the output head grows with it")
    parser.add_argument("--split", type=bool, default=True,
                        help="also split one decoding call into model / output head / sampling time")
    parser.add_argument("--top-k", type=int, default=16000, help="the paper's sampling defaults")
    parser.add_argument("--top-p", type=float, default=0.9)
    return parser


def make_config(preset: str, block, vocab_size: int = VOCAB, size: str | None = None) -> NBPConfig:
    """The paper's UCF-101 setting (class-conditional, hybrid first block), or a released model's layout."""
    if preset in OFFICIAL:
        return official_config(*OFFICIAL[preset], block, vocab_size, size)
    return NBPConfig.from_preset(preset, vocab_size=vocab_size, grid=GRID, block=block, first_block="hybrid",
                                 condition="class", num_classes=CLASSES, dropout=0.0)


def official_config(task: str, size: str, block, vocab_size: int, size_override: str | None) -> NBPConfig:
    size = size_override or size
    if task == "k600":
        return NBPConfig.from_preset(size, vocab_size=vocab_size, grid=GRID, block=block, condition="frames",
                                     context_frames=2, first_block="context", dropout=0.0)
    # the NTP twin (block 1) has no placeholders to add: its first block is one token
    return NBPConfig.from_preset(size, vocab_size=vocab_size, grid=GRID, block=block, first_block="hybrid",
                                 condition="class", num_classes=CLASSES, class_text_len=UCF_TEXT_TOKENS,
                                 hybrid_placeholders=block != (1, 1, 1), video_offset=UCF_VIDEO_OFFSET, dropout=0.0)


def make_model(preset: str, block, device, dtype, vocab_size: int = VOCAB, size: str | None = None) -> NBPTransformer:
    model = NBPTransformer(make_config(preset, block, vocab_size, size)).to(device=device).eval()
    return precision.cast_weights(model, dtype)


def bench_condition(config: NBPConfig, batch: int, device) -> torch.Tensor:
    """Class ids, or random context tokens for a frame-prediction model."""
    if config.condition == "frames":
        gen = torch.Generator().manual_seed(0)
        return torch.randint(config.vocab_size, (batch, config.prefix_len), generator=gen).to(device)
    return torch.arange(batch, device=device) % config.num_classes


def _progress(what: str, result: dict) -> None:
    """One line per measurement on stderr, so a long run shows where it is (stdout stays pure JSON)."""
    print(f"{what}: {result.get('model_calls')} calls, {result['seconds']} s", file=sys.stderr, flush=True)


def time_sampling(model, batch: int, controls, compile: bool, decoder: str = "cache") -> dict:
    """One warm-up pass of a few steps is not enough for compile; so warm up with a full run when compiling."""
    device = next(model.parameters()).device
    cond = bench_condition(model.config, batch, device)
    generator = torch.Generator(device=device).manual_seed(0)
    if compile:
        sample_sequence(model, cond, batch, controls, generator, decoder=decoder, compiled=compile)
    sync(device)
    seq, stats = sample_sequence(model, cond, batch, controls, generator, decoder=decoder, compiled=compile)
    return {
        "model_calls": stats.model_calls,
        "seconds": round(stats.seconds, 4),
        "tokens_per_s": round(stats.tokens_per_second, 1),
        "frames_per_s": round(batch * FRAMES / stats.seconds, 3),
        "_grid": model.config.layout.seq_to_grid(seq),
    }


def _best_of(fn, device, repeats: int = 5) -> float:
    """Fastest of a few timed runs (the least disturbed by other work on the machine)."""
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        started = time.perf_counter()
        fn()
        sync(device)
        best = min(best, time.perf_counter() - started)
    return best


@torch.no_grad()
def split_call(model, batch: int, controls, compile: bool) -> dict:
    """Seconds of one whole-block call, split into model body, output head and sampling.

    The step is timed over every block step of a real sequence on the model's own cache
    (the one sampling used, so no new graphs); the head and the draw are timed alone on
    a block of the same shape; the body is the step minus the head.
    """
    device = next(model.parameters()).device
    cache = model.setup_cache(batch)
    rows, block, first = cache.batch_size, model.block_len, model.config.token_by_token
    cond = pad_rows(bench_condition(model.config, batch, device), rows)
    tokens = torch.zeros(rows, block, dtype=torch.long, device=device)

    def all_block_steps():
        model.prefill(cond, cache)
        for _ in range(first - 1):  # hybrid: the start block goes in one token at a time
            model.step(tokens[:, :1], cache, compiled=compile)
        while cache.pos < model.seq_len:
            model.step(tokens, cache, compiled=compile)

    block_steps = (model.seq_len - model.prefix_len - first) // block
    step_s = _best_of(all_block_steps, device, repeats=2) / block_steps
    hidden = torch.randn(rows, block, model.config.n_embd, device=device, dtype=cache.dtype)
    head_s = _best_of(lambda: model._logits(hidden), device)
    logits = model._logits(hidden)[:batch].float()
    generator = torch.Generator(device=device).manual_seed(0)
    draw_s = _best_of(lambda: draw(logits, controls, generator, model.draw_buffers), device)
    return {"tokens_per_call": block, "model_s": round(step_s - head_s, 6), "head_s": round(head_s, 6),
            "sampling_s": round(draw_s, 6), "call_s": round(step_s + draw_s, 6)}


def time_decode(grid: torch.Tensor, device, dtype, preset: str = "ucf101") -> float:
    from tokenizer import TokenizerConfig, VideoTokenizer

    tokenizer = VideoTokenizer(TokenizerConfig.from_preset(preset)).to(device=device).eval()
    grid = grid.clamp_max(tokenizer.vocab_size - 1)
    with torch.no_grad():
        tokenizer.decode(grid[:1], dtype=dtype)  # warm-up (allocations, kernel selection)
        sync(device)
        started = time.perf_counter()
        tokenizer.decode(grid, dtype=dtype)
        sync(device)
    return time.perf_counter() - started


def main(argv: list[str], prog: str = "nbp bench sampling") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.preset not in PRESETS and args.preset not in OFFICIAL:
        raise UserError(f"--preset {args.preset!r} is invalid; valid: {', '.join([*PRESETS, *OFFICIAL])}")
    if args.size is not None and (args.preset not in OFFICIAL or args.size not in PRESETS):
        raise UserError(f"--size {args.size!r} needs an official-* preset and one of {', '.join(PRESETS)}")
    device = pick_device(args.device)
    if args.batch_size < 1:
        raise UserError(f"--batch-size {args.batch_size} is invalid; use >= 1")
    set_threads(args.threads)
    dtype = precision.resolve_dtype(args.dtype, device, "--dtype")
    precision.enable_tf32(device, dtype)
    controls = SamplingControls(top_k=args.top_k, top_p=args.top_p)
    batch = args.batch_size

    nbp_model = make_model(args.preset, ROW, device, dtype, args.vocab_size, args.size)
    sample_sequence(nbp_model, bench_condition(nbp_model.config, batch, device), batch, controls)  # warm-up
    nbp = time_sampling(nbp_model, batch, controls, args.compile)
    _progress("nbp", nbp)
    grid = nbp.pop("_grid")
    report = {
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "preset": args.preset,
        "size": args.size,
        "params": nbp_model.num_params(),
        "vocab_size": args.vocab_size,
        "dtype": precision.dtype_name(dtype),
        "batch_size": batch,
        "compile": args.compile,
        "sampling": {"top_k": args.top_k, "top_p": args.top_p, "temperature": 1.0},
        "layout": {"frames": FRAMES, "resolution": RESOLUTION, "grid": list(GRID), "tokens": nbp_model.num_tokens},
        "nbp": {"block": list(ROW), "first_block": nbp_model.config.first_block, **nbp},
    }
    if args.ntp:
        ntp_model = make_model(args.preset, (1, 1, 1), device, dtype, args.vocab_size, args.size)
        ntp = time_sampling(ntp_model, batch, controls, args.compile)
        ntp.pop("_grid")
        _progress("ntp", ntp)
        report["ntp"] = {"block": [1, 1, 1], **ntp}
        # the headline number: wall-clock of next-token over next-block sampling
        report["speedup"] = round(ntp["seconds"] / nbp["seconds"], 2)
    if args.split:
        report["nbp"]["per_call"] = split_call(nbp_model, batch, controls, args.compile)
        if "ntp" in report:
            report["ntp"]["per_call"] = split_call(ntp_model, batch, controls, args.compile)
        print(f"per call: {json.dumps({k: report[k]['per_call'] for k in ('nbp', 'ntp') if k in report})}",
              file=sys.stderr, flush=True)
    if args.no_cache:
        recompute = time_sampling(nbp_model, batch, controls, compile=False, decoder="recompute")
        recompute.pop("_grid")
        _progress("nbp without cache", recompute)
        report["cache"] = {
            "static_cache_seconds": nbp["seconds"],
            "no_cache_seconds": recompute["seconds"],
            "speedup": round(recompute["seconds"] / nbp["seconds"], 2),
        }
    if args.decode:
        # the released models decode with the reference MAGVIT-v2 (370M parameters)
        decode_s = time_decode(grid, device, dtype, "magvit2" if args.preset in OFFICIAL else "ucf101")
        report["decode_seconds"] = round(decode_s, 4)
        report["nbp"]["frames_per_s_with_decode"] = round(batch * FRAMES / (nbp["seconds"] + decode_s), 3)
        if "ntp" in report:
            report["ntp"]["frames_per_s_with_decode"] = round(batch * FRAMES / (report["ntp"]["seconds"] + decode_s), 3)
    if device.type == "cuda":
        report["peak_memory_gib"] = round(torch.cuda.max_memory_allocated(device) / 2**30, 3)
    print(json.dumps(report, indent=2))
    return 0
