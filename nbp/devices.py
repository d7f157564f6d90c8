"""`--device` for every command: one option (default auto) and one check, auto, cpu, cuda or cuda:N,
against this machine."""

from __future__ import annotations

import re

import torch

from nbp.errors import UserError

VALID = "auto, cpu, cuda, cuda:N"
DEVICE_HELP = "auto (a GPU when there is one, else the CPU), cpu, cuda or cuda:N"


def add_device_argument(parser) -> None:
    """The one `--device` option: the same default and help in every command."""
    parser.add_argument("--device", type=str, default="auto", help=DEVICE_HELP)


def add_threads_argument(parser, help: str = "CPU threads for torch (default: torch's choice)") -> None:
    """`--threads N` of the benchmarks: None (torch's choice) unless given."""
    parser.add_argument("--threads", type=int, default=None, help=help)


def set_threads(threads: int | None) -> None:
    """Torch's CPU threads: `threads`, or torch's own choice for None; one error line below 1."""
    if threads is None:
        return
    if threads < 1:
        raise UserError(f"--threads {threads} is invalid; use >= 1")
    torch.set_num_threads(threads)


def pick_device(name: str, option: str = "--device") -> torch.device:
    """The device `name` asks for; UserError when it is not one of VALID or is absent here.

    auto is the first CUDA device when there is one, else the CPU.
    """
    name = str(name).strip().lower()
    if name == "auto":
        return torch.device("cuda", torch.cuda.current_device()) if torch.cuda.is_available() else torch.device("cpu")
    if name == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", name)
    if match is None:
        raise UserError(f"{option} {name!r} is not a device; valid: {VALID}")
    if not torch.cuda.is_available():
        raise UserError(f"{option} {name}: CUDA is not available on this machine; use --device cpu (or auto)")
    index = int(match.group(1) or torch.cuda.current_device())
    if index >= torch.cuda.device_count():
        raise UserError(f"{option} {name}: this machine has {torch.cuda.device_count()} CUDA device(s); "
                        f"valid: cuda:0..cuda:{torch.cuda.device_count() - 1}")
    return torch.device("cuda", index)


def sync(device: torch.device) -> None:
    """Wait for queued work on `device`, so a wall-clock reading covers it (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
