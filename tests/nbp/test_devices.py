"""One `--device` option: every command that takes one defaults to auto, and auto resolves the same way."""

import importlib

import pytest
import torch

from nbp.cli import COMMANDS
from nbp.devices import pick_device
from nbp.errors import UserError


def command_modules():
    for name, target in COMMANDS.items():
        for module in (target.values() if isinstance(target, dict) else [target]):
            # nbp train: Lightning's own --trainer.accelerator; nbp bench gpu-check: checks the GPU by
            # definition (its --device cpu is a rehearsal of the plan)
            if module not in ("lightning_modules.cli", "nbp.bench.gpu_check"):
                yield module


@pytest.mark.parametrize("module_path", list(command_modules()))
def test_device_defaults_to_auto(module_path):
    defaults = importlib.import_module(module_path).build_parser("nbp").get_defaults()
    if "device" in defaults:
        assert defaults.device == "auto"


def test_auto_is_the_gpu_when_there_is_one():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert pick_device("auto").type == expected
    assert pick_device("cpu") == torch.device("cpu")
    with pytest.raises(UserError, match="not a device"):
        pick_device("gpu0")
