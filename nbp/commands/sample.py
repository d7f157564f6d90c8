"""`nbp sample`: generate videos from a transformer checkpoint and a tokenizer.

    nbp sample --model runs/nbp/model.pt --tokenizer runs/tokenizer/tokenizer.pt \
        --class-names OneSquare TwoCircles --num 4 --out runs/samples

writes one mp4 per sample (`TwoCircles_03.mp4` when class-conditional), a PNG
grid and a GIF of all samples, and `samples.json` (settings, checkpoint
checksums, timings). With --stream, each mp4 grows as its frames are generated
(as `NAME.partial.mp4`, renamed to `NAME.mp4` when complete).
"""

from __future__ import annotations

import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from jsonargparse import ActionConfigFile, ArgumentParser

from nbp import precision
from nbp.data.datasets import read_class_index
from nbp.devices import add_device_argument, pick_device
from nbp.errors import UserError
from nbp.files import check_output_folder, sha256_file, write_json_atomic
from nbp.progress import progress
from nbp.rolling import check_length
from nbp.sampling import (check_compatible, context_pixel_frames, generate_tokens, latent_length, load_model,
                          load_tokenizer, pixel_shape, tokens_to_video)
from nbp.sampling_controls import SamplingControls, apply_preset
from nbp.streaming import stream_frames


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Generate videos with a trained next-block-prediction model.")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_argument("--model", type=str, required=True, help="model.pt ({config, state_dict}) or a Lightning .ckpt")
    parser.add_argument("--tokenizer", type=str, required=True, help="tokenizer file (VideoTokenizer.save)")
    parser.add_argument("--out", type=str, required=True, help="output folder")
    parser.add_argument("--classes", type=int, nargs="+", default=None, help="class ids (default: every class)")
    parser.add_argument("--class-names", type=str, nargs="+", default=None, help="class names instead of ids")
    parser.add_argument("--class-index", type=str, default=None,
                        help="classInd.txt ('1 Name' per line) giving the class names of a UCF-style dataset")
    parser.add_argument("--context", type=str, nargs="+", default=None,
                        help="videos whose first frames a frames-conditioned model continues")
    parser.add_argument("--frames", type=int, default=None,
                        help="frames per video, 1 + 4k (default: the model's length; longer needs a window model)")
    parser.add_argument("--num", type=int, default=1, help="samples per class / per context video / in total")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--cfg", type=float, default=1.0, help="guidance scale; 1 = no guidance")
    parser.add_argument("--cfg-ramp", type=bool, default=False, help="raise the scale linearly from 1 over the steps")
    parser.add_argument("--top-k", type=int, default=None)
    parser.add_argument("--top-p", type=float, default=None)
    parser.add_argument("--temperature", type=float, default=None, help="0 = greedy (default 1)")
    parser.add_argument("--sampling", type=str, default=None,
                        help="named settings: 'released' = the reference evaluation's top-k 16000, top-p 0.9")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fps", type=int, default=8, help="frame rate of the written videos (and of --context reading)")
    add_device_argument(parser)
    parser.add_argument("--compile", type=bool, default=False, help="torch.compile the decode step (CUDA graphs on GPU)")
    parser.add_argument("--dtype", type=str, default=None,
                        help="float32 | bfloat16 | float16 (default: bfloat16 on CUDA, float32 on CPU)")
    parser.add_argument("--stream", type=bool, default=False,
                        help="write each mp4 while its frames are generated (NAME.partial.mp4 until complete)")
    return parser


def class_names_for(config, class_index: str | None) -> list[str] | None:
    if config.class_names and not class_index:  # a model that knows its classes (a converted UCF-101 one)
        return list(config.class_names)
    if class_index:
        if not Path(class_index).is_file():
            raise UserError(f"--class-index {class_index} does not exist; pass a classInd.txt")
        names = read_class_index(Path(class_index))
    else:
        from nbp.data.synthetic import CLASS_NAMES

        names = list(CLASS_NAMES) if config.num_classes == len(CLASS_NAMES) else None
    if names is not None and len(names) != config.num_classes:
        raise UserError(f"{class_index} lists {len(names)} classes; the model has {config.num_classes}")
    return names


# ---------------------------------------------------------------- what to sample


def class_jobs(args, config) -> list[tuple[int, str]]:
    """(class id, file stem prefix) for every sample, classes in the order given."""
    names = class_names_for(config, args.class_index)
    if args.class_names:
        if names is None:
            raise UserError("--class-names needs --class-index classInd.txt for this model (or use --classes)")
        unknown = [n for n in args.class_names if n not in names]
        if unknown:
            raise UserError(f"unknown class name {unknown[0]!r}; valid: {', '.join(names)}")
        ids = [names.index(n) for n in args.class_names]
    else:
        ids = args.classes if args.classes is not None else list(range(config.num_classes))
    for i in ids:
        if not 0 <= i < config.num_classes:
            raise UserError(f"--classes {i} is out of range; valid: 0..{config.num_classes - 1}")
    label = (lambda i: names[i]) if names else (lambda i: f"class{i:03d}")
    return [(i, f"{label(i)}_{n:02d}") for i in ids for n in range(args.num)]


def read_contexts(args, tokenizer, config) -> list[tuple[torch.Tensor, str]]:
    from nbp.data.clip_reader import VideoReadError, decoder_messages_hidden, read_clip

    frames, height, width = pixel_shape(tokenizer, config)
    if height != width:
        raise UserError(f"context videos are read square; this model's frames are {height}x{width}")
    needed = context_pixel_frames(tokenizer, config)
    jobs = []
    for path in args.context:
        if not Path(path).is_file():
            raise UserError(f"--context {path}: no such video file")
        try:
            with decoder_messages_hidden():
                clip = read_clip(path, frames=needed, fps=args.fps, size=height, position="start")
        except VideoReadError as err:
            raise UserError(f"--context {path}: {err}") from None
        video = torch.from_numpy(clip).permute(3, 0, 1, 2)  # (C, T, H, W)
        jobs += [(video, f"{Path(path).stem}_{n:02d}") for n in range(args.num)]
    return jobs


def make_jobs(args, tokenizer, config) -> list[tuple[object, str]]:
    """One (condition, file stem) per sample."""
    if config.condition == "class":
        if args.context:
            raise UserError("--context needs a frames-conditioned model; this one is class-conditional")
        return class_jobs(args, config)
    if args.classes or args.class_names:
        raise UserError(f"--classes needs a class-conditional model; this one has condition={config.condition!r}")
    if config.condition == "frames":
        if not args.context:
            raise UserError("this model continues given frames; pass --context VIDEO [VIDEO ...]")
        return read_contexts(args, tokenizer, config)
    if args.context:
        raise UserError("--context needs a frames-conditioned model; this one is unconditional")
    return [(None, f"sample_{n:03d}") for n in range(args.num)]


def batched_condition(conds: list):
    if conds[0] is None:
        return None, len(conds)
    if isinstance(conds[0], int):
        return torch.tensor(conds), None
    return torch.stack(conds), None


def stream_to_files(frames, paths: list[Path], fps: int) -> tuple[torch.Tensor, float, float]:
    """Append each sample's frames to its growing mp4 as they come; (videos, seconds, seconds to the first frame).

    On Ctrl-C the files keep the frames written so far under their partial names (and the
    user is told where); on an error they are deleted.
    """
    from nbp.video_io import GrowingMp4

    writers = [GrowingMp4(path, fps=fps) for path in paths]
    chunks, first = [], None
    started = time.perf_counter()
    try:
        for chunk in frames:
            chunk = chunk.cpu()
            if first is None:
                first = time.perf_counter() - started
            for writer, one in zip(writers, chunk):
                writer.write(one)
            chunks.append(chunk)
        seconds = time.perf_counter() - started
        for writer in writers:
            writer.finish()
    except KeyboardInterrupt:
        kept = [str(path) for path in (writer.stop() for writer in writers) if path is not None]
        if kept:
            print(f"nbp: stopped while streaming; the frames written so far are kept as playable partial "
                  f"videos: {', '.join(kept)}", file=sys.stderr)
        raise
    except BaseException:
        for writer in writers:
            writer.discard()
        raise
    return torch.cat(chunks, dim=2), seconds, first


# ---------------------------------------------------------------- main


def main(argv: list[str], prog: str = "nbp sample") -> int:
    args = build_parser(prog).parse_args(argv)
    if args.num < 1 or args.batch_size < 1:
        raise UserError(f"--num {args.num} / --batch-size {args.batch_size} are invalid; both must be >= 1")
    if args.fps < 1:
        raise UserError(f"--fps {args.fps}: must be >= 1")
    if args.frames is not None and args.frames < 1:
        raise UserError(f"--frames {args.frames}: must be 1 + 4k (e.g. 17, 33, 65)")
    if args.classes is not None and args.class_names:
        raise UserError("--classes and --class-names both given; pick classes one way")
    device = pick_device(args.device)
    chosen = apply_preset(args.sampling, temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    controls = SamplingControls(**{"temperature": 1.0, **chosen, "cfg_scale": args.cfg, "cfg_ramp": args.cfg_ramp})
    dtype = precision.resolve_dtype(args.dtype, device, "--dtype")
    check_output_folder(args.out)
    model = load_model(args.model, device, dtype)
    tokenizer = load_tokenizer(args.tokenizer, device)
    check_compatible(model, tokenizer)
    check_length(model.config, latent_length(model, tokenizer, args.frames))
    jobs = make_jobs(args, tokenizer, model.config)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    from nbp.video_io import write_gif, write_mp4, write_png_grid

    generator = torch.Generator(device=device).manual_seed(args.seed)
    videos, files = [], []
    sample_seconds = decode_seconds = 0.0
    model_calls = tokens = 0
    first_frame_seconds = []
    batches = [jobs[i:i + args.batch_size] for i in range(0, len(jobs), args.batch_size)]
    for batch in progress(batches, desc="sampling", unit="batch"):
        cond, num = batched_condition([c for c, _ in batch])
        paths = [out / f"{stem}.mp4" for _, stem in batch]
        if args.stream:
            pieces = stream_frames(model, tokenizer, cond, num, frames=args.frames, controls=controls,
                                   generator=generator, compile=args.compile, dtype=dtype)
            video, seconds, first = stream_to_files(pieces, paths, args.fps)
            sample_seconds += seconds
            first_frame_seconds.append(round(first, 4))
        else:
            grid, stats = generate_tokens(model, tokenizer, cond, num, frames=args.frames, controls=controls,
                                          generator=generator, compile=args.compile, dtype=dtype)
            started = time.perf_counter()
            video = tokens_to_video(tokenizer, grid, dtype).cpu()
            decode_seconds += time.perf_counter() - started
            sample_seconds += stats.seconds
            model_calls += stats.model_calls
            tokens += stats.tokens * stats.batch_size
            for one, path in zip(video, paths):
                write_mp4(path, one, fps=args.fps)
        files += [path.name for path in paths]
        videos += list(video)

    all_videos = torch.stack(videos)
    write_png_grid(out / "samples.png", all_videos)
    write_gif(out / "samples.gif", all_videos, fps=args.fps)
    frames = all_videos.shape[0] * all_videos.shape[2]
    timings = {"samples": len(videos), "batches": len(batches)}
    if args.stream:  # sampling and decoding interleave: one clock for both
        timings |= {
            "time_to_first_frame_seconds": first_frame_seconds,
            "seconds": round(sample_seconds, 4),
            "frames_per_second": round(frames / max(sample_seconds, 1e-9), 3),
        }
    else:
        timings |= {
            "steps_per_batch": model_calls // len(batches),
            "model_calls": model_calls,
            "sampling_seconds": round(sample_seconds, 4),
            "decode_seconds": round(decode_seconds, 4),
            "tokens_per_second": round(tokens / max(sample_seconds, 1e-9), 2),
            "frames_per_second": round(frames / max(sample_seconds + decode_seconds, 1e-9), 3),
            "frames_per_second_transformer_only": round(frames / max(sample_seconds, 1e-9), 3),
        }
    report = {
        "settings": {**{k: v for k, v in vars(args).items() if k != "config"}, "controls": asdict(controls)},
        "checksums": {"model_sha256": sha256_file(args.model), "tokenizer_sha256": sha256_file(args.tokenizer)},
        "model": model.config.to_dict(),
        "timings": timings,
        "files": files + ["samples.png", "samples.gif"],
    }
    write_json_atomic(out / "samples.json", report)
    print(f"wrote {len(videos)} samples to {out} ({report['timings']['frames_per_second']} frames/s)")
    return 0
