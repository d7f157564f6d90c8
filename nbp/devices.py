"""Which device a command runs on: `--device auto` (the default of every command) or a name."""

from __future__ import annotations

import torch

from nbp.errors import UserError

DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def add_device_argument(parser) -> None:
    """The one `--device` option: the same default and help in every command."""
    parser.add_argument("--device", type=str, default="auto", help=DEVICE_HELP)


def pick_device(name: str) -> torch.device:
    """`auto` -> the current CUDA device if there is one, else the CPU; any other name is checked here."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", torch.cuda.current_device())
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise UserError(f"--device {name!r} is not a device; valid: auto, cpu, cuda, cuda:N") from err
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"--device {name}: CUDA is not available on this machine; use --device cpu")
    return device
