"""Real multi-process training on CPU (gloo): DDP ranks agree with each other and with one process."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.lightning_modules.launch import (
    assert_same_weights,
    fit_in_process,
    free_port,
    load_weights,
    popen,
    run_subprocess,
    torchrun_command,
    write_config,
)

pytestmark = pytest.mark.slow  # spawns processes

GLOBAL_BATCH = 8


def nbp_config(root: Path, cache: Path, *, batch_size: int, devices: int = 1, num_nodes: int = 1) -> dict:
    """The real transformer module on a tiny token cache, 3 steps, weights dumped by every rank."""
    return {
        "trainer": {
            "accelerator": "cpu", "devices": devices, "num_nodes": num_nodes,
            "strategy": "ddp" if devices * num_nodes > 1 else "auto",
            "max_steps": 3, "logger": False, "enable_progress_bar": False, "enable_model_summary": False,
            "num_sanity_val_steps": 0, "gradient_clip_val": 1.0, "default_root_dir": str(root),
            "callbacks": [{"class_path": "tests.lightning_modules.toy.DumpWeights", "init_args": {"out_dir": str(root / "dump")}}],
        },
        "model": {
            "class_path": "lightning_modules.nbp_module.NBPModule",
            "init_args": {
                "preset": "tiny",
                "overrides": {"block": [1, 1, 4], "first_block": "hybrid", "condition": "class", "num_classes": 3,
                              "p_uncond": 0.0, "dropout": 0.0, "n_layer": 2, "n_head": 2, "n_embd": 32},
                "lr": 1e-3, "warmup_steps": 1, "export_name": None,
            },
        },
        "data": {"class_path": "lightning_modules.token_data.TokenDataModule",
                 "init_args": {"train_cache": str(cache), "batch_size": batch_size}},
    }


@pytest.fixture(scope="module")
def token_cache(tmp_path_factory) -> Path:
    from tests.lightning_modules.test_nbp_module import write_pattern_cache

    return write_pattern_cache(tmp_path_factory.mktemp("tokens") / "cache", n=32)


@pytest.fixture(scope="module")
def transformer_one_process(tmp_path_factory, token_cache) -> Path:
    """Weights after the steps of one process with the whole global batch."""
    root = tmp_path_factory.mktemp("one_process")
    assert fit_in_process(write_config(root / "c.yaml", nbp_config(root, token_cache, batch_size=GLOBAL_BATCH))) == 0
    return root / "dump"


def test_transformer_two_nodes_match_one_process(tmp_path, token_cache, transformer_one_process):
    """`torchrun --nnodes 2 --nproc-per-node 1` twice (as on two hosts), rendezvous on 127.0.0.1:
    the two DDP ranks end bit-identical, and equal to one process with the same global batch."""
    cfg = nbp_config(tmp_path, token_cache, batch_size=GLOBAL_BATCH // 2, num_nodes=2)
    config_path = write_config(tmp_path / "c.yaml", cfg)
    port = free_port()
    nodes = [popen(torchrun_command(config_path, nnodes=2, node_rank=rank, port=port)) for rank in (0, 1)]
    outputs = [node.communicate(timeout=300)[0] for node in nodes]
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-4000:]
    rank0 = load_weights(tmp_path / "dump", 0)
    assert_same_weights(rank0, load_weights(tmp_path / "dump", 1))
    # same samples in the same global batches; only the fp32 summation order differs
    assert_same_weights(rank0, load_weights(transformer_one_process), atol=1e-5)
    # one log stream: only global rank 0 reports the run
    assert sum(output.count("`Trainer.fit` stopped") for output in outputs) == 1


def tokenizer_config(root: Path, videos: Path, *, batch_size: int, devices: int = 1) -> dict:
    """The real tokenizer module (manual optimization) on real synthetic video files, 3 steps."""
    return {
        "trainer": {
            "accelerator": "cpu", "devices": devices,
            # the discriminator is built but not yet used (disc_start): DDP must allow unused parameters
            "strategy": "ddp_find_unused_parameters_true" if devices > 1 else "auto",
            "max_steps": 3, "limit_val_batches": 0, "logger": False, "enable_progress_bar": False,
            "enable_model_summary": False, "num_sanity_val_steps": 0, "default_root_dir": str(root),
            "callbacks": [{"class_path": "tests.lightning_modules.toy.DumpWeights", "init_args": {"out_dir": str(root / "dump")}}],
        },
        "model": {
            "class_path": "lightning_modules.tokenizer_module.TokenizerModule",
            "init_args": {
                "preset": "synthetic",
                "overrides": {"base_channels": 8, "channel_mults": [1, 1, 2], "num_res_blocks": 1, "norm_groups": 4,
                              "spatial_downsample": 4, "fsq_levels": [5, 5, 5]},
                "lr": 3e-3, "betas": [0.9, 0.99], "export_path": None,
                "loss": {"disc_weight": 0.1, "disc_start": 1000, "disc_channels": 4, "disc_layers": 1},
            },
        },
        "data": {"class_path": "lightning_modules.video_data.VideoDataModule",
                 "init_args": {"train": {"kind": "synthetic", "root": str(videos), "split": "train", "frames": 9, "size": 16},
                               "batch_size": batch_size}},
    }


def test_tokenizer_two_process_ddp_matches_one_process(tmp_path, synthetic_root):
    one = tmp_path / "one"
    assert fit_in_process(write_config(one / "c.yaml", tokenizer_config(one, synthetic_root, batch_size=4))) == 0
    two = tmp_path / "two"
    cfg = tokenizer_config(two, synthetic_root, batch_size=2, devices=2)
    out = run_subprocess(torchrun_command(write_config(two / "c.yaml", cfg), nproc=2))
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    rank0 = load_weights(two / "dump", 0)
    assert_same_weights(rank0, load_weights(two / "dump", 1))
    # Summation order differs between 2x2 and 1x4 samples. Adam divides every gradient by its own RMS, so
    # where a gradient is nearly zero (the first conv of a residual block whose second conv starts at
    # zero) a rounding difference becomes a small fraction of an lr-sized step (lr 3e-3 here). Ranks
    # that saw different data, or no gradient sync, differ by whole steps.
    assert_same_weights(rank0, load_weights(one / "dump"), atol=1e-4)


def test_nan_on_one_rank_stops_every_rank_without_hanging(tmp_path):
    from tests.lightning_modules.launch import toy_config

    cfg = toy_config(tmp_path, max_steps=20, devices=2, strategy="ddp", every_n_train_steps=2, nan_at_step=5, nan_rank=1)
    out = run_subprocess(torchrun_command(write_config(tmp_path / "c.yaml", cfg), nproc=2), timeout=240)
    log = out.stdout + out.stderr
    assert out.returncode != 0
    # both ranks stop at the same step with one line each (3 batches per rank and epoch: step 5 is in epoch 1)
    assert "nbp: error: loss is nan at global step 5 (epoch 1, rank 1)" in log
    assert "nbp: error: the loss is non-finite on another rank at global step 5 (epoch 1, rank 0)" in log
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=False)
    assert checkpoint["global_step"] == 4
