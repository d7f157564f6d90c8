"""`nbp demo`: the whole pipeline end to end on the built-in synthetic dataset, on a CPU.

    nbp demo                      # ~15 minutes on 2 CPU cores, writes runs/demo/
    nbp demo --minutes 3          # a quicker, rougher run; every stage budget scales with --minutes

Stages (each in its own folder under --out, each reused by a rerun once finished):
  data              synthetic videos (17 frames, 56 px, six classes, 400 per class) as mp4 files, UCF-101 layout
  tokenizer         the 3D VQ tokenizer (configs/tokenizer/synthetic.yaml at 8x compression, 200 codes,
                    each latent frame decoded on its own) -> tokenizer.pt; held-out PSNR/SSIM, shape ceiling
  tokens            train and test splits encoded once into token caches
  nbp               three transformers (configs/nbp/synthetic*.yaml): class-conditional NBP (first
                    latent frame token by token, then one latent row per block), its NTP twin (block
                    1x1x1, the same time) and a frame-prediction NBP model (2 latent frames = 5 pixel
                    frames as the prefix); on a CPU with 2+ threads in two or three processes at once
                    (lightning_modules/demo/lanes.py)
  sample            NBP samples of every class (<ClassName>_<NN>.mp4, samples.gif, samples.png);
                    NBP and NTP sampling of the same batch timed -> speedup; both batches' count, colour and shape checks
  frame_prediction  held-out videos continued from their first 5 frames; PSNR/SSIM of the rest and
                    where the predicted objects are (found, centre error), beside freezing the last frame
Then a summary table and summary.json.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import torch
from jsonargparse import ArgumentParser

from nbp.data import build_dataset
from nbp.data.synthetic import CLASS_NAMES, is_circle, num_objects
from lightning_modules.demo.runner import Budget, StageRunner, log
from lightning_modules.demo.settings import (
    CLASS_SAMPLING, CONTEXT_LATENT_FRAMES, FPS, FRAME_MODEL_OVERRIDES, FRAME_SAMPLING, FRAMES, SIZE,
    TOKENIZER_ANCHOR_WEIGHT, TOKENIZER_EDGE_WEIGHT, TOKENIZER_OVERRIDES, TOKENIZER_TRAIN_FRAMES, dataset_config,
    prediction_videos_per_class, samples_per_class, transformer_config, videos_per_class,
)
from nbp.devices import add_device_argument, pick_device
from nbp.errors import UserError
from nbp.files import check_output_folder, write_json_atomic


# ------------------------------------------------------------------------------------------ plan


def choose_threads(requested: int) -> int:
    """Torch CPU threads: `requested`, or with 0 one per core unless the machine is already busy.

    On a loaded machine extra threads fight for the cores and every small op waits on them
    (docs/demo.md, "Threads on a busy machine").
    """
    if requested < 0:
        raise UserError(f"--threads={requested} is invalid; give 0 (choose automatically) or a positive count")
    if requested:
        return requested
    cores = os.cpu_count() or 1
    busy = hasattr(os, "getloadavg") and os.getloadavg()[0] >= cores
    return 1 if busy else cores


def resolve_device(name: str) -> str:
    """"cpu" or "cuda": the demo runs on one device kind (Lightning's accelerator names it)."""
    return pick_device(name).type


# ------------------------------------------------------------------------------------------ stages


def stage_data(folder: Path, minutes: float, seed: int) -> dict:
    from nbp.data.synthetic import split_sizes, write_synthetic_dataset

    per_class = videos_per_class(minutes)
    log(f"writing {per_class} synthetic videos per class ({FRAMES} frames, {SIZE} px) as mp4")
    root = write_synthetic_dataset(folder / "synthetic", videos_per_class=per_class, frames=FRAMES, size=SIZE,
                                   fps=FPS, seed=seed)
    sizes = split_sizes(per_class)
    return {"root": str(root), "videos_per_class": per_class, "train_videos": sizes["train"] * len(CLASS_NAMES),
            "test_videos": sizes["test"] * len(CLASS_NAMES)}


def stage_tokenizer(folder: Path, data_root: Path, budget: Budget, device: str) -> dict:
    from lightning_modules.demo.train import load_config, set_path, train_with_budget
    from lightning_modules.demo.evaluate import tokenizer_quality
    from tokenizer import VideoTokenizer

    config = load_config("tokenizer/synthetic.yaml")
    set_path(config, "trainer.accelerator", "gpu" if device == "cuda" else "cpu")
    # The config's clip settings stay as they are; only the location of its files is the demo's
    # (a split rendered on the fly, such as the config's validation videos, stays as it is).
    data_args = config["data"]["init_args"]
    for split in ("train", "val"):
        if data_args.get(split) is not None:
            data_args[split] = {**data_args[split], "size": SIZE}
        if data_args.get(split) is not None and data_args[split].get("root"):
            data_args[split] = {**data_args[split], "kind": "synthetic", "root": str(data_root)}
    data_args["train"]["frames"] = TOKENIZER_TRAIN_FRAMES
    set_path(config, "model.init_args.export_path", str(folder / "tokenizer.pt"))
    set_path(config, "model.init_args.overrides", TOKENIZER_OVERRIDES)
    set_path(config, "model.init_args.loss.anchor_weight", TOKENIZER_ANCHOR_WEIGHT)
    set_path(config, "model.init_args.loss.edge_weight", TOKENIZER_EDGE_WEIGHT)
    log(f"training the tokenizer for {budget.tokenizer_seconds:.0f} s")
    trainer, module, _ = train_with_budget(config, folder, budget.tokenizer_seconds)
    tokenizer = VideoTokenizer.load(folder / "tokenizer.pt")
    test = build_dataset(dataset_config(data_root, "test"))
    items = [test[i] for i in range(len(test))]
    scores = tokenizer_quality(tokenizer, [item["video"] for item in items],
                               objects=[num_objects(int(item["label"])) for item in items],
                               squares=[not is_circle(int(item["label"])) for item in items])
    return {**scores, "steps": int(module.generator_steps), "path": str(folder / "tokenizer.pt")}


def stage_tokens(folder: Path, data_root: Path, tokenizer_path: Path, device: str) -> dict:
    from nbp.commands.tokenize import tokenize_dataset

    result = {}
    for split in ("train", "test"):
        meta = tokenize_dataset(tokenizer_path, dataset_config(data_root, split), folder / split, batch_size=16,
                                device=device)
        result[split] = {"path": str(folder / split), "items": meta.num_items, "skipped": meta.num_skipped,
                         "grid": list(meta.grid)}
    return result


def stage_nbp(folder: Path, caches: dict, budget: Budget, device: str, threads: int) -> dict:
    from lightning_modules.demo.lanes import TrainJob, plan_lanes, train_jobs

    configs = {
        "nbp": transformer_config("nbp/synthetic.yaml", caches, device),
        # hybrid_blocks 1: the context frames already decided the scene, so every generated row is parallel;
        # and no class to add everywhere: the frame model's condition is the context frames
        "frames": transformer_config("nbp/synthetic.yaml", caches, device, condition="frames",
                                      context_frames=CONTEXT_LATENT_FRAMES, p_uncond=0.0, hybrid_blocks=1,
                                      class_every_position=False,
                                      **FRAME_MODEL_OVERRIDES),
        "ntp": transformer_config("nbp/synthetic_ntp.yaml", caches, device),
    }
    # In this order two lanes train nbp beside frames, then ntp beside the rest of frames.
    lanes, threads_per_lane = plan_lanes(device, threads, len(configs))
    seconds = budget.transformer_seconds(lanes)
    jobs = [TrainJob(name, config, folder / name, seconds[name]) for name, config in configs.items()]
    results = train_jobs(jobs, lanes, threads_per_lane)
    return {**results, "lanes": lanes, "threads_per_lane": threads_per_lane}


def stage_sample(folder: Path, models: dict, tokenizer_path: Path, minutes: float, seed: int, device: str) -> dict:
    from lightning_modules.demo.evaluate import class_samples
    from nbp.sampling import load_model
    from tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.load(tokenizer_path).to(device)
    nbp, ntp = load_model(models["nbp"]["path"], device), load_model(models["ntp"]["path"], device)
    return class_samples(nbp, ntp, tokenizer, list(CLASS_NAMES), samples_per_class(minutes), folder / "videos",
                         CLASS_SAMPLING, seed=seed, fps=FPS,
                         objects_per_class=[num_objects(c) for c in range(len(CLASS_NAMES))],
                         squares_per_class=[not is_circle(c) for c in range(len(CLASS_NAMES))])


def stage_frame_prediction(folder: Path, models: dict, tokenizer_path: Path, data_root: Path, minutes: float,
                           seed: int, device: str) -> dict:
    from lightning_modules.demo.evaluate import frame_prediction
    from nbp.sampling import load_model
    from tokenizer import VideoTokenizer

    tokenizer = VideoTokenizer.load(tokenizer_path).to(device)
    model = load_model(models["frames"]["path"], device)
    test = build_dataset(dataset_config(data_root, "test"))
    per_class = prediction_videos_per_class(minutes)
    chosen, taken = [], {}
    for index in range(len(test)):  # the first `per_class` held-out videos of every class
        label = test.videos[index][1] if hasattr(test, "videos") else test[index]["label"]
        if taken.get(label, 0) < per_class:
            taken[label] = taken.get(label, 0) + 1
            chosen.append(test[index])
    return frame_prediction(model, tokenizer, chosen, list(CLASS_NAMES), folder / "videos", FRAME_SAMPLING,
                            seed=seed, fps=FPS)


# ------------------------------------------------------------------------------------------ summary


def build_summary(runner: StageRunner, results: dict, args, wall_seconds: float) -> dict:
    tok, models, sample, pred = (results[k] for k in ("tokenizer", "nbp", "sample", "frame_prediction"))

    def transformer(name: str) -> dict:
        return {"val_bits_per_token": models[name]["val_bits_per_token"],
                "sampling_steps": sample[name]["sampling_steps"],
                "sampling_seconds": sample[name]["sampling_seconds"],
                "train_steps": models[name]["steps"], "block": models[name]["block"],
                # .get: absent from a sample stage finished by an older release
                "colours_right": sample[name].get("colours_right"), "objects_right": sample[name].get("objects_right"),
                "counts_right": sample[name].get("counts_right"), "shapes_right": sample[name].get("shapes_right"),
                "samples_right": sample[name].get("samples_right")}

    outputs = {"dataset": results["data"]["root"], "tokenizer": tok["path"],
               "nbp_model": models["nbp"]["path"], "ntp_model": models["ntp"]["path"],
               "frames_model": models["frames"]["path"], **sample["outputs"], **pred["outputs"]}
    return {
        "minutes": args.minutes,
        "tokenizer": {"psnr": tok["psnr"], "ssim": tok["ssim"], "code_usage": tok["code_usage"],
                      "codes_used": tok["codes_used"], "objects_right": tok.get("objects_right"),
                      # the shape judge on the tokenizer's reconstructions (the ceiling) and on the real videos
                      "shapes_right": tok.get("shapes_right"), "real_shapes_right": tok.get("real_shapes_right"),
                      "train_steps": tok["steps"]},
        "nbp": transformer("nbp"),
        "ntp": transformer("ntp"),
        "speedup": sample["speedup"],
        "frame_prediction": {"psnr": pred["psnr"], "ssim": pred["ssim"], "objects": pred.get("objects"),
                             "videos": pred["videos"],
                             "frames_model_val_bits_per_token": models["frames"]["val_bits_per_token"],
                             "copy_last_frame": pred["copy_last_frame"]},
        "stages": {name: record.seconds for name, record in runner.records.items()},
        "reused_stages": [name for name, record in runner.records.items() if record.reused],
        "wall_seconds": wall_seconds,
        "outputs": outputs,
    }


def _percent(fraction: float | None) -> str:
    return "n/a" if fraction is None else f"{100 * fraction:.0f}%"


def _objects(tracking: dict) -> str:
    error = tracking["centre_error_px"]
    return f"{_percent(tracking['found'])} found, " + ("none" if error is None else f"{error:.1f} px off")


def summary_table(summary: dict) -> str:
    nbp, ntp, tok, pred = summary["nbp"], summary["ntp"], summary["tokenizer"], summary["frame_prediction"]
    rows = [
        ("tokenizer (held-out)", f"PSNR {tok['psnr']:.2f} dB   SSIM {tok['ssim']:.3f}   "
                                 f"code usage {100 * tok['code_usage']:.1f}%"),
        ("NBP  (block " + "x".join(map(str, nbp["block"])) + ")",
         f"val {nbp['val_bits_per_token']:.3f} bits/token   {nbp['sampling_steps']} steps   "
         f"{nbp['sampling_seconds']:.2f} s"),
        ("NTP  (block " + "x".join(map(str, ntp["block"])) + ")",
         f"val {ntp['val_bits_per_token']:.3f} bits/token   {ntp['sampling_steps']} steps   "
         f"{ntp['sampling_seconds']:.2f} s"),
        ("speedup (NTP s / NBP s)", f"{summary['speedup']:.1f}x"),
        ("frames, right object count", f"NBP {_percent(nbp['objects_right'])}   NTP {_percent(ntp['objects_right'])}   "
                                       f"(tokenizer reconstructions: {_percent(tok['objects_right'])})"),
        ("samples, right object count", f"NBP {_percent(nbp.get('counts_right'))}   "
                                        f"NTP {_percent(ntp.get('counts_right'))}   (the count of most frames)"),
        ("samples, right colours", f"NBP {_percent(nbp['colours_right'])}   NTP {_percent(ntp['colours_right'])}   "
                                   "(the class's colours, all clip long; real videos: 100%)"),
        ("samples, right shape", f"NBP {_percent(nbp.get('shapes_right'))}   NTP {_percent(ntp.get('shapes_right'))}   "
                                 f"(squares vs circles; tokenizer reconstructions: {_percent(tok.get('shapes_right'))}, "
                                 f"real videos: {_percent(tok.get('real_shapes_right'))})"),
        ("samples, all three right", f"NBP {_percent(nbp.get('samples_right'))}   "
                                     f"NTP {_percent(ntp.get('samples_right'))}   (count, colours and shape)"),
        ("frame prediction", f"PSNR {pred['psnr']:.2f} dB   SSIM {pred['ssim']:.3f}   (freezing the last "
                             f"context frame: PSNR {pred['copy_last_frame']['psnr']:.2f} dB)"),
    ]
    if pred.get("objects"):  # absent from a frame_prediction stage finished by an older release
        rows.append(("predicted objects", f"{_objects(pred['objects'])}   (freezing the last context frame: "
                                          f"{_objects(pred['copy_last_frame']['objects'])})"))
    if summary.get("long"):
        from lightning_modules.demo.long import long_table

        rows += long_table(summary["long"])
    rows += [(f"stage {name}", f"{seconds:.1f} s" + ("  (reused)" if name in summary["reused_stages"] else ""))
             for name, seconds in summary["stages"].items()]
    rows += [(name, path) for name, path in summary["outputs"].items()]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"  {name:<{width}}  {value}" for name, value in rows)


# ------------------------------------------------------------------------------------------ entry point


def build_parser(prog: str) -> ArgumentParser:
    parser = ArgumentParser(prog=prog, exit_on_error=False, description="Run the whole pipeline on the synthetic dataset "
                                                   "(data, tokenizer, token cache, NBP + NTP, samples, frame prediction).")
    parser.add_argument("--out", type=str, default="runs/demo", help="output folder; a rerun reuses finished stages")
    parser.add_argument("--minutes", type=float, default=15.0, help="total budget; every stage scales with it")
    add_device_argument(parser)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--long", type=bool, default=False,
                        help="also train window models on 65-frame clips and write 65-frame samples "
                             "(lightning_modules/demo/long.py; about half the budget more)")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch CPU threads; 0: one per core, or 1 when the machine is already busy")
    return parser


def main(argv: list[str], prog: str = "nbp demo") -> int:
    args = build_parser(prog).parse_args(argv)
    budget = Budget(args.minutes)
    device = resolve_device(args.device)
    threads = choose_threads(args.threads)
    out = check_output_folder(args.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(args.seed)
    torch.set_num_threads(threads)
    started = time.perf_counter()
    runner = StageRunner(out)
    results: dict[str, dict] = {}
    log(f"{args.minutes:g}-minute demo into {out} on {device} ({threads} CPU thread{'s' * (threads > 1)})")

    results["data"] = runner.run("data", lambda f: stage_data(f, args.minutes, args.seed))
    data_root = Path(results["data"]["root"])
    results["tokenizer"] = runner.run("tokenizer", lambda f: stage_tokenizer(f, data_root, budget, device))
    tokenizer_path = Path(results["tokenizer"]["path"])
    results["tokens"] = runner.run("tokens", lambda f: stage_tokens(f, data_root, tokenizer_path, device))
    results["nbp"] = runner.run("nbp", lambda f: stage_nbp(f, results["tokens"], budget, device, threads))
    results["sample"] = runner.run("sample", lambda f: stage_sample(f, results["nbp"], tokenizer_path, args.minutes,
                                                                    args.seed, device))
    results["frame_prediction"] = runner.run(
        "frame_prediction",
        lambda f: stage_frame_prediction(f, results["nbp"], tokenizer_path, data_root, args.minutes, args.seed, device))

    long = None
    if args.long:
        from lightning_modules.demo.long import run_long_stages

        long = run_long_stages(runner, results, args, budget, device, threads)
    summary = build_summary(runner, results, args, time.perf_counter() - started)
    if long is not None:
        summary["long"] = long
    write_json_atomic(out / "summary.json", summary)
    print(f"\nnbp demo: {out}/summary.json\n{summary_table(summary)}", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
