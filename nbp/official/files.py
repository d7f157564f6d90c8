"""Open a released reference file safely: `weights_only=True`, with only argparse.Namespace allowed beyond plain data."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nbp.errors import UserError
from nbp.official.hub import resolve


def read_torch_file(path: str | Path, what: str):
    """torch.load a local path or hf://owner/repo/file on the CPU; any failure is one UserError naming the file."""
    local = resolve(path)
    if not local.is_file():
        raise UserError(f"{path}: no such file (expected a {what})")
    # The Lightning 1.x checkpoints keep their hyperparameters as an argparse.Namespace: allow that
    # one class and nothing else, so a file cannot run code while it is read.
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            try:
                # mmap: optimizer states in the file are never read into memory
                return torch.load(local, map_location="cpu", weights_only=True, mmap=True)
            except RuntimeError as err:
                if "mmap" not in str(err):  # files in torch's legacy (non-zip) format cannot be mapped
                    raise
                return torch.load(local, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated zip, foreign pickle, ...: all mean "not a file we can read"
        first = (str(err).strip().splitlines() or [""])[0][:160]
        raise UserError(f"{path} is not a readable {what} ({type(err).__name__}: {first})") from None
