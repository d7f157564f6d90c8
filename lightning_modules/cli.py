"""`nbp train {fit,validate,test}`: LightningCLI over any of our LightningModules.

Configs select the module and data module by class path, e.g.
`model: {class_path: lightning_modules.tokenizer_module.TokenizerModule, init_args: ...}`.

Every run also gets, configurable under their own config keys:
- `checkpoint:` periodic + last checkpoints written atomically (`PeriodicCheckpoint`), so
  `--ckpt_path last` resumes from the newest complete one;
- `nan_guard:` stop on a NaN/Inf loss before the bad update (`NonFiniteLossGuard`);
- `throughput:` samples/s, tokens/s and peak memory in the logs (`ThroughputMonitor`);
- `step_seed:` RNG reseeded per batch from its position, for exact resume (`StepSeed`);
- `interrupt:` Ctrl-C finishes the step, writes last.ckpt and exits 130 (`StopOnInterrupt`).
`--ckpt_path` takes last, best, hpc or the path of any checkpoint `nbp train` wrote; the model is
built from the config and the checkpoint must be of the same module and architecture.
Strategies: `--trainer.strategy ddp | fsdp_blocks | fsdp_hybrid_blocks` or a class path from
`lightning_modules.strategies` (see that module).
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from pathlib import Path

import lightning as L
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.trainer.states import TrainerStatus

import lightning_modules.strategies  # noqa: F401  (registers the short strategy names)
from lightning_modules.callbacks import NonFiniteLossGuard, ThroughputMonitor
from lightning_modules.checkpointing import PeriodicCheckpoint, find_best_checkpoint, read_checkpoint_meta
from lightning_modules.interrupt import StopOnInterrupt
from lightning_modules.resumable import StepSeed
from nbp.errors import UserError, first_line
from nbp.files import check_output_folder

# How a checkpoint without a stored class path shows which module wrote it.
MODULE_MARKERS = {"lightning_modules.nbp_module.NBPModule": "nbp_config",
                  "lightning_modules.tokenizer_module.TokenizerModule": "tokenizer_config"}


class NBPLightningCLI(LightningCLI):
    def add_arguments_to_parser(self, parser) -> None:
        parser.add_lightning_class_args(PeriodicCheckpoint, "checkpoint")
        parser.add_lightning_class_args(NonFiniteLossGuard, "nan_guard")
        parser.add_lightning_class_args(ThroughputMonitor, "throughput")
        parser.add_lightning_class_args(StepSeed, "step_seed")
        parser.add_lightning_class_args(StopOnInterrupt, "interrupt")

    def _parse_ckpt_path(self) -> None:
        # Lightning would feed the checkpoint's saved hyperparameters back into the model constructor
        # (which fails on the derived ones, and would silently replace the config's model by the
        # checkpoint's). The config defines the run; here we only resolve "best" and check, before
        # anything is built, that the file is a checkpoint of the module the config trains.
        config = self.config[self.config.subcommand] if self.config.get("subcommand") else None
        ckpt_path = config.get("ckpt_path") if config is not None else None
        if not ckpt_path or ckpt_path in ("last", "hpc"):
            return
        if ckpt_path == "best":
            folder = config.checkpoint.dirpath or Path(config.trainer.default_root_dir or ".") / "checkpoints"
            best = find_best_checkpoint(folder)
            if best is None:
                raise UserError(f"--ckpt_path best: no checkpoint in {folder} records a best one; give last or a path")
            config.ckpt_path = ckpt_path = str(best)
        if not Path(ckpt_path).exists():
            raise UserError(f"--ckpt_path {ckpt_path}: no such file or folder; give last, best, hpc or the path "
                            f"of a checkpoint written by nbp train")
        check_checkpoint_kind(ckpt_path, config.model.get("class_path") if config.get("model") else None)

    def instantiate_classes(self) -> None:
        super().instantiate_classes()
        # Model against data before the Trainer starts (and writes config.yaml): a token cache that
        # is broken or made for another grid is the user's to fix, and costs nothing to find now.
        check = getattr(self.model, "check_data", None)
        if check is not None and self.datamodule is not None:
            check(self.datamodule)

    def instantiate_trainer(self, **kwargs):
        # Every Trainer argument comes straight from the config or the command line, so what the
        # Trainer refuses (an unknown strategy, devices=0, ...) is the user's to fix.
        try:
            trainer = super().instantiate_trainer(**kwargs)
        except (ValueError, TypeError) as err:
            raise UserError(f"trainer: {first_line(err, 300)}") from err
        trainer.callbacks.append(ReleaseHeldLogs())
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        try:
            super()._run_subcommand(subcommand)
        except SystemExit:
            # Lightning turns Ctrl-C into sys.exit(1) after its graceful shutdown; `nbp` reports every
            # interrupt the same way ("nbp: interrupted", exit 130).
            if self.trainer.state.status == TrainerStatus.INTERRUPTED:
                raise KeyboardInterrupt from None
            raise

    def before_instantiate_classes(self) -> None:
        # Per-batch seeds follow the run's seed (already resolved to an int by LightningCLI), so
        # two runs with different seed_everything also differ in dropout.
        config = self.config[self.subcommand] if self.subcommand else self.config
        # Logs and checkpoints go here; a wrong folder should fail now, not after the first epoch.
        check_output_folder(config.trainer.get("default_root_dir") or ".", "--trainer.default_root_dir")
        if config.checkpoint.get("dirpath"):
            check_output_folder(config.checkpoint.dirpath, "--checkpoint.dirpath")
        seed = config.get("seed_everything")
        if config.step_seed.seed is None and isinstance(seed, int) and not isinstance(seed, bool):
            config.step_seed.seed = seed


def check_checkpoint_kind(path: str, model_class_path: str | None) -> None:
    """UserError unless `path` is a Lightning checkpoint of `model_class_path` (when that is known)."""
    meta = read_checkpoint_meta(path)
    if meta.get("deepspeed") or not model_class_path:
        return
    hparams = meta.get("hyper_parameters") or {}
    stored = hparams.get("_class_path")
    if stored is None:
        stored = next((cls for cls, key in MODULE_MARKERS.items() if key in hparams or key in meta), None)
    if stored is not None and stored != model_class_path:
        raise UserError(f"{path} is a checkpoint of {stored.rpartition('.')[2]}, but the config trains "
                        f"{model_class_path.rpartition('.')[2]}; give a checkpoint of the same kind of model")


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
    # NBPModule checks the labels while the batch is still on the CPU (on_before_batch_transfer); our data
    # modules define no such hook, so there is nothing for Lightning to choose between.
    warnings.filterwarnings("ignore", message="You have overridden `on_before_batch_transfer` in `LightningModule`")


class ReleaseHeldLogs(L.Callback):
    """Print the held start-up lines once setup is through (data read, model built): the run is on."""

    def on_fit_start(self, trainer, pl_module) -> None:
        release_held_logs()

    on_validation_start = on_test_start = on_predict_start = on_fit_start


class _HeldLogs(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


_HELD_LOGGERS = ("lightning", "lightning.pytorch", "lightning.fabric")
_held: dict[str, list[logging.Handler]] = {}
_holder = _HeldLogs()


def hold_logs() -> None:
    """Keep Lightning's start-up lines ("Seed set to 0", "GPU available") until the run really starts,
    so that a mistake found while building the trainer, model or data prints only its one line."""
    for name in _HELD_LOGGERS:
        logger = logging.getLogger(name)
        _held[name] = logger.handlers[:]
        logger.handlers = [_holder]


def release_held_logs() -> None:
    """Give the loggers their handlers back and print what was held, in order."""
    for name, handlers in _held.items():
        logging.getLogger(name).handlers = handlers
    _held.clear()
    records, _holder.records = _holder.records, []
    for record in records:
        logging.getLogger(record.name).handle(record)


@contextlib.contextmanager
def held_logs():
    hold_logs()
    try:
        yield
    except BaseException:
        # Only the error line is printed; the held start-up lines belong to a run that never began.
        _holder.records.clear()
        raise
    finally:
        release_held_logs()


def main(argv: list[str], prog: str = "nbp train") -> int:
    quiet_known_warnings()
    with held_logs():
        run_cli(argv, prog)
    leave_process_group()
    return 0


def leave_process_group() -> None:
    """Take torch.distributed down before the interpreter does: a rank that exits with its
    process group still up can abort in the group's destructor ("terminate called without an
    active exception"), which torchrun reports as a failed run after a finished one."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def run_cli(argv: list[str], prog: str) -> None:
    NBPLightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        # Parse errors come back as exceptions, so `nbp` reports them like every other mistake.
        parser_kwargs={"prog": prog, "exit_on_error": False,
                       **{name: {"exit_on_error": False} for name in ("fit", "validate", "test", "predict")}},
        save_config_kwargs={"overwrite": True},
        seed_everything_default=0,  # reproducible initialisation unless a config says otherwise
    )
