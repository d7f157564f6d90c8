"""What `nbp demo` does with trained models: tokenizer quality, class samples, NBP vs NTP timing,
frame prediction. Plain PyTorch (the training side lives in lightning_modules/demo/train.py).

Every function writes its files under a given folder and returns a JSON-able dict of numbers
and paths (what goes into summary.json).
"""

from __future__ import annotations

import dataclasses
import statistics
from pathlib import Path

import numpy as np
import torch

from nbp import pixels
from lightning_modules.demo.judges import count_objects, looks_square, object_centres, shown_colours
from nbp.data.synthetic import object_colours
from nbp.metrics.frame_quality import FrameQuality
from nbp.progress import progress
from nbp.sampling import check_compatible, context_pixel_frames, generate_tokens, tokens_to_video
from nbp.sampling_controls import SamplingControls
from nbp.video_io import write_gif, write_mp4, write_png_grid

TIMING_ROUNDS = 3  # sampling runs per model for the speedup; the median counts
GAP_GREY = 96  # the lines between tiles: the videos have black backgrounds, so a black gap would vanish


def mosaic(videos: torch.Tensor, columns: int, gap: int = 2) -> torch.Tensor:
    """uint8 (N, C, T, H, W) -> one uint8 video (C, T, H', W') with the clips on a grid, row by row."""
    n, c, t, h, w = videos.shape
    rows = -(-n // columns)
    canvas = torch.full((c, t, rows * (h + gap) - gap, columns * (w + gap) - gap), GAP_GREY, dtype=torch.uint8)
    for index in range(n):
        y, x = (index // columns) * (h + gap), (index % columns) * (w + gap)
        canvas[:, :, y:y + h, x:x + w] = videos[index]
    return canvas


def batches(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start:start + size]


# ---------------------------------------------------------------------------------------- tokenizer

@torch.no_grad()
def tokenizer_quality(tokenizer, videos: list[torch.Tensor], batch_size: int = 8,
                      objects: list[int] | None = None, squares: list[bool] | None = None) -> dict:
    """Reconstruction PSNR / SSIM (per frame, [0, 1] pixels) and code usage on held-out uint8 videos (C, T, H, W).

    With `objects` (each video's synthetic object count) also `objects_right` of the reconstructions,
    with `squares` (whether its objects are squares) `shapes_right` of the reconstructions and of the
    real videos: what generated videos can reach at best, since they are decoded by the same tokenizer,
    and what the shape judge makes of the real thing.
    """
    quality = FrameQuality()
    hits, recon_shapes, real_shapes = [], [], []
    counts = torch.zeros(tokenizer.vocab_size, dtype=torch.long)
    for start in progress(range(0, len(videos), batch_size), desc="tokenizer: held-out reconstruction", unit="batch"):
        real = torch.stack(videos[start:start + batch_size])
        ids = tokenizer.encode(pixels.to_model(real))
        recon = pixels.to_uint8(pixels.model_to_unit(tokenizer.decode(ids)))
        quality.update(recon, real)
        counts += torch.bincount(ids.flatten(), minlength=tokenizer.vocab_size)
        if objects is not None:
            hits.append(object_count_hits(recon, objects[start:start + batch_size]))
        if squares is not None:
            recon_shapes.append(shape_hits(recon, squares[start:start + batch_size]))
            real_shapes.append(shape_hits(real, squares[start:start + batch_size]))
    scores = quality.compute()
    used = int((counts > 0).sum())
    result = {"psnr": scores["psnr"], "ssim": scores["ssim"], "code_usage": used / tokenizer.vocab_size,
              "codes_used": used, "videos": len(videos)}
    if objects is not None:
        result["objects_right"] = float(np.concatenate(hits).mean())
    if squares is not None:
        result["shapes_right"] = float(np.concatenate(recon_shapes).mean())
        result["real_shapes_right"] = float(np.concatenate(real_shapes).mean())
    return result


# ---------------------------------------------------------------------------------------- class samples

def seeded_generator(model, seed: int) -> torch.Generator:
    """A generator on the model's device (the sampler draws there)."""
    return torch.Generator(device=next(model.parameters()).device).manual_seed(seed)


def _timed_sampling(model, cond: torch.Tensor, controls: SamplingControls, seed: int):
    device = next(model.parameters()).device
    return generate_tokens(model, cond=cond.to(device), controls=controls, generator=seeded_generator(model, seed))


def read_back(paths: list[str]) -> torch.Tensor:
    """uint8 (B, C, T, H, W) frames of written mp4 files, decoded as a viewer decodes them."""
    import decord

    readers = [decord.VideoReader(path, num_threads=1) for path in paths]
    clips = np.stack([reader.get_batch(range(len(reader))).asnumpy() for reader in readers])
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3)


def as_clips(videos: torch.Tensor) -> np.ndarray:
    return videos.permute(0, 2, 3, 4, 1).numpy()  # uint8 (B, C, T, H, W) -> (B, T, H, W, C)


def colours_right(videos: torch.Tensor, objects: list[int]) -> float:
    """Fraction of uint8 (B, C, T, H, W) synthetic-class videos showing exactly their class's colours
    over the whole clip: `object_colours(objects[b])` (`shown_colours`). An object that
    changes colour, vanishes or is drawn in a colour of another class fails it."""
    clips = as_clips(videos)
    return sum(shown_colours(clip) == object_colours(n) for clip, n in zip(clips, objects)) / max(len(clips), 1)


def object_count_hits(videos: torch.Tensor, objects: list[int]) -> np.ndarray:
    """bool, one per frame of uint8 (B, C, T, H, W) videos: does it show exactly its clip's number of
    objects (`count_objects`)? A missing object, a duplicate or one broken in two fails the frame."""
    return np.concatenate([count_objects(clip) == n for clip, n in zip(as_clips(videos), objects)])


def objects_right(videos: torch.Tensor, objects: list[int]) -> float:
    """Fraction of all frames that show their class's number of objects (see `object_count_hits`)."""
    return float(object_count_hits(videos, objects).mean()) if len(videos) else 0.0


def counts_right(videos: torch.Tensor, objects: list[int]) -> float:
    """Fraction of uint8 (B, C, T, H, W) videos whose most frequent per-frame object count (a tie goes
    to the smaller) is their class's: what a person watching the clip sees, where `objects_right`
    also counts every one-frame flicker."""
    hits = [np.bincount(count_objects(clip)).argmax() == n for clip, n in zip(as_clips(videos), objects)]
    return float(np.mean(hits)) if hits else 0.0


def shape_hits(videos: torch.Tensor, squares: list[bool]) -> np.ndarray:
    """bool, one per uint8 (B, C, T, H, W) video: do its objects have the expected shape (`looks_square`)?
    A clip where no object is ever seen whole has no shape to see, so it fails."""
    return np.array([looks_square(clip) is square for clip, square in zip(as_clips(videos), squares)], dtype=bool)


def shapes_right(videos: torch.Tensor, squares: list[bool]) -> float:
    """Fraction of videos whose objects have their class's shape (see `shape_hits`)."""
    return float(shape_hits(videos, squares).mean()) if len(videos) else 0.0


def samples_right(videos: torch.Tensor, objects: list[int], squares: list[bool]) -> float:
    """Fraction of videos right on all three at once: the class's count in most frames, exactly its
    colours all clip long and its shape. What a person checks a sample for."""
    if not len(videos):
        return 0.0
    clips = as_clips(videos)
    counts = [np.bincount(count_objects(clip)).argmax() == n for clip, n in zip(clips, objects)]
    colours = [shown_colours(clip) == object_colours(n) for clip, n in zip(clips, objects)]
    shapes = shape_hits(videos, squares)
    return float(np.mean(np.asarray(counts) & np.asarray(colours) & shapes))


@torch.no_grad()
def class_samples(nbp_model, ntp_model, tokenizer, class_names: list[str], per_class: int, folder: Path,
                  controls: SamplingControls, seed: int = 0, fps: int = 8,
                  objects_per_class: list[int] | None = None, squares_per_class: list[bool] | None = None) -> dict:
    """NBP samples of every class as `<ClassName>_<NN>.mp4` + a GIF + a PNG grid; NBP vs NTP decoding time.

    Both models sample the same batch (every class, `per_class` each) with the same controls;
    speedup = NTP seconds / NBP seconds of that batch, each the median of TIMING_ROUNDS runs.
    With `objects_per_class` (synthetic classes) each model also gets `colours_right`,
    `objects_right` and `counts_right`, with `squares_per_class` as well `shapes_right` and
    `samples_right` (see those functions).
    """
    check_compatible(nbp_model, tokenizer)
    cond = torch.arange(len(class_names)).repeat_interleave(per_class)
    # A one-sample warm-up so that one-off allocations are not billed to whichever model goes first.
    _timed_sampling(nbp_model, cond[:1], controls, seed)
    _timed_sampling(ntp_model, cond[:1], controls, seed)
    # The same seeded batch, TIMING_ROUNDS times, the two models taking turns; the median time counts,
    # so one busy moment of a shared machine does not decide the speedup.
    grids, runs = {}, {"nbp": [], "ntp": []}
    for _ in range(TIMING_ROUNDS):
        for name, model in (("nbp", nbp_model), ("ntp", ntp_model)):
            grids[name], stats = _timed_sampling(model, cond, controls, seed)
            runs[name].append(stats)
    timings = {}
    for name, stats in runs.items():
        seconds = statistics.median(s.seconds for s in stats)
        timings[name] = {"sampling_steps": stats[0].model_calls, "sampling_seconds": seconds,
                         "sampling_rounds": len(stats), "batch_size": stats[0].batch_size,
                         "tokens_per_second": stats[0].tokens * stats[0].batch_size / max(seconds, 1e-12)}
    videos = tokens_to_video(tokenizer, grids["nbp"]).cpu()
    ntp_videos = tokens_to_video(tokenizer, grids["ntp"]).cpu()
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for index, video in enumerate(progress(videos, desc="samples: writing mp4", unit="video")):
        class_id, number = divmod(index, per_class)
        path = folder / f"{class_names[class_id]}_{number:02d}.mp4"
        write_mp4(path, video, fps=fps)
        files.append(str(path))
    if objects_per_class is not None:
        # Judged on what a user gets: the NBP samples as decoded back from their mp4 files (H.264 can
        # move a borderline pixel), the NTP samples as they are in their lossless PNG grid.
        expected = [objects_per_class[class_id] for class_id in cond.tolist()]
        for name, batch in (("nbp", read_back(files)), ("ntp", ntp_videos)):
            timings[name]["colours_right"] = colours_right(batch, expected)
            timings[name]["objects_right"] = objects_right(batch, expected)
            timings[name]["counts_right"] = counts_right(batch, expected)
            if squares_per_class is not None:
                squares = [squares_per_class[class_id] for class_id in cond.tolist()]
                timings[name]["shapes_right"] = shapes_right(batch, squares)
                timings[name]["samples_right"] = samples_right(batch, expected, squares)
    # Rows = classes, columns = samples of that class (the GIF); rows = samples, columns = frames (the PNG).
    gif = write_gif(folder.parent / "samples.gif", mosaic(videos, columns=per_class), fps=fps)
    png = write_png_grid(folder.parent / "samples.png", videos)
    ntp_png = write_png_grid(folder.parent / "samples_ntp.png", ntp_videos)
    return {
        "nbp": timings["nbp"],
        "ntp": timings["ntp"],
        "speedup": timings["ntp"]["sampling_seconds"] / max(timings["nbp"]["sampling_seconds"], 1e-9),
        "classes": list(class_names),
        "per_class": per_class,
        "controls": dataclasses.asdict(controls),
        "outputs": {"samples_dir": str(folder), "samples_gif": str(gif), "samples_png": str(png),
                    "samples_ntp_png": str(ntp_png)},
        "files": files,
    }


# ---------------------------------------------------------------------------------------- frame prediction

def object_tracking(predicted: torch.Tensor, real: torch.Tensor) -> dict:
    """How well uint8 (B, C, T, H, W) predicted frames place the objects of the real ones.

    Every object (palette colour) of every real frame is looked up in the predicted frame:
    `found` is the fraction shown there, `centre_error_px` the mean distance between the two
    centres over the found ones. PSNR cannot tell this: on black backgrounds an all-black
    prediction scores higher than one with every object slightly off.
    """
    def centres(videos: torch.Tensor) -> np.ndarray:
        return np.stack([object_centres(clip) for clip in as_clips(videos)])  # B T K 2

    truth, guess = centres(real), centres(predicted)
    present = ~np.isnan(truth[..., 0])
    found = present & ~np.isnan(guess[..., 0])
    distance = np.linalg.norm(truth - guess, axis=-1)[found]
    return {"found": float(found.sum() / max(present.sum(), 1)),
            "centre_error_px": float(distance.mean()) if distance.size else None}


@torch.no_grad()
def frame_prediction(model, tokenizer, items: list[dict], class_names: list[str], folder: Path,
                     controls: SamplingControls, seed: int = 0, fps: int = 8, batch_size: int = 8) -> dict:
    """Continue held-out test videos from their first frames; PSNR/SSIM of the predicted frames.

    items: dataset items {"video": uint8 (C, T, H, W), "label": int}. Writes, per video,
    `<ClassName>_<NN>.mp4` with the ground truth on the left and the prediction on the right,
    plus a GIF and a PNG grid (rows: ground truth, prediction, ...).
    """
    check_compatible(model, tokenizer)
    context = context_pixel_frames(tokenizer, model.config)
    generator = seeded_generator(model, seed)
    quality, copy_baseline = FrameQuality(), FrameQuality()
    truths, predictions = [], []
    for chunk in progress(list(batches(items, batch_size)), desc="frame prediction", unit="batch"):
        real = torch.stack([item["video"] for item in chunk])
        grid, _ = generate_tokens(model, tokenizer, cond=real[:, :, :context], controls=controls, generator=generator)
        predicted = tokens_to_video(tokenizer, grid).cpu()
        quality.update(predicted[:, :, context:], real[:, :, context:])
        # Reference point: a "prediction" that freezes the last context frame.
        frozen = real[:, :, context - 1:context].expand_as(real[:, :, context:])
        copy_baseline.update(frozen, real[:, :, context:])
        truths.append(real)
        predictions.append(predicted)
    truth, predicted = torch.cat(truths), torch.cat(predictions)
    future = truth[:, :, context:]
    objects = object_tracking(predicted[:, :, context:], future)
    frozen_objects = object_tracking(truth[:, :, context - 1:context].expand_as(future), future)
    # The prediction's first frames are the tokenizer's reconstruction of the given context frames.
    folder.mkdir(parents=True, exist_ok=True)
    seen: dict[int, int] = {}
    files = []
    for item, real, fake in zip(items, truth, predicted):
        label = int(item["label"])
        number = seen[label] = seen.get(label, -1) + 1
        path = folder / f"{class_names[label]}_{number:02d}.mp4"
        write_mp4(path, torch.stack([real, fake]), fps=fps)
        files.append(str(path))
    pairs = torch.stack([truth, predicted], dim=1).flatten(0, 1)  # gt_0, pred_0, gt_1, pred_1, ...
    gif = write_gif(folder.parent / "frame_prediction.gif", mosaic(pairs, columns=2), fps=fps)
    png = write_png_grid(folder.parent / "frame_prediction.png", pairs)
    scores, baseline = quality.compute(), copy_baseline.compute()
    return {
        "psnr": scores["psnr"], "ssim": scores["ssim"], "objects": objects,
        "predicted_frames": truth.shape[2] - context, "context_frames": context, "videos": len(items),
        "copy_last_frame": {"psnr": baseline["psnr"], "ssim": baseline["ssim"], "objects": frozen_objects},
        "controls": dataclasses.asdict(controls),
        "outputs": {"frame_prediction_dir": str(folder), "frame_prediction_gif": str(gif),
                    "frame_prediction_png": str(png)},
        "files": files,
    }
