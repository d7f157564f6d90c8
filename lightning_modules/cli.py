"""`nbp train {fit,validate,test}`: LightningCLI over any of our LightningModules.

Configs select the module and data module by class path, e.g.
`model: {class_path: lightning_modules.tokenizer_module.TokenizerModule, init_args: ...}`.

Every run also gets, configurable under their own config keys:
- `checkpoint:` periodic + last checkpoints written atomically (`PeriodicCheckpoint`), so
  `--ckpt_path last` resumes from the newest complete one;
- `nan_guard:` stop on a NaN/Inf loss before the bad update (`NonFiniteLossGuard`);
- `throughput:` samples/s, tokens/s and peak memory in the logs (`ThroughputMonitor`);
- `step_seed:` RNG reseeded per batch from its position, for exact resume (`StepSeed`).
Strategies: `--trainer.strategy ddp | fsdp_blocks | fsdp_hybrid_blocks` or a class path from
`lightning_modules.strategies` (see that module).
"""

from __future__ import annotations

import warnings

import lightning as L
from lightning.pytorch.cli import LightningCLI

import lightning_modules.strategies  # noqa: F401  (registers the short strategy names)
from lightning_modules.callbacks import NonFiniteLossGuard, ThroughputMonitor
from lightning_modules.checkpointing import PeriodicCheckpoint
from lightning_modules.resumable import StepSeed


class NBPLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PeriodicCheckpoint, "checkpoint")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nan_guard")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        parser.add_lightning_class_args(StepSeed, "step_seed")

    def before_instantiate_classes(self) -> None:
        # Per-batch seeds follow the run's seed (already resolved to an int by LightningCLI), so
        # two runs with different seed_everything also differ in dropout.
        config = self.config[self.subcommand] if self.subcommand else self.config
        seed = config.get("seed_everything")
        if config.step_seed.seed is None and isinstance(seed, int) and not isinstance(seed, bool):
            config.step_seed.seed = seed


def quiet_known_warnings() -> None:
    """Silence Lightning warnings that do not apply to how we train or that no user can act on."""
    # `nbp train ...` hands us the arguments after "train" on purpose; Lightning warns when sys.argv differs.
    warnings.filterwarnings("ignore", message="LightningCLI's args parameter")
    # The tokenizer's manual optimization: a checkpoint taken after step N should hold the weights after
    # step N, next to the data position after batch N; that is what exact resume restores (a dozen-line
    # code example per run otherwise).
    warnings.filterwarnings("ignore", message="Using ModelCheckpoint with manual optimization")
    # Lightning's own pytree helper calls a torch API that newer torch deprecates (printed once per run).
    warnings.filterwarnings("ignore", message=r"`isinstance\(treespec, LeafSpec\)` is deprecated")


def main(argv: list[str], prog: str = "nbp train") -> int:
    quiet_known_warnings()
    NBPLightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        parser_kwargs={"prog": prog},
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,  # reproducible initialisation unless a config says otherwise
    )
    return 0
