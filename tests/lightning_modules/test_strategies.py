"""Strategies and launch configs construct and validate on CPU; real FSDP training needs a GPU."""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_modules.cli import NBPLightningCLI
from lightning_modules.strategies import BlockFSDP, DeepSpeed, deepspeed_installed, import_class, resolve_block_classes
from nbp.config import NBPConfig
from nbp.errors import UserError
from nbp.model import Block, NBPTransformer
from tokenizer.layers import ResBlock3d

REPO = Path(__file__).resolve().parents[2]
TINY = dict(vocab_size=16, grid=(2, 4, 4), block=(1, 1, 4), n_layer=3, n_head=2, n_embd=32, dropout=0.0)


def test_auto_wrap_finds_transformer_and_tokenizer_blocks():
    assert resolve_block_classes("auto") == {Block, ResBlock3d}
    assert resolve_block_classes(["nbp.model.Block"]) == {Block}


@pytest.mark.parametrize(
    "wrap, match",
    [("nbp.model.NoSuchBlock", "has no class 'NoSuchBlock'"), ("nowhere.Block", "cannot import module"),
     ("Block", "dotted path"), ([], "empty")],
)
def test_bad_wrap_class_is_a_user_error(wrap, match):
    with pytest.raises(UserError, match=match):
        BlockFSDP(wrap=wrap)


def test_sharding_strategies_validate():
    for name in ("FULL_SHARD", "shard_grad_op", "NO_SHARD", "HYBRID_SHARD"):
        assert BlockFSDP(sharding_strategy=name).sharding_strategy.name == name.upper()
    with pytest.raises(UserError, match="sharding_strategy='ZERO9'.*FULL_SHARD"):
        BlockFSDP(sharding_strategy="ZERO9")
    with pytest.raises(UserError, match="state_dict_type"):
        BlockFSDP(state_dict_type="half")


def test_hybrid_sharding_mesh_is_nodes_by_devices():
    strategy = BlockFSDP(sharding_strategy="HYBRID_SHARD", activation_checkpointing=True)
    trainer = L.Trainer(accelerator="cpu", devices=2, num_nodes=3, strategy=strategy, logger=False)
    assert trainer.strategy is strategy and strategy.is_hybrid
    assert strategy.hybrid_mesh_shape() == (3, 2)  # replicate across 3 nodes, shard over 2 local devices
    assert strategy._state_dict_type == "sharded"


def test_registered_short_names():
    trainer = L.Trainer(accelerator="cpu", devices=2, strategy="fsdp_hybrid_blocks", logger=False)
    assert isinstance(trainer.strategy, BlockFSDP) and trainer.strategy.is_hybrid


def test_wrap_policy_and_activation_checkpointing_on_a_real_model():
    """The policy FSDP receives picks exactly the transformer blocks (FSDP itself needs a GPU)."""
    from lightning.fabric.strategies.fsdp import _setup_activation_checkpointing
    from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import CheckpointWrapper

    strategy = BlockFSDP(activation_checkpointing=True)
    model = NBPTransformer(NBPConfig.from_preset("tiny", **TINY))
    policy = strategy.kwargs["auto_wrap_policy"]
    targets = policy._run_policy(model, ignored_modules=set(), root_kwargs={})
    blocks = {m for m in model.modules() if isinstance(m, Block)}
    assert len(blocks) == TINY["n_layer"] and {m for m in targets if m is not model} == blocks

    _setup_activation_checkpointing(model, strategy._activation_checkpointing_kwargs)
    assert sum(isinstance(m, CheckpointWrapper) for m in model.modules()) == TINY["n_layer"]


def test_deepspeed_validates_stage_and_needs_the_extra():
    with pytest.raises(UserError, match="stage=4.*1, 2 or 3"):
        DeepSpeed(stage=4)
    with pytest.raises(UserError, match="offload_parameters needs stage 3"):
        DeepSpeed(stage=2, offload_parameters=True)
    if not deepspeed_installed():
        with pytest.raises(UserError, match=r"pip install 'nbp-video\[deepspeed\]'"):
            DeepSpeed(stage=1)


@pytest.mark.skipif(not deepspeed_installed(), reason="the optional deepspeed extra is not installed")
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_deepspeed_stages_construct_when_installed(stage):
    assert DeepSpeed(stage=stage).config["zero_optimization"]["stage"] == stage


class ParseOnlyCLI(NBPLightningCLI):
    """Parse and type-check a config like `nbp train fit` does, without building the (huge) model."""

    def instantiate_classes(self) -> None:
        pass


def parse_config(*configs: str) -> dict:
    args = []
    for config in configs:
        args += ["--config", str(REPO / config)]
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")  # pytest's own argv
    cli = ParseOnlyCLI(L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
                       args=args, run=False)
    return cli.config.as_dict()


def build_strategy(spec):
    if isinstance(spec, str):
        return spec
    return import_class(spec["class_path"])(**spec.get("init_args", {}))


@pytest.mark.parametrize(
    "configs, nodes, strategy_type, batch",
    [
        (("configs/nbp/ucf101_base.yaml", "configs/scale/ucf101_base_64gpu.yaml"), 8, str, 4),
        (("configs/nbp/ucf101_3b.yaml", "configs/scale/ucf101_3b_fsdp.yaml"), 8, BlockFSDP, 4),
    ],
)
def test_scale_configs_parse_and_build(configs, nodes, strategy_type, batch):
    config = parse_config(*configs)
    trainer = config["trainer"]
    assert trainer["num_nodes"] == nodes and trainer["precision"] == "bf16-mixed"
    # global batch 256 as in the paper
    per_step = config["data"]["init_args"]["batch_size"] * trainer["devices"] * nodes * trainer["accumulate_grad_batches"]
    assert config["data"]["init_args"]["batch_size"] == batch and per_step == 256
    strategy = build_strategy(trainer["strategy"])
    assert isinstance(strategy, strategy_type)
    if isinstance(strategy, BlockFSDP):
        assert strategy.is_hybrid and strategy.block_classes >= {Block}
    model = config["model"]["init_args"]
    NBPConfig.from_preset(model["preset"], **model["overrides"])  # validates without allocating weights


def test_tokenizer_scale_config_parses():
    from tokenizer import TokenizerConfig

    config = parse_config("configs/tokenizer/ucf101.yaml", "configs/scale/tokenizer_ucf101_ddp.yaml")
    trainer = config["trainer"]
    assert trainer["strategy"] == "ddp_find_unused_parameters_true" and trainer["num_nodes"] == 2
    assert config["model"]["init_args"]["export_path"] == "runs/tokenizer_ucf101_ddp/tokenizer.pt"
    assert config["model"]["init_args"]["loss"]["disc_start"] == 20000  # kept from the base config
    TokenizerConfig.from_preset(config["model"]["init_args"]["preset"])


@pytest.mark.gpu
@pytest.mark.skipif(torch.cuda.device_count() < 1, reason="needs a CUDA device")
def test_fsdp_fit_on_gpu(tmp_path):
    from tests.lightning_modules.launch import fit_in_process, toy_config, write_config

    cfg = toy_config(tmp_path, max_steps=4)
    cfg["trainer"].update(accelerator="gpu", devices=1, precision="bf16-mixed",
                          strategy={"class_path": "lightning_modules.strategies.BlockFSDP",
                                    "init_args": {"wrap": ["torch.nn.Linear"], "state_dict_type": "sharded"}})
    assert fit_in_process(write_config(tmp_path / "c.yaml", cfg)) == 0
    assert (tmp_path / "checkpoints" / "last.ckpt" / ".metadata").is_file()  # distributed checkpoint folder
