"""`nbp train {fit,validate,test}`: LightningCLI over any of our LightningModules.

Configs select the module and data module by class path, e.g.
`model: {class_path: lightning_modules.tokenizer_module.TokenizerModule, init_args: ...}`.
"""

from __future__ import annotations

import lightning as L
from lightning.pytorch.cli import LightningCLI


def main(argv: list[str], prog: str = "nbp train") -> int:
    LightningCLI(
        L.LightningModule,
        L.LightningDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        args=argv,
        parser_kwargs={"prog": prog},
        save_config_kwargs={"overwrite": True},
    )
    return 0
