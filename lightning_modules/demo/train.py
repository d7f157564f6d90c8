"""Training for `nbp demo`: the repository's YAML configs, run by the same LightningCLI as `nbp train`,
under a wall-clock budget.

Each run writes the exact config it used to `<folder>/config.yaml`, so it can be repeated with
`nbp train fit --config <folder>/config.yaml`. The budget is Trainer `max_time`; since the number of
steps that fit into it is unknown in advance, `TimeBudgetSchedule` drives the learning rate by
elapsed time instead of steps (short warm-up, then cosine decay to the end of the budget).
"""

from __future__ import annotations

import copy
import math
import time
from pathlib import Path

import lightning as L
import yaml
from lightning.pytorch import Callback

from lightning_modules.cli import NBPLightningCLI, quiet_known_warnings
from nbp.errors import UserError
from nbp.files import write_bytes_atomic

CONFIG_ROOT = Path(__file__).resolve().parents[2] / "configs"


def load_config(relative: str) -> dict:
    """A YAML config of the repository, e.g. 'tokenizer/synthetic.yaml', as a dict."""
    path = CONFIG_ROOT / relative
    if not path.is_file():
        raise UserError(f"config {path} is missing; the demo reads the repository's configs/ folder "
                        "(install from a source checkout: pip install -e .)")
    return yaml.safe_load(path.read_text())


def set_path(config: dict, dotted: str, value) -> None:
    """config['a']['b']['c'] = value for dotted = 'a.b.c', creating missing levels."""
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        node = node.setdefault(key, {})
    node[last] = value


def max_time_string(seconds: float) -> str:
    """Trainer max_time as DD:HH:MM:SS (whole seconds, at least 1)."""
    total = max(1, int(round(seconds)))
    return f"00:{total // 3600:02d}:{total % 3600 // 60:02d}:{total % 60:02d}"


class TimeBudgetSchedule(Callback):
    """Learning rate as a function of elapsed time: linear warm-up, then cosine to `final_ratio`.

    The demo trains for a time budget, not a step count; a step-based cosine would either end
    early or never decay. Overrides whatever per-step schedule the module configured.
    """

    def __init__(self, budget_seconds: float, warmup_fraction: float = 0.05, final_ratio: float = 0.05):
        self.budget = max(budget_seconds, 1e-3)
        self.warmup_fraction = warmup_fraction
        self.final_ratio = final_ratio
        self.started: float | None = None
        self.base_lrs: list[list[float]] = []

    def factor(self, elapsed: float) -> float:
        progress = min(1.0, elapsed / self.budget)
        if progress < self.warmup_fraction:
            return max(progress / self.warmup_fraction, 0.01)
        decay = (progress - self.warmup_fraction) / (1.0 - self.warmup_fraction)
        return self.final_ratio + (1.0 - self.final_ratio) * 0.5 * (1.0 + math.cos(math.pi * decay))

    def on_train_start(self, trainer, pl_module) -> None:
        self.started = time.perf_counter()
        self.base_lrs = [[group.get("initial_lr", group["lr"]) for group in opt.param_groups]
                         for opt in trainer.optimizers]

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        scale = self.factor(time.perf_counter() - self.started)
        for opt, bases in zip(trainer.optimizers, self.base_lrs):
            for group, base in zip(opt.param_groups, bases):
                group["lr"] = base * scale


def write_config(config: dict, path: Path) -> Path:
    write_bytes_atomic(path, yaml.safe_dump(config, sort_keys=False).encode())
    return path


def build(config_path: Path, budget_seconds: float, callbacks: tuple[Callback, ...] = ()):
    """(trainer, model, datamodule) from a config file, exactly as `nbp train fit --config` would."""
    quiet_known_warnings()
    cli = NBPLightningCLI(
        L.LightningModule, L.LightningDataModule, subclass_mode_model=True, subclass_mode_data=True,
        args=["--config", str(config_path)], run=False, save_config_kwargs={"overwrite": True},
        trainer_defaults={"callbacks": [TimeBudgetSchedule(budget_seconds), *callbacks]},
    )
    return cli.trainer, cli.model, cli.datamodule


def run_fit(trainer, model, datamodule) -> None:
    """trainer.fit, with Ctrl-C surfacing as KeyboardInterrupt.

    Lightning turns Ctrl-C into a graceful stop followed by sys.exit(1); the demo wants it
    as KeyboardInterrupt so its caller can say which stages are finished.
    """
    try:
        trainer.fit(model, datamodule=datamodule)
    except SystemExit:
        if trainer.interrupted:
            raise KeyboardInterrupt from None
        raise
    if trainer.interrupted:
        raise KeyboardInterrupt


def train_with_budget(config: dict, folder: Path, budget_seconds: float, callbacks: tuple[Callback, ...] = (),
                      progress_bar: bool = True) -> tuple:
    """Fit the model of `config` for `budget_seconds` of wall-clock; returns (trainer, model, datamodule).

    callbacks: extra Lightning callbacks; progress_bar False for a run whose caller shows progress itself.
    """
    config = copy.deepcopy(config)
    set_path(config, "trainer.default_root_dir", str(folder))
    set_path(config, "trainer.enable_progress_bar", progress_bar)
    set_path(config, "trainer.max_time", max_time_string(budget_seconds))
    set_path(config, "trainer.max_steps", -1)
    set_path(config, "trainer.max_epochs", -1)
    # The demo evaluates after training; validating during it would only spend the budget.
    set_path(config, "trainer.limit_val_batches", 0)
    set_path(config, "trainer.num_sanity_val_steps", 0)
    config["trainer"].pop("val_check_interval", None)
    config["trainer"].pop("check_val_every_n_epoch", None)
    config["trainer"].pop("callbacks", None)  # the LR monitor needs a schedule that we override
    config_path = write_config(config, folder / "config.yaml")
    trainer, model, datamodule = build(config_path, budget_seconds, callbacks)
    run_fit(trainer, model, datamodule)
    return trainer, model, datamodule


def validate(trainer, model, datamodule) -> dict[str, float]:
    """Full validation pass after training (fit ran with validation switched off)."""
    trainer.limit_val_batches = 1.0
    metrics = trainer.validate(model, datamodule=datamodule, verbose=False)
    return {k: float(v) for k, v in (metrics[0] if metrics else {}).items()}


def train_transformer(config: dict, folder: Path, budget_seconds: float, callbacks: tuple[Callback, ...] = (),
                      progress_bar: bool = True) -> dict:
    """Train an NBP transformer config for `budget_seconds`, validate it; its numbers and exported model."""
    trainer, module, data = train_with_budget(config, folder, budget_seconds, callbacks, progress_bar)
    metrics = validate(trainer, module, data)
    return {"val_bits_per_token": metrics.get("val/bits_per_token"), "steps": int(trainer.global_step),
            "seconds": budget_seconds, "path": str(folder / "checkpoints" / "model.pt"),
            "block": list(module.nbp_config.block), "decode_steps": module.nbp_config.decode_steps}
