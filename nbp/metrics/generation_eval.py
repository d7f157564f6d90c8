"""What `nbp eval ucf101` and `nbp eval k600` share: loading the generator, sampling flags, shard filling."""

from __future__ import annotations

import sys

import torch

from nbp.devices import add_device_argument
from nbp.errors import UserError
from nbp.files import sha256_file


def add_generation_args(parser) -> None:
    parser.add_argument("--model", type=str, required=True, help="transformer file (model.pt written by training)")
    parser.add_argument("--tokenizer", type=str, required=True, help="tokenizer file the model was trained with")
    parser.add_argument("--detector", type=str, default=None, help="TorchScript I3D or i3d_pretrained_400.pt state dict")
    parser.add_argument("--batch_size", "--batch-size", type=int, default=16, help="videos generated per forward pass")
    parser.add_argument("--shard_size", "--shard-size", type=int, default=256, help="videos per cached shard")
    parser.add_argument("--cache", type=str, default=None, help="folder for generated shards (default: <out>_samples)")
    parser.add_argument("--temperature", type=float, default=None, help="default 1")
    parser.add_argument("--sampling", type=str, default=None,
                        help="named settings: 'released' = the reference evaluation's top-k 16000, top-p 0.9, no guidance")
    parser.add_argument("--top_k", "--top-k", type=int, default=None)
    parser.add_argument("--top_p", "--top-p", type=float, default=None)
    parser.add_argument("--cfg_scale", "--cfg-scale", type=float, default=1.0, help="1 = no classifier-free guidance")
    parser.add_argument("--fps", type=float, default=8, help="frame rate real clips are resampled to")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader worker processes for decoding")
    add_device_argument(parser)
    parser.add_argument("--dtype", type=str, default=None,
                        help="float32 | bfloat16 | float16 for the transformer and the tokenizer "
                             "(default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--seed", type=int, default=0)


def check_generation_args(args) -> None:
    for flag in ("batch_size", "shard_size"):
        if getattr(args, flag) < 1:
            raise UserError(f"--{flag.replace('_', '-')} {getattr(args, flag)}: must be >= 1")
    if args.num_samples < 2:
        raise UserError(f"--num-samples {args.num_samples}: FVD needs at least 2")
    if args.workers < 0:
        raise UserError(f"--workers {args.workers}: must be >= 0 (0 decodes in the main process)")
    if not args.fps > 0:
        raise UserError(f"--fps {args.fps}: must be > 0")
    from nbp.files import check_output_file, check_output_folder
    from nbp.sampling_controls import SamplingControls

    # an unknown --sampling preset or an invalid setting fails here, before any loading
    settings = sampling_settings(args)
    SamplingControls(**{k: v for k, v in settings.items() if k != "dtype"})
    check_output_file(args.out)
    check_output_folder(cache_folder(args), "--cache")


def load_generator(model_path: str, tokenizer_path: str, device: torch.device, dtype=None):
    """(model, tokenizer, checksums) on `device`, checked to fit each other; transformer weights in `dtype`."""
    from nbp.sampling import check_compatible, load_model, load_tokenizer

    model = load_model(model_path, device, dtype)
    tokenizer = load_tokenizer(tokenizer_path, device)
    check_compatible(model, tokenizer)
    return model, tokenizer, {"model_sha256": sha256_file(model_path), "tokenizer_sha256": sha256_file(tokenizer_path)}


def load_checked_generator(args, device: torch.device, condition: str, task: str, min_frames: int):
    """Load the generator and check it makes square videos of enough frames with the wanted condition.

    Returns (model, tokenizer, checksums, (frames, size)).
    """
    from nbp.sampling import pixel_shape

    from nbp.precision import dtype_name, resolve_dtype

    dtype = resolve_dtype(args.dtype, device, "--dtype")
    args.dtype = dtype_name(dtype)  # recorded in the shard metadata, so a resumed run keeps the same precision
    model, tokenizer, checksums = load_generator(args.model, args.tokenizer, device, dtype)
    if model.config.condition != condition:
        wanted = {"class": "a class-conditional model", "frames": "a frame-conditional model (condition='frames')"}
        raise UserError(f"{args.model} is conditioned on {model.config.condition!r}; {task} needs {wanted[condition]}")
    frames, height, width = pixel_shape(tokenizer, model.config)
    if height != width:
        raise UserError(f"{args.model} makes {height}x{width} videos; {task} reads square clips")
    if frames < min_frames:
        raise UserError(f"{args.model} makes {frames}-frame videos; the protocol scores {min_frames}")
    return model, tokenizer, checksums, (frames, height)


def cache_folder(args) -> str:
    """`--cache`, or <out without suffix>_samples."""
    from pathlib import Path

    return args.cache or f"{Path(args.out).with_suffix('')}_samples"


def open_shards(args, meta: dict, rank: int, world: int):
    """The resumable cache of generated videos (`--cache`, default <out>_samples), opened by rank 0."""
    from pathlib import Path

    from nbp.metrics.sample_shards import SampleShards

    cache = cache_folder(args)
    shards = SampleShards(cache, args.num_samples, args.shard_size, meta)
    if rank == 0:
        shards.open()
    barrier(world)
    return shards, cache


def run_fields(args, checksums: dict, shards, cache: str, generated_now: int, world: int, device, started: float) -> dict:
    """Report fields every generation evaluation records: inputs, sampling, cache and run facts."""
    import time

    return {
        "model": args.model,
        "tokenizer": args.tokenizer,
        **checksums,
        "sampling": sampling_settings(args),
        "seed": args.seed,
        "cache": cache,
        "shards": {"total": shards.num_shards, "generated_this_run": generated_now},
        "world_size": world,
        "device": str(device),
        "seconds": round(time.perf_counter() - started, 2),
    }


def sampling_settings(args) -> dict:
    """Keyword arguments of `generate` (dtype None: the device default, as at loading)."""
    from nbp.sampling_controls import apply_preset

    given = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    settings = {"temperature": 1.0, **apply_preset(args.sampling, **given)}
    return {**settings, "cfg_scale": args.cfg_scale, "dtype": getattr(args, "dtype", None)}


def shard_generator(device: torch.device, seed: int, shard: int) -> torch.Generator:
    """Each shard has its own stream, so resumed or multi-rank runs make the same samples."""
    return torch.Generator(device=device).manual_seed(seed * 1_000_003 + shard)


def fill_shards(shards, rank: int, world: int, make_shard) -> int:
    """Generate every missing shard of this rank with `make_shard(index) -> (videos, cond)`; returns how many."""
    from nbp.progress import progress

    todo = shards.missing(rank, world)
    total = sum(len(shards.shard_range(k)) for k in todo)
    with progress(total=total, desc="generating", unit="video") as bar:
        for index in todo:
            videos, cond = make_shard(index)
            shards.write(index, videos, cond)
            bar.update(videos.shape[0])
    return len(todo)


def barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def sum_over_ranks(value: int, world: int) -> int:
    """Total of a per-rank count (e.g. shards generated) across torchrun ranks."""
    if world <= 1:
        return value
    import torch.distributed as dist

    total = torch.tensor([value], dtype=torch.long, device="cuda" if dist.get_backend() == "nccl" else "cpu")
    dist.all_reduce(total)
    return int(total.item())
