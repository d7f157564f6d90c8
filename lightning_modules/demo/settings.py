"""The demo's settings: clip shape, model and tokenizer overrides, sampling controls, dataset sizes.

One module that the demo's stages (cli.py) and its long-video option (long.py) both read, so the
two always agree on the frame size and the models. Why each setting: docs/experiments/2026-12-07-demo.md
and 2026-12-08-demo.md.
"""

from __future__ import annotations

from pathlib import Path

from nbp.data import DatasetConfig
from nbp.sampling_controls import SamplingControls

FRAMES, SIZE, FPS = 17, 56, 8  # the synthetic pipeline: 17x56x56 clips (11-px objects) -> a 5x7x7 token grid
CONTEXT_LATENT_FRAMES = 2  # frame prediction: 2 latent frames = 5 pixel frames of context

# Why each setting below: docs/experiments/2026-12-07-demo.md and 2026-12-08-demo.md, which hold the measurements.
# Smaller than configs/nbp/synthetic.yaml: at this size a CPU step is mostly fixed overhead, so the smallest model learns most.
MODEL_OVERRIDES = {"n_layer": 2, "n_head": 4, "n_embd": 64}
# 200 codes: as sharp as 1000 (at 32 px), with a smaller output layer and easier tokens for the transformers.
# decoder_time_kernel 1: each latent frame decoded from its own codes, so a disagreement between two
# generated latent frames does not fade an object out where they meet.
# 8x spatial compression with 4x4 pixels folded into channels first: the convs then run at the same
# resolutions as the 32-px preset's, so a step costs the same for frames 3x as large.
TOKENIZER_OVERRIDES = {"fsq_levels": [8, 5, 5], "decoder_time_kernel": 1, "spatial_downsample": 8, "patch_size": 4}
# The colour anchor (each code carries its own pixels' mean colour) is off: with 8x8-pixel codes of three
# FSQ dimensions it left no room for the objects' outlines.
TOKENIZER_ANCHOR_WEIGHT = 0.0
# Extra weight on the pixels along the objects' edges (LossConfig.edge_weight): off, weight 10 did not help here.
TOKENIZER_EDGE_WEIGHT = 0.0
TOKENIZER_TRAIN_FRAMES = 9  # the config's training clips: the causal CNN is the same at every step after the first
# The frame model: 3D rotary positions (continuing a motion is reading offsets in t, h, w) and wider,
# since trained side by side it gets twice the class models' time.
FRAME_MODEL_OVERRIDES = {"arch": "modern", "n_embd": 96}
MODEL_BATCH_SIZE = 8
MODEL_LR = 3e-3

# Class samples: guided (the class models train with p_uncond 0.1); top-k 20 cuts the tail of rare codes
# that put a stray piece of an object somewhere. Frame predictions: unguided (no null context) and cooler,
# since the context decides the motion and randomness only scatters the objects.
CLASS_SAMPLING = SamplingControls(temperature=1.0, top_k=20, top_p=None, cfg_scale=2.0)
FRAME_SAMPLING = SamplingControls(temperature=0.7, top_k=50, top_p=None, cfg_scale=1.0)


# ------------------------------------------------------------------------------------------ plan


def videos_per_class(minutes: float) -> int:
    """Dataset size scales with the budget: 400 videos per class at 15 minutes, at least 5.

    The tokenizer is what needs them: on 20 per class its held-out PSNR stops improving early.
    """
    return int(min(400, max(5, round(27 * minutes))))


def samples_per_class(minutes: float) -> int:
    return 4 if minutes >= 5 else 2


def prediction_videos_per_class(minutes: float) -> int:
    return 2 if minutes >= 5 else 1


def dataset_config(root: Path, split: str) -> DatasetConfig:
    return DatasetConfig(kind="synthetic", root=str(root), split=split, frames=FRAMES, fps=FPS, size=SIZE,
                         cache=True)


def transformer_config(name: str, caches: dict, device: str, **overrides) -> dict:
    from lightning_modules.demo.train import load_config, set_path

    config = load_config(name)
    model_overrides = {**config["model"]["init_args"].get("overrides", {}), **MODEL_OVERRIDES, **overrides}
    # vocab_size and grid are filled from the token cache: the demo's tokenizer decides them
    model_overrides.pop("vocab_size", None)
    config_rows = model_overrides.pop("grid", [None, None])[1]
    rows, width = caches["train"]["grid"][1:]
    # The config's one-latent-row blocks and its whole first latent frame token by token, at the cache's grid.
    if model_overrides.get("block", [1, 1, 1]) != [1, 1, 1]:
        model_overrides["block"] = [1, 1, width]
    if "hybrid_blocks" not in overrides and model_overrides.get("hybrid_blocks") == config_rows:
        model_overrides["hybrid_blocks"] = rows
    set_path(config, "model.init_args.overrides", model_overrides)
    set_path(config, "model.init_args.lr", MODEL_LR)
    set_path(config, "model.init_args.warmup_steps", 0)  # the demo's warm-up is by time (TimeBudgetSchedule)
    set_path(config, "model.init_args.total_steps", 10 ** 9)
    set_path(config, "trainer.accelerator", "gpu" if device == "cuda" else "cpu")
    set_path(config, "data.init_args.train_cache", caches["train"]["path"])
    set_path(config, "data.init_args.val_cache", caches["test"]["path"])
    set_path(config, "data.init_args.batch_size", MODEL_BATCH_SIZE)
    return config
