"""`nbp bench train`: training throughput (tokens/s) and peak memory of the transformer, as JSON.

    nbp bench train                       # tiny preset on the CPU, every backend, cache vs on the fly
    nbp bench train --device cuda --preset base --grid [5,16,16] --block [1,1,16] --vocab-size 64000 \
        --batch-size 8 --precision bf16 --no-on-the-fly

Each measurement runs in a fresh process, so peak memory is that of one configuration only:
peak resident set size on the CPU, `torch.cuda.max_memory_allocated` on a GPU.

Part 1 (`backends`): forward + backward + AdamW steps on random tokens for each attention backend.
Part 2 (`cache_vs_on_the_fly`): the same training step fed by (a) a token cache on disk, and
(b) video files decoded and encoded by the tokenizer at every step, as the reference
implementation did. A small synthetic dataset, tokenizer (random weights unless --tokenizer
is given: encoding costs the same) and cache are written to a temporary folder first.
Part 3 (`threads_vs_processes`, with --side-by-side N): one process with N threads against N
processes with one thread each, timed over the same window (they wait for each other after the
warm-up): what `nbp demo` gains by training its small transformers side by side on a CPU.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp.devices import add_device_argument, pick_device, sync
from nbp.errors import UserError, first_line


def _peak_memory_mb(device: torch.device) -> tuple[float, str]:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, "process_peak_rss"  # KiB on Linux


def _build(spec: dict, device: torch.device):
    from nbp.optim import build_adamw
    from nbp.config import NBPConfig
    from nbp.model import NBPTransformer

    size = {k: spec[k] for k in ("n_layer", "n_head", "n_embd") if spec.get(k) is not None}
    config = NBPConfig.from_preset(spec["preset"], vocab_size=spec["vocab_size"], grid=tuple(spec["grid"]),
                                   block=tuple(spec["block"]), first_block=spec["first_block"], condition="class",
                                   num_classes=6, attn_backend=spec["backend"], dropout=0.0,
                                   grad_checkpointing=spec["grad_checkpointing"], **size)
    model = NBPTransformer(config).to(device).train()
    return config, model, build_adamw(model, lr=1e-4, weight_decay=0.01)


def _train_step(model, optimizer, config, tokens: torch.Tensor, labels: torch.Tensor, precision: str) -> None:
    from nbp.model import token_cross_entropy

    video = config.layout.grid_to_seq(tokens)
    dtype = torch.bfloat16 if precision == "bf16" else None
    with torch.autocast(tokens.device.type, dtype=dtype, enabled=dtype is not None):
        logits = model(video, labels)
    loss = token_cross_entropy(logits, video)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def _timed_steps(batches, step, warmup: int, steps: int, device: torch.device, barrier=None) -> float:
    """Seconds for `steps` calls of step(batch) after `warmup` untimed ones (batches: an iterator).

    barrier: processes measured side by side all start timing together.
    """
    for _ in range(warmup):
        step(next(batches))
    sync(device)
    if barrier is not None:
        barrier.wait()
    start = time.perf_counter()
    for _ in range(steps):
        step(next(batches))
    sync(device)
    return time.perf_counter() - start


def measure_backend(spec: dict, barrier=None) -> dict:
    """Throughput of one backend on random tokens (runs in its own process)."""
    torch.manual_seed(0)
    device = torch.device(spec["device"])
    config, model, optimizer = _build(spec, device)
    B = spec["batch_size"]

    def random_batches():
        while True:
            yield (torch.randint(0, config.vocab_size, (B, *config.grid), device=device),
                   torch.randint(0, 6, (B,), device=device))

    seconds = _timed_steps(random_batches(), lambda b: _train_step(model, optimizer, config, *b, spec["precision"]),
                           spec["warmup"], spec["steps"], device, barrier)
    tokens = spec["steps"] * B * config.num_tokens
    peak, kind = _peak_memory_mb(device)
    return {"tokens_per_s": round(tokens / seconds, 1), "step_ms": round(1000 * seconds / spec["steps"], 2),
            "peak_memory_mb": round(peak, 1), "peak_memory_kind": kind,
            "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 3)}


def measure_pipeline(spec: dict, barrier=None) -> dict:
    """Training fed from the token cache, or from video files encoded at every step (own process)."""
    from nbp.commands.tokenize import encode_videos
    from nbp.sampling import load_tokenizer
    from nbp.data import DatasetConfig, build_dataset
    from nbp.token_cache import TokenCache

    torch.manual_seed(0)
    device = torch.device(spec["device"])
    config, model, optimizer = _build(spec, device)
    B = spec["batch_size"]
    if spec["source"] == "cache":
        dataset, to_tokens = TokenCache(spec["cache"]), lambda batch: batch["tokens"]
    else:
        tok = load_tokenizer(spec["tokenizer"], device)
        data = DatasetConfig(kind="ucf101", root=spec["data_root"], split="train", frames=spec["frames"],
                             size=spec["size"])
        dataset, to_tokens = build_dataset(data), lambda batch: encode_videos(tok, batch["video"], device)

    def batches():
        while True:
            loader = torch.utils.data.DataLoader(dataset, batch_size=B, shuffle=True, drop_last=True)
            for batch in loader:
                labels = torch.as_tensor(batch["label"]).to(device)
                yield to_tokens(batch).to(device), labels

    seconds = _timed_steps(batches(), lambda b: _train_step(model, optimizer, config, *b, spec["precision"]),
                           spec["warmup"], spec["steps"], device, barrier)
    peak, kind = _peak_memory_mb(device)
    return {"tokens_per_s": round(spec["steps"] * B * config.num_tokens / seconds, 1),
            "step_ms": round(1000 * seconds / spec["steps"], 2), "peak_memory_mb": round(peak, 1),
            "peak_memory_kind": kind}


def _child(fn_name: str, spec: dict, queue, barrier=None) -> None:
    torch.set_num_threads(spec["threads"])
    try:
        queue.put(globals()[fn_name](spec, barrier))
    except Exception as err:  # report, do not hang the parent
        queue.put({"error": f"{type(err).__name__}: {first_line(err)}"})


def run_in_processes(fn_name: str, spec: dict, processes: int = 1) -> list[dict]:
    """`processes` copies of one measurement at the same time, each in a fresh process.

    With more than one they wait for each other after the warm-up, so they are timed together.
    """
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    barrier = ctx.Barrier(processes, timeout=600) if processes > 1 else None
    procs = [ctx.Process(target=_child, args=(fn_name, spec, queue, barrier)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    results = [queue.get() for _ in procs]
    for proc in procs:
        proc.join()
    return results


def run_isolated(fn_name: str, spec: dict) -> dict:
    return run_in_processes(fn_name, spec)[0]


def threads_vs_processes(spec: dict, count: int) -> dict:
    """One process with `count` threads against `count` one-thread processes side by side (part 3)."""
    one = run_isolated("measure_backend", {**spec, "threads": count})
    apart = run_in_processes("measure_backend", {**spec, "threads": 1}, count)
    part = {"one_process": {"threads": count, **one}, "side_by_side": {"processes": count, "threads_each": 1,
                                                                        "runs": apart}}
    rates = [run.get("tokens_per_s") for run in apart]
    if "tokens_per_s" in one and None not in rates:
        part["side_by_side"]["total_tokens_per_s"] = round(sum(rates), 1)
        part["total_speedup"] = round(sum(rates) / one["tokens_per_s"], 2)
    return part


def prepare_pipeline_inputs(folder: Path, tokenizer: str | None, frames: int, size: int, batch_size: int) -> dict:
    """A small synthetic dataset on disk, a tokenizer file and its token cache."""
    from nbp.commands.tokenize import tokenize_dataset
    from nbp.data import DatasetConfig
    from nbp.data.synthetic import write_synthetic_dataset
    from tokenizer import TokenizerConfig, VideoTokenizer

    per_class = max(4, -(-batch_size * 2 // 6))  # at least two batches of training videos
    root = write_synthetic_dataset(folder / "videos", videos_per_class=per_class * 2, frames=frames, size=size)
    if tokenizer is None:
        tokenizer = str(folder / "tokenizer.pt")
        VideoTokenizer(TokenizerConfig.from_preset("synthetic")).save(tokenizer)
    data = DatasetConfig(kind="ucf101", root=str(root), split="train", frames=frames, size=size)
    meta = tokenize_dataset(tokenizer, data, folder / "cache", batch_size=8, progress=False)
    return {"data_root": str(root), "tokenizer": tokenizer, "cache": str(folder / "cache"),
            "grid": list(meta.grid), "vocab_size": meta.vocab_size}


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Training throughput and peak memory (JSON on stdout).")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--preset", type=str, default="tiny")
    add_device_argument(parser)
    parser.add_argument("--backends", type=list[str], default=["sdpa", "flex", "xformers"])
    parser.add_argument("--grid", type=list[int], default=[5, 8, 8], help="latent grid of part 1 (T', H', W')")
    parser.add_argument("--block", type=list[int], default=[1, 1, 8])
    parser.add_argument("--first-block", type=str, default="hybrid")
    parser.add_argument("--vocab-size", type=int, default=1000)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10, help="timed steps per measurement")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before timing")
    parser.add_argument("--precision", type=str, default="fp32", help="fp32 or bf16 (autocast)")
    parser.add_argument("--grad-checkpointing", type=bool, default=False)
    parser.add_argument("--n-layer", type=int | None, default=None, help="override the preset's depth")
    parser.add_argument("--n-head", type=int | None, default=None, help="override the preset's heads")
    parser.add_argument("--n-embd", type=int | None, default=None, help="override the preset's width")
    parser.add_argument("--side-by-side", type=int, default=0,
                        help="part 3: one process with N threads against N one-thread processes (0: skip)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--on-the-fly", type=bool, default=True, help="also measure cache vs on-the-fly (part 2)")
    parser.add_argument("--tokenizer", type=str | None, default=None, help="tokenizer file for part 2")
    parser.add_argument("--frames", type=int, default=17)
    parser.add_argument("--size", type=int, default=32, help="pixel size of the part 2 videos")
    return parser


def main(argv: list[str], prog: str = "nbp bench train") -> int:
    from nbp.attention import available_backends

    args = build_parser(prog).parse_args(argv)
    if args.precision not in ("fp32", "bf16"):
        raise UserError(f"--precision {args.precision!r} is invalid; valid: fp32, bf16")
    if min(args.steps, args.batch_size) < 1 or args.warmup < 0:
        raise UserError("--steps and --batch-size must be >= 1 and --warmup >= 0")
    if args.side_by_side < 0 or args.side_by_side == 1:
        raise UserError(f"--side-by-side {args.side_by_side} is invalid; give 0 (skip) or a process count of 2 or more")
    device = pick_device(args.device)
    spec = dict(preset=args.preset, device=str(device), grid=args.grid, block=args.block,
                first_block=args.first_block, vocab_size=args.vocab_size, batch_size=args.batch_size,
                steps=args.steps, warmup=args.warmup, precision=args.precision,
                grad_checkpointing=args.grad_checkpointing, threads=args.threads, n_layer=args.n_layer,
                n_head=args.n_head, n_embd=args.n_embd)
    runnable = available_backends(device)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "threads": args.threads,
              "settings": {k: v for k, v in spec.items() if k not in ("device", "threads")}, "backends": {}}
    report["settings"]["tokens_per_sample"] = (args.grid[0] * args.grid[1] * args.grid[2])
    for backend in args.backends:
        if backend not in runnable:
            report["backends"][backend] = {"skipped": f"not available on {device.type} (available: {runnable})"}
            continue
        report["backends"][backend] = run_isolated("measure_backend", {**spec, "backend": backend})
        print(f"bench train: {backend} done", file=sys.stderr)

    if args.on_the_fly:
        with tempfile.TemporaryDirectory(prefix="nbp_bench_train_") as tmp:
            inputs = prepare_pipeline_inputs(Path(tmp), args.tokenizer, args.frames, args.size, args.batch_size)
            pipe = {**spec, **inputs, "backend": "auto", "frames": args.frames, "size": args.size}
            cache = run_isolated("measure_pipeline", {**pipe, "source": "cache"})
            fly = run_isolated("measure_pipeline", {**pipe, "source": "on_the_fly"})
        part = {"grid": inputs["grid"], "video": [args.frames, args.size, args.size],
                "tokenizer": args.tokenizer or "synthetic preset, random weights", "from_cache": cache,
                "on_the_fly": fly}
        if "tokens_per_s" in cache and "tokens_per_s" in fly:
            part["cache_speedup"] = round(cache["tokens_per_s"] / fly["tokens_per_s"], 2)
        report["cache_vs_on_the_fly"] = part
    if args.side_by_side > 1:
        report["threads_vs_processes"] = threads_vs_processes({**spec, "backend": "auto"}, args.side_by_side)
    print(json.dumps(report, indent=2))
    return 0
