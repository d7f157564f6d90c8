"""`nbp demo --long true`: window models trained on long synthetic clips, and videos longer than a clip.

Stages, after the demo's own (they reuse its tokenizer and compare with its models):
  long_data              synthetic videos of 65 frames (17 latent frames), in the UCF-101 layout
  long_tokens            their token caches
  long_nbp               two window models (NBPConfig.window = the demo's clip, 5 latent frames): the
                         class-conditional NBP model and the frame-prediction one, trained on windows
                         drawn at every offset of the long clips, with the demo's settings and times
  long_sample            a 65-frame sample per class (<ClassName>.mp4, long_samples.gif); 17-, 33- and
                         65-frame samples judged frame by frame against the demo's 17-frame samples
  long_frame_prediction  held-out long clips continued from their first 5 frames to 65: how far in the
                         predicted objects stay near the real ones
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np
import torch

from lightning_modules.demo import settings as demo
from lightning_modules.demo.evaluate import as_clips, mosaic, object_count_hits, read_back, seeded_generator
from lightning_modules.demo.judges import object_centres, shown_colours
from lightning_modules.demo.runner import Budget, StageRunner, log
from nbp.data import DatasetConfig, build_dataset
from nbp.data.synthetic import CLASS_NAMES, num_objects, object_colours, object_size
from nbp.sampling import context_pixel_frames, iter_token_frames, tokens_to_video
from nbp.video_io import write_gif, write_mp4

LONG_FRAMES = 65  # pixel frames of the long clips: 17 latent frames
SAMPLE_LENGTHS = (17, 33, 65)
NEAR_PX = 3.0  # "near the real position" for frame prediction, in pixels


def long_videos_per_class(minutes: float) -> int:
    """A quarter of the demo's count (at least 5): each long clip holds four clips' frames."""
    return max(5, demo.videos_per_class(minutes) // 4)


def long_dataset_config(root: Path, split: str) -> DatasetConfig:
    return DatasetConfig(kind="synthetic", root=str(root), split=split, frames=LONG_FRAMES, fps=demo.FPS,
                         size=demo.SIZE, cache=True)


# ------------------------------------------------------------------------------------------ stages


def stage_long_data(folder: Path, minutes: float, seed: int) -> dict:
    from nbp.data.synthetic import split_sizes, write_synthetic_dataset

    per_class = long_videos_per_class(minutes)
    log(f"writing {per_class} long synthetic videos per class ({LONG_FRAMES} frames, {demo.SIZE} px)")
    # another seed than the demo's clips: the long clips are new videos, not longer copies of them
    root = write_synthetic_dataset(folder / "synthetic", videos_per_class=per_class, frames=LONG_FRAMES,
                                   size=demo.SIZE, fps=demo.FPS, seed=seed + 1)
    sizes = split_sizes(per_class)
    return {"root": str(root), "videos_per_class": per_class, "frames": LONG_FRAMES,
            "train_videos": sizes["train"] * len(CLASS_NAMES), "test_videos": sizes["test"] * len(CLASS_NAMES)}


def stage_long_tokens(folder: Path, data_root: Path, tokenizer_path: Path, device: str) -> dict:
    from nbp.commands.tokenize import tokenize_dataset

    result = {}
    for split in ("train", "test"):
        meta = tokenize_dataset(tokenizer_path, long_dataset_config(data_root, split), folder / split,
                                batch_size=8, device=device)
        result[split] = {"path": str(folder / split), "items": meta.num_items, "skipped": meta.num_skipped,
                         "grid": list(meta.grid), "frames": meta.frames}
    return result


def stage_long_nbp(folder: Path, caches: dict, window: int, budget: Budget, device: str, threads: int) -> dict:
    from lightning_modules.demo.lanes import TrainJob, plan_lanes, train_jobs
    from lightning_modules.demo.train import set_path

    configs = {
        "window": demo.transformer_config("nbp/synthetic.yaml", caches, device),
        "window_frames": demo.transformer_config(
            "nbp/synthetic.yaml", caches, device, condition="frames", context_frames=demo.CONTEXT_LATENT_FRAMES,
            p_uncond=0.0, hybrid_blocks=1, class_every_position=False, **demo.FRAME_MODEL_OVERRIDES),
    }
    for config in configs.values():
        set_path(config, "data.init_args.window", window)
    lanes, threads_per_lane = plan_lanes(device, threads, len(configs))
    # the class model's and the frame model's times, as in the demo's own stage
    if lanes < 2:
        seconds = {"window": budget.model_seconds, "window_frames": budget.frames_seconds}
    else:
        stage = budget.model_seconds + budget.frames_seconds
        seconds = {"window": stage, "window_frames": stage}
    jobs = [TrainJob(name, config, folder / name, seconds[name]) for name, config in configs.items()]
    results = train_jobs(jobs, lanes, threads_per_lane)
    return {**results, "window_latent_frames": window, "lanes": lanes, "threads_per_lane": threads_per_lane}


# ------------------------------------------------------------------------------------------ judges


def motion(videos: torch.Tensor) -> dict:
    """Per-frame moves of each object's centre in uint8 (B, C, T, H, W) synthetic videos: the mean
    move in px, and `jumps`, the fraction of moves longer than half an object (a real object moves
    at most 3 px per frame at 64 px, 1/13 of its side per axis)."""
    steps = []
    for clip in as_clips(videos):
        centres = object_centres(clip)  # T K 2
        step = np.linalg.norm(centres[1:] - centres[:-1], axis=-1)
        steps.append(step[~np.isnan(step)])
    steps = np.concatenate(steps) if steps else np.zeros(0)
    jump = object_size(videos.shape[-1]) / 2
    return {"mean_move_px": float(steps.mean()) if steps.size else None,
            "jumps": float((steps > jump).mean()) if steps.size else None}


def judge(videos: torch.Tensor, labels: list[int], frames: slice = slice(None)) -> dict:
    """The demo's checks on the frames `frames` of uint8 (B, C, T, H, W) class samples.

    Colours are judged per stretch of the demo's clip length (frames 0-16, 16-32, ...): over a whole
    65-frame clip a colour would pass the check's pixel count more easily than over 17 frames.
    `objects_by_stretch`: the share of frames with the right object count in each stretch.
    """
    part = videos[:, :, frames]
    objects = [num_objects(c) for c in labels]
    step = demo.FRAMES - 1
    stretches = [slice(a, a + demo.FRAMES) for a in range(0, max(part.shape[2] - 1, 1), step)]
    colours = [shown_colours(clip[s]) == object_colours(n)
               for clip, n in zip(as_clips(part), objects) for s in stretches]
    by_stretch = [float(object_count_hits(part[:, :, s], objects).mean()) for s in stretches]
    return {"frames": part.shape[2], "objects_right": float(object_count_hits(part, objects).mean()),
            "colours_right": float(np.mean(colours)), "objects_by_stretch": by_stretch, **motion(part)}


@torch.no_grad()
def timed_tokens(model, labels: torch.Tensor, frames: int, controls, seed: int, tokenizer) -> tuple:
    """(token grid, seconds to the first latent frame, seconds in all) of one batch of class samples."""
    started = time.perf_counter()
    grids, first = [], None
    for grid in iter_token_frames(model, tokenizer, labels, frames=frames, controls=controls,
                                  generator=seeded_generator(model, seed)):
        grids.append(grid)
        first = first if first is not None else time.perf_counter() - started
    return torch.stack(grids, dim=1), first, time.perf_counter() - started


def stage_long_sample(folder: Path, window_path: str, plain_path: str, tokenizer_path: Path, minutes: float,
                      seed: int, device: str) -> dict:
    from nbp.sampling import load_model
    from tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.load(tokenizer_path).to(device)
    window, plain = load_model(window_path, device), load_model(plain_path, device)
    per_class = demo.samples_per_class(minutes)
    labels = torch.arange(len(CLASS_NAMES)).repeat_interleave(per_class)
    controls = demo.CLASS_SAMPLING
    result = {"per_class": per_class, "window": {}, "controls": dataclasses.asdict(controls)}
    timed_tokens(window, labels[:1], SAMPLE_LENGTHS[0], controls, seed, tokenizer)  # warm-up
    grid, first, total = timed_tokens(plain, labels, demo.FRAMES, controls, seed, tokenizer)
    result["plain"] = {**judge(tokens_to_video(tokenizer, grid).cpu(), labels.tolist()),
                       "first_latent_frame_seconds": first, "seconds": total}
    folder.mkdir(parents=True, exist_ok=True)
    for frames in SAMPLE_LENGTHS:
        grid, first, total = timed_tokens(window, labels, frames, controls, seed, tokenizer)
        videos = tokens_to_video(tokenizer, grid).cpu()
        scores = {"all": judge(videos, labels.tolist()), "first_latent_frame_seconds": first, "seconds": total}
        if frames > demo.FRAMES:  # what the slid windows made: the frames after the first window's
            scores["beyond_first_window"] = judge(videos, labels.tolist(), slice(demo.FRAMES, None))
        result["window"][str(frames)] = scores
        log(f"long samples, {frames} frames: {scores['all']['objects_right']:.0%} of frames with the right "
            f"object count, first latent frame after {first:.2f} s of {total:.2f} s")
    # one 65-frame sample per class as a file, decoded back as a viewer sees it
    files = []
    for class_id, name in enumerate(CLASS_NAMES):
        files.append(str(write_mp4(folder / f"{name}.mp4", videos[class_id * per_class], fps=demo.FPS)))
    shown = read_back(files)
    result["files"] = files
    result["files_judged"] = judge(shown, list(range(len(CLASS_NAMES))))
    gif = write_gif(folder.parent / "long_samples.gif", mosaic(shown, columns=3), fps=demo.FPS)
    result["outputs"] = {"long_samples_dir": str(folder), "long_samples_gif": str(gif)}
    return result


@torch.no_grad()
def stage_long_frame_prediction(folder: Path, model_path: str, tokenizer_path: Path, data_root: Path,
                                minutes: float, seed: int, device: str) -> dict:
    """Continue held-out long clips from their first frames to their end; the error of every frame."""
    from nbp.sampling import load_model
    from tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.load(tokenizer_path).to(device)
    model = load_model(model_path, device)
    context = context_pixel_frames(tokenizer, model.config)
    test = build_dataset(long_dataset_config(data_root, "test"))
    per_class = demo.prediction_videos_per_class(minutes)
    chosen = [test[i] for i in range(len(test))]
    chosen = [item for c in range(len(CLASS_NAMES)) for item in [x for x in chosen if x["label"] == c][:per_class]]
    real = torch.stack([item["video"] for item in chosen])
    generator = seeded_generator(model, seed)
    grids = list(iter_token_frames(model, tokenizer, real[:, :, :context], frames=LONG_FRAMES,
                                   controls=demo.FRAME_SAMPLING, generator=generator))
    predicted = tokens_to_video(tokenizer, torch.stack(grids, dim=1)).cpu()
    truth, guess = (np.stack([object_centres(clip) for clip in as_clips(v)]) for v in (real, predicted))
    frozen = np.repeat(truth[:, context - 1:context], truth.shape[1], axis=1)
    per_frame = {name: _frame_errors(truth, other) for name, other in (("predicted", guess), ("frozen", frozen))}
    folder.mkdir(parents=True, exist_ok=True)
    pairs = torch.stack([real, predicted], dim=1).flatten(0, 1)
    gif = write_gif(folder.parent / "long_frame_prediction.gif", mosaic(pairs, columns=2), fps=demo.FPS)
    errors = per_frame["predicted"]["error_px"]
    near = [t for t in range(context, LONG_FRAMES) if errors[t] is not None and errors[t] <= NEAR_PX]
    first_far = next((t for t in range(context, LONG_FRAMES) if errors[t] is None or errors[t] > NEAR_PX), None)
    segments = {f"{a}-{b - 1}": _segment(per_frame, a, b) for a, b in
                ((context, demo.FRAMES), (demo.FRAMES, 33), (33, LONG_FRAMES))}
    return {"videos": len(chosen), "context_frames": context, "frames": LONG_FRAMES, "near_px": NEAR_PX,
            "first_frame_beyond_near_px": first_far, "frames_near": len(near), "segments": segments,
            "per_frame": per_frame, "outputs": {"long_frame_prediction_gif": str(gif)}}


def _frame_errors(truth: np.ndarray, guess: np.ndarray) -> dict:
    """Per frame: the mean centre distance of the objects found in both, and the share of real ones found."""
    present = ~np.isnan(truth[..., 0])
    found = present & ~np.isnan(guess[..., 0])
    distance = np.where(found, np.linalg.norm(np.nan_to_num(truth - guess), axis=-1), 0.0)
    hits, counts = found.sum(axis=(0, 2)), present.sum(axis=(0, 2))
    error = [float(d / h) if h else None for d, h in zip(distance.sum(axis=(0, 2)), hits)]
    return {"error_px": error, "found": [float(h / c) if c else None for h, c in zip(hits, counts)]}


def _segment(per_frame: dict, start: int, end: int) -> dict:
    out = {}
    for name, curves in per_frame.items():
        errors = [e for e in curves["error_px"][start:end] if e is not None]
        found = [f for f in curves["found"][start:end] if f is not None]
        out[name] = {"error_px": float(np.mean(errors)) if errors else None,
                     "found": float(np.mean(found)) if found else None}
    return out


# ------------------------------------------------------------------------------------------ the option


def run_long_stages(runner: StageRunner, results: dict, args, budget: Budget, device: str, threads: int) -> dict:
    """The long stages after the demo's own; returns what goes into summary.json under "long"."""
    tokenizer_path = Path(results["tokenizer"]["path"])
    window = results["tokens"]["train"]["grid"][0]  # the demo's clip in latent frames: the model's window
    data = runner.run("long_data", lambda f: stage_long_data(f, args.minutes, args.seed))
    root = Path(data["root"])
    caches = runner.run("long_tokens", lambda f: stage_long_tokens(f, root, tokenizer_path, device))
    models = runner.run("long_nbp", lambda f: stage_long_nbp(f, caches, window, budget, device, threads))
    sample = runner.run("long_sample", lambda f: stage_long_sample(
        f / "videos", models["window"]["path"], results["nbp"]["nbp"]["path"], tokenizer_path, args.minutes,
        args.seed, device))
    prediction = runner.run("long_frame_prediction", lambda f: stage_long_frame_prediction(
        f / "videos", models["window_frames"]["path"], tokenizer_path, root, args.minutes, args.seed, device))
    return {"window": window, "clip_frames": LONG_FRAMES,
            "window_model": {k: models["window"][k] for k in ("val_bits_per_token", "steps")},
            "window_frames_model": {k: models["window_frames"][k] for k in ("val_bits_per_token", "steps")},
            "samples": {"plain_17": sample["plain"], **{f"window_{k}": v for k, v in sample["window"].items()}},
            "frame_prediction": {k: prediction[k] for k in ("first_frame_beyond_near_px", "frames_near",
                                                            "segments", "near_px")},
            "outputs": {**sample["outputs"], **prediction["outputs"]}}


def long_table(long: dict) -> list[tuple[str, str]]:
    """Rows of the demo's summary table for the long stages."""
    rows = []
    plain = long["samples"]["plain_17"]
    rows.append(("plain model, 17 frames", _judged(plain)))
    for frames in SAMPLE_LENGTHS:
        scores = long["samples"][f"window_{frames}"]
        rows.append((f"window model, {frames} frames", _judged(scores["all"]) +
                     f"   first latent frame {scores['first_latent_frame_seconds']:.2f} s of {scores['seconds']:.2f} s"))
    pred = long["frame_prediction"]
    rows.append(("long frame prediction", f"within {pred['near_px']:g} px until frame "
                                          f"{pred['first_frame_beyond_near_px']}   " + "   ".join(
        f"{span}: {s['predicted']['error_px']:.1f} px (frozen {s['frozen']['error_px']:.1f})"
        for span, s in pred["segments"].items()
        if s["predicted"]["error_px"] is not None and s["frozen"]["error_px"] is not None)))
    return rows


def _judged(scores: dict) -> str:
    def shown(value, scale=1.0, unit=""):
        return "n/a" if value is None else f"{scale * value:.{0 if scale == 100 else 1}f}{unit}"

    return (f"objects {shown(scores['objects_right'], 100, '%')}   colours {shown(scores['colours_right'], 100, '%')}"
            f"   move {shown(scores['mean_move_px'], unit=' px')}, jumps {shown(scores['jumps'], 100, '%')}")
