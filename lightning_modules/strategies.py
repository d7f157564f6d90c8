"""Distributed strategies for `nbp train`, configurable from YAML and the command line.

- `ddp`: Lightning's own (`trainer.strategy: ddp`); activation checkpointing then comes from the
  model config (`grad_checkpointing: true` for the transformer).
- `BlockFSDP`: FSDP that wraps (and optionally activation-checkpoints) each transformer block /
  tokenizer residual block; sharding FULL_SHARD, SHARD_GRAD_OP, NO_SHARD or HYBRID_SHARD (shard
  inside a node, replicate across nodes); sharded (distributed) checkpoints by default.
- `DeepSpeed`: ZeRO stages 1-3 when the optional `deepspeed` extra is installed.

The block classes are named by dotted path and imported only when a strategy is built, so this
module (and the CLI) does not pull in either model. Registered short names:
`--trainer.strategy fsdp_blocks` and `--trainer.strategy fsdp_hybrid_blocks`.
"""

from __future__ import annotations

import importlib
import importlib.util
from typing import Any, Literal

from lightning.pytorch.strategies import DeepSpeedStrategy, FSDPStrategy, StrategyRegistry

from nbp.errors import UserError

# The units FSDP shards and checkpoints as one piece: a transformer layer, a tokenizer res-block.
BLOCK_CLASSES = ("nbp.model.Block", "tokenizer.layers.ResBlock3d")
SHARDING_STRATEGIES = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "_HYBRID_SHARD_ZERO2")
DEEPSPEED_STAGES = (1, 2, 3)


def import_class(dotted: str) -> type:
    """`package.module.Class` -> the class, or a UserError naming what failed."""
    module_name, _, class_name = dotted.rpartition(".")
    if not module_name:
        raise UserError(f"strategy wrap class '{dotted}' must be a dotted path like nbp.model.Block")
    try:
        module = importlib.import_module(module_name)
    except ImportError as err:
        raise UserError(f"strategy wrap class '{dotted}': cannot import module '{module_name}' ({err})") from None
    cls = getattr(module, class_name, None)
    if not isinstance(cls, type):
        raise UserError(f"strategy wrap class '{dotted}': module '{module_name}' has no class '{class_name}'")
    return cls


def resolve_block_classes(wrap: str | list[str]) -> set[type]:
    """"auto" -> every class of BLOCK_CLASSES that exists; a list -> exactly those classes."""
    if wrap == "auto":
        found = set()
        for dotted in BLOCK_CLASSES:
            try:
                found.add(import_class(dotted))
            except UserError:
                continue  # a model part that is not installed cannot be in this model either
        if not found:
            raise UserError(f"wrap=auto found none of the block classes {', '.join(BLOCK_CLASSES)}")
        return found
    if isinstance(wrap, str):
        wrap = [wrap]
    if not wrap:
        raise UserError("strategy wrap list is empty; give 'auto' or dotted class paths like nbp.model.Block")
    return {import_class(name) for name in wrap}


class BlockFSDP(FSDPStrategy):
    """FSDP with one FSDP unit per block.

    wrap: "auto" (transformer Block and tokenizer ResBlock3d) or a list of dotted class paths.
    sharding_strategy: FULL_SHARD | SHARD_GRAD_OP | NO_SHARD | HYBRID_SHARD | _HYBRID_SHARD_ZERO2.
      HYBRID_SHARD shards within each node and replicates across nodes (device mesh
      (num_nodes, devices per node) unless `device_mesh` is given).
    activation_checkpointing: recompute each block in backward (saves activation memory).
    state_dict_type: "sharded" writes a distributed checkpoint folder (each rank its shard, no
      gathering on rank 0: the only way for 3B-scale models); "full" writes one file.
    """

    def __init__(
        self,
        wrap: str | list[str] = "auto",
        sharding_strategy: str = "FULL_SHARD",
        activation_checkpointing: bool = False,
        state_dict_type: Literal["full", "sharded"] = "sharded",
        cpu_offload: bool = False,
        device_mesh: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> None:
        if sharding_strategy.upper() not in SHARDING_STRATEGIES:
            raise UserError(
                f"trainer.strategy.sharding_strategy={sharding_strategy!r} is not valid; use one of {', '.join(SHARDING_STRATEGIES)}"
            )
        if state_dict_type not in ("full", "sharded"):
            raise UserError(f"trainer.strategy.state_dict_type={state_dict_type!r} is not valid; use 'full' or 'sharded'")
        if device_mesh is not None and (len(device_mesh) != 2 or min(device_mesh) < 1):
            raise UserError(f"trainer.strategy.device_mesh={device_mesh!r} must be (replicas, shard size), both >= 1")
        blocks = resolve_block_classes(wrap)
        self.block_classes = blocks
        super().__init__(
            auto_wrap_policy=set(blocks),
            activation_checkpointing_policy=set(blocks) if activation_checkpointing else None,
            sharding_strategy=sharding_strategy.upper(),
            state_dict_type=state_dict_type,
            cpu_offload=cpu_offload,
            device_mesh=device_mesh,
            **kwargs,
        )

    @property
    def is_hybrid(self) -> bool:
        return "HYBRID" in self.sharding_strategy.name

    def hybrid_mesh_shape(self) -> tuple[int, int]:
        """(replicas across nodes, shards within a node) for hybrid sharding."""
        return (self.num_nodes, self.num_processes)

    def setup_environment(self) -> None:
        if self.is_hybrid and self.kwargs.get("device_mesh") is None and self.kwargs.get("process_group") is None:
            self.kwargs["device_mesh"] = self.hybrid_mesh_shape()
        super().setup_environment()


def deepspeed_installed() -> bool:
    return importlib.util.find_spec("deepspeed") is not None


class DeepSpeed(DeepSpeedStrategy):
    """DeepSpeed ZeRO (stage 1: optimizer states sharded, 2: + gradients, 3: + parameters).

    The paper's UCF-101 runs used bf16 with stage 1. Needs `pip install 'nbp-video[deepspeed]'`.
    """

    def __init__(
        self,
        stage: int = 1,
        offload_optimizer: bool = False,
        offload_parameters: bool = False,
        **kwargs: Any,
    ) -> None:
        if stage not in DEEPSPEED_STAGES:
            raise UserError(f"trainer.strategy.stage={stage!r} is not a DeepSpeed ZeRO stage; use 1, 2 or 3")
        if offload_parameters and stage != 3:
            raise UserError(f"trainer.strategy.offload_parameters needs stage 3, got stage {stage}")
        if offload_optimizer and stage == 1:
            raise UserError("trainer.strategy.offload_optimizer needs stage 2 or 3, got stage 1")
        if not deepspeed_installed():
            raise UserError(
                "the DeepSpeed strategy needs the optional 'deepspeed' package: pip install 'nbp-video[deepspeed]' "
                "(or use trainer.strategy ddp / fsdp_blocks)"
            )
        super().__init__(
            stage=stage, offload_optimizer=offload_optimizer, offload_parameters=offload_parameters, **kwargs
        )


def register_strategies(registry=StrategyRegistry) -> None:
    """Short names usable as `--trainer.strategy NAME`."""
    if "fsdp_blocks" not in registry:
        registry.register("fsdp_blocks", BlockFSDP, description="FSDP, one unit per model block")
    if "fsdp_hybrid_blocks" not in registry:
        registry.register(
            "fsdp_hybrid_blocks",
            BlockFSDP,
            description="FSDP sharded within each node, replicated across nodes",
            sharding_strategy="HYBRID_SHARD",
        )


register_strategies()
