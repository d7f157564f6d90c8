"""Every shipped config under configs/ trains real optimizer steps on CPU, scaled down.

Each run keeps what decides whether a config runs at all: its precision, gradient clipping,
gradient accumulation, strategy family (distributed DDP configs run as 2 gloo processes under
torchrun), the optimizer kernel chosen for that combination, and checkpointing (a periodic and a
last checkpoint that rebuild the model). Scaled down: depth and widths, the data (a token cache or
a few video files made here), the number of steps, devices and nodes. FSDP needs an accelerator,
so FSDP configs build their strategy here and train their precision / clipping / accumulation in
one process; `test_fsdp_configs_train_on_gpu` trains them under FSDP when a GPU is present.

`test_every_config_is_covered` fails when a YAML is added to configs/ without a run here.
Set NBP_CONFIG_REPORT=file.jsonl to collect each run's steps/s (recorded, never asserted).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import lightning as L
import pytest
import torch
import yaml

from lightning_modules.nbp_module import FILLED_FROM_DATA
from lightning_modules.strategies import BlockFSDP
from tests.lightning_modules.launch import (REPO_ROOT, fit_in_process, run_subprocess, torchrun_command,
                                            write_config)
from tests.token_caches import write_pattern_cache

STEPS = 4  # optimizer steps per run; checkpoints every 2
TINY_NBP = {"n_layer": 2, "n_head": 2, "n_embd": 32}
TINY_TOKENIZER = {"base_channels": 8, "num_res_blocks": 1, "norm_groups": 4}
CACHE_GRID = (3, 2, 16)  # rows of 16 as in the paper's block shape; 3 latent frames for 2 context frames
CACHE_VOCAB, CACHE_CLASSES = 50, 3


@dataclass(frozen=True)
class Case:
    configs: tuple[str, ...]  # shipped files, in the order they are given to --config

    @property
    def name(self) -> str:
        return "+".join(str(Path(c).relative_to("configs").with_suffix("")) for c in self.configs)

    @property
    def kind(self) -> str:
        return "tokenizer" if "tokenizer" in self.configs[0] else "nbp"


CASES = [Case((c,)) for c in (
    "configs/nbp/synthetic.yaml", "configs/nbp/synthetic_ntp.yaml", "configs/nbp/ucf101_base.yaml",
    "configs/nbp/ucf101_ntp.yaml", "configs/nbp/ucf101_3b.yaml", "configs/nbp/k600_base.yaml",
    "configs/nbp/k600_3b.yaml", "configs/tokenizer/synthetic.yaml", "configs/tokenizer/ucf101.yaml",
    "configs/tokenizer/k600.yaml", "configs/tokenizer/official_ucf_finetune.yaml")] + [
    Case(("configs/nbp/ucf101_base.yaml", "configs/scale/ucf101_base_64gpu.yaml")),
    Case(("configs/nbp/ucf101_3b.yaml", "configs/scale/ucf101_3b_fsdp.yaml")),
    Case(("configs/tokenizer/ucf101.yaml", "configs/scale/tokenizer_ucf101_ddp.yaml")),
]
# Configs run by the end-to-end recipe tests (tests/lightning_modules/test_local_recipe.py).
RECIPE_CONFIGS = ("configs/local.yaml",)


def test_every_config_is_covered():
    shipped = {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / "configs").rglob("*.yaml")}
    covered = {c for case in CASES for c in case.configs} | set(RECIPE_CONFIGS)
    assert shipped - covered == set(), f"configs without a training run in the tests: {sorted(shipped - covered)}"
    assert covered - shipped == set(), f"tests name configs that do not exist: {sorted(covered - shipped)}"


# ---------------------------------------------------------------------- what a config asks for


def merged(configs: tuple[str, ...]) -> dict:
    """The shipped YAML files merged in order, as the command line merges them (mappings key by key)."""
    def merge(a: dict, b: dict) -> dict:
        out = dict(a)
        for key, value in b.items():
            out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        return out

    result: dict = {}
    for config in configs:
        result = merge(result, yaml.safe_load((REPO_ROOT / config).read_text()))
    return result


def is_fsdp(strategy) -> bool:
    name = strategy["class_path"] if isinstance(strategy, dict) else str(strategy or "")
    return "fsdp" in name.lower()


def is_distributed(trainer: dict) -> bool:
    return int(trainer.get("devices", 1)) * int(trainer.get("num_nodes", 1)) > 1


def clip_of(shipped: dict) -> float | None:
    if "tokenizer" in shipped["model"]["class_path"].lower():
        return shipped["model"]["init_args"].get("grad_clip", 1.0)  # the module clips its own two optimizers
    return shipped["trainer"].get("gradient_clip_val")


# ---------------------------------------------------------------------- tiny data made here


def write_token_cache(root: Path, n: int = 16, seed: int = 0) -> Path:
    """Grids of 3 latent frames with rows of 16, as the paper's block shape needs for 2 context frames."""
    return write_pattern_cache(root, n=n, seed=seed, grid=CACHE_GRID, vocab=CACHE_VOCAB, classes=CACHE_CLASSES,
                               frames=9, resolution=(16, 128), shard_size=8)


def kinetics_layout(ucf_root: Path, out: Path) -> Path:
    """The synthetic videos rearranged as the documented Kinetics layout: root/{train,val}/<class>/*.mp4."""
    for split, listing in (("train", "trainlist01.txt"), ("val", "testlist01.txt")):
        for line in (ucf_root / listing).read_text().split("\n"):
            if line.strip():
                rel = Path(line.split()[0])
                target = out / split / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.symlink_to(ucf_root / rel)
    return out


@pytest.fixture(scope="session")
def token_cache(tmp_path_factory) -> Path:
    return write_token_cache(tmp_path_factory.mktemp("shipped_tokens") / "cache")


@pytest.fixture(scope="session")
def kinetics_root(synthetic_root, tmp_path_factory) -> Path:
    return kinetics_layout(Path(synthetic_root), tmp_path_factory.mktemp("kinetics") / "k600")


# ---------------------------------------------------------------------- the scaled-down run


def scale_down(case: Case, root: Path, cache: Path, ucf_root: Path, k600_root: Path, processes: int,
               accelerator: str = "cpu") -> dict:
    """The overlay given after the shipped configs: tiny model and data, few steps, this machine."""
    shipped = merged(case.configs)
    strategy = shipped["trainer"].get("strategy")
    trainer = {"accelerator": accelerator, "devices": processes, "num_nodes": 1, "max_steps": STEPS,
               "max_time": None, "val_check_interval": 2, "check_val_every_n_epoch": None, "limit_val_batches": 1,
               "num_sanity_val_steps": 0, "log_every_n_steps": 1, "enable_progress_bar": False,
               "enable_model_summary": False, "default_root_dir": str(root)}
    if is_fsdp(strategy) and accelerator == "cpu":
        trainer["strategy"] = "auto"  # FSDP needs an accelerator; the strategy itself is built in its own test
    init = shipped["model"]["init_args"]
    if case.kind == "nbp":
        # The fields a token cache fixes are taken from this cache (the demo configs pin their own tokenizer's).
        derived = {key: None for key in FILLED_FROM_DATA}
        model = {"init_args": {"overrides": {**init["overrides"], **derived, **TINY_NBP}, "warmup_steps": 1}}
        data = {"init_args": {"train_cache": str(cache), "val_cache": str(cache), "batch_size": 2, "num_workers": 0}}
    else:
        loss = dict(init.get("loss") or {})
        if loss.get("disc_weight", 0) > 0:
            loss.update(disc_start=1, disc_channels=8)  # a narrow discriminator (the second optimizer) joins after one step
        model = {"init_args": {"overrides": TINY_TOKENIZER, "loss": loss, "warmup_steps": 1,
                               "export_path": str(root / "tokenizer.pt")}}
        if init.get("init_from"):  # a released-format file of the tiny width stands in for the download
            from tests.nbp.official.golden import reference_tokenizer_state

            start = root / "magvit2_released_format.pt"
            torch.save({"model_state_dict": reference_tokenizer_state(0, **TINY_TOKENIZER)}, start)
            model["init_args"]["init_from"] = str(start)
        data_args = shipped["data"]["init_args"]
        videos = str(k600_root if data_args["train"]["kind"] == "k600" else ucf_root)
        clips = {"root": videos, "frames": 9, "size": 32, "cache": False}
        data = {"init_args": {"train": {**data_args["train"], **clips}, "batch_size": 2, "val_batch_size": 2,
                              "num_workers": 0}}
        if data_args.get("val") is not None and data_args["val"].get("root") is not None:
            data["init_args"]["val"] = {**data_args["val"], **clips}
    # The tokenizer's global step moves by 2 per batch once the discriminator is on: checkpoint every step.
    every = 2 if case.kind == "nbp" else 1
    return {"trainer": trainer, "model": model, "data": data, "checkpoint": {"every_n_train_steps": every}}


def run_case(case: Case, root: Path, cache: Path, ucf_root: Path, k600_root: Path, capsys,
             accelerator: str = "cpu") -> tuple[str, dict]:
    shipped = merged(case.configs)
    processes = 2 if is_distributed(shipped["trainer"]) and not is_fsdp(shipped["trainer"].get("strategy")) else 1
    if accelerator != "cpu":
        processes = 1
    overlay = write_config(root / "scale_down.yaml", scale_down(case, root, cache, ucf_root, k600_root, processes,
                                                                accelerator))
    args = [a for c in case.configs[1:] for a in ("--config", str(REPO_ROOT / c))] + ["--config", str(overlay)]
    timer = {"class_path": "tests.lightning_modules.toy.StepTimer", "init_args": {"out": str(root / "timing.json")}}
    args += ["--trainer.callbacks+", json.dumps(timer)]
    start = time.perf_counter()
    if processes > 1:
        done = run_subprocess(torchrun_command(REPO_ROOT / case.configs[0], *args, nproc=processes), timeout=300)
        output = done.stdout + done.stderr
        assert done.returncode == 0, output[-4000:]
        assert "MEMBER: 2/2" in output  # really two processes in one gloo group
    else:
        code = fit_in_process(REPO_ROOT / case.configs[0], *args)
        captured = capsys.readouterr()
        output = captured.out + captured.err
        assert code == 0, output[-4000:]
    record = {"config": case.name, "processes": processes, "wall_s": round(time.perf_counter() - start, 2)}
    if (root / "timing.json").is_file():
        record.update(json.loads((root / "timing.json").read_text()))
    if os.environ.get("NBP_CONFIG_REPORT"):
        with open(os.environ["NBP_CONFIG_REPORT"], "a") as f:
            f.write(json.dumps(record) + "\n")
    return output, shipped


def check_run(case: Case, root: Path, output: str, shipped: dict) -> None:
    trainer = shipped["trainer"]
    precision, clip = trainer.get("precision", "32-true"), clip_of(shipped)
    kernel = "foreach" if "mixed" in precision and clip else "fused"
    assert f"{kernel} Adam (" in output and f"precision={precision}" in output, output[-3000:]
    with_discriminator = case.kind == "tokenizer" and (shipped["model"]["init_args"].get("loss") or {}).get(
        "disc_weight", 0) > 0
    assert output.count("Adam (") == (2 if with_discriminator else 1)  # once per optimizer, by rank 0 only

    ckpts = root / "checkpoints"
    last = torch.load(ckpts / "last.ckpt", map_location="cpu", weights_only=True)
    batches = last["loops"]["fit_loop"]["epoch_loop.batch_progress"]["total"]["processed"]
    accumulate = int(trainer.get("accumulate_grad_batches", 1))
    if case.kind == "nbp":
        assert last["global_step"] == STEPS and (ckpts / "step=2.ckpt").is_file()
        assert batches == STEPS * accumulate  # the config's gradient accumulation really happened
        from lightning_modules.nbp_module import NBPModule

        model = NBPModule.load_model(ckpts / "last.ckpt")
        cfg = model.config
        assert (cfg.grid, cfg.vocab_size) == (CACHE_GRID, CACHE_VOCAB)  # derived from the cache's meta.json
        assert cfg.n_embd == TINY_NBP["n_embd"] and list(cfg.block) == shipped["model"]["init_args"]["overrides"]["block"]
        assert (root / "checkpoints" / "model.pt").is_file()
    else:
        # global_step counts the generator's and the discriminator's steps
        assert last["global_step"] >= STEPS and len(list(ckpts.glob("step=*.ckpt"))) >= 1
        from tokenizer import VideoTokenizer

        tok = VideoTokenizer.load(root / "tokenizer.pt")
        assert tok.config.base_channels == TINY_TOKENIZER["base_channels"]


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_shipped_config_trains(case, tmp_path, token_cache, synthetic_root, kinetics_root, capsys):
    output, shipped = run_case(case, tmp_path, token_cache, Path(synthetic_root), kinetics_root, capsys)
    check_run(case, tmp_path, output, shipped)


@pytest.mark.parametrize("case", [c for c in CASES if is_fsdp(merged(c.configs)["trainer"].get("strategy"))],
                         ids=lambda c: c.name)
def test_fsdp_configs_build_their_strategy(case):
    """What CPU allows for FSDP: the config's strategy is built and accepted by a Trainer on 2 processes."""
    spec = merged(case.configs)["trainer"]["strategy"]
    assert spec["class_path"] == "lightning_modules.strategies.BlockFSDP"
    strategy = BlockFSDP(**spec["init_args"])
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy=strategy, logger=False,
                        precision=merged(case.configs)["trainer"]["precision"])
    assert trainer.strategy is strategy and strategy._state_dict_type == spec["init_args"]["state_dict_type"]
    assert (strategy._activation_checkpointing_kwargs != {}) == spec["init_args"]["activation_checkpointing"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="FSDP needs a CUDA device")
@pytest.mark.parametrize("case", [c for c in CASES if is_fsdp(merged(c.configs)["trainer"].get("strategy"))],
                         ids=lambda c: c.name)
def test_fsdp_configs_train_on_gpu(case, tmp_path, token_cache, synthetic_root, kinetics_root, capsys):
    output, shipped = run_case(case, tmp_path, token_cache, Path(synthetic_root), kinetics_root, capsys,
                               accelerator="gpu")
    assert "foreach Adam (" in output
    assert (tmp_path / "checkpoints" / "last.ckpt").exists()
