"""Run `nbp train fit` for tests: in this process, as one subprocess, or under torchrun."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from nbp.cli import main as nbp_main

REPO_ROOT = Path(__file__).resolve().parents[2]


def write_config(path: Path, config: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def toy_config(root: Path, *, max_steps: int, devices: int = 1, num_nodes: int = 1, batch_size: int = 4,
               dropout: float = 0.0, every_n_train_steps: int = 1000, strategy: str = "auto", n: int = 24,
               **model_args) -> dict:
    """A complete `nbp train fit` config for the toy module, everything under `root`."""
    return {
        "trainer": {
            "accelerator": "cpu",
            "devices": devices,
            "num_nodes": num_nodes,
            "strategy": strategy,
            "max_steps": max_steps,
            "logger": False,
            "enable_progress_bar": False,
            "enable_model_summary": False,
            "default_root_dir": str(root),
        },
        "model": {
            "class_path": "tests.lightning_modules.toy.ToyModule",
            "init_args": {"dropout": dropout, "dump_dir": str(root / "dump"), **model_args},
        },
        "data": {"class_path": "tests.lightning_modules.toy.ToyData", "init_args": {"n": n, "batch_size": batch_size}},
        "checkpoint": {"every_n_train_steps": every_n_train_steps},
    }


def fit_in_process(config_path: Path, *extra: str) -> int:
    return nbp_main(["train", "fit", "--config", str(config_path), *extra])


def run_forked(fn, *args, timeout: float = 60) -> int:
    """Run a small function in a forked child (a real process, no fresh imports); its exit code.

    Only for code without intra-op parallelism: a forked child of a process that already ran
    OpenMP regions can hang in its thread pool, so training runs use real subprocesses.
    """
    child = multiprocessing.get_context("fork").Process(target=_exit_with, args=(fn, *args))
    child.start()
    child.join(timeout)
    if child.is_alive():
        child.kill()
        child.join()
        raise TimeoutError(f"forked {fn.__name__} did not finish in {timeout} s")
    return child.exitcode


def _exit_with(fn, *args) -> None:
    os._exit(int(fn(*args) or 0))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(REPO_ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"  # two ranks share two cores
    env.pop("CUDA_VISIBLE_DEVICES", None)
    return env


def nbp_fit_command(config_path: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "nbp", "train", "fit", "--config", str(config_path), *extra]


def run_subprocess(cmd: list[str], timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=REPO_ROOT, env=_env(), capture_output=True, text=True, timeout=timeout)


def torchrun_command(config_path: Path, *extra: str, nproc: int = 1, nnodes: int = 1, node_rank: int = 0,
                     port: int | None = None) -> list[str]:
    """torchrun with a static rendezvous on 127.0.0.1 (the same command runs on every "node")."""
    return [
        sys.executable, "-m", "torch.distributed.run",
        f"--nnodes={nnodes}", f"--nproc-per-node={nproc}", f"--node-rank={node_rank}",
        "--master-addr=127.0.0.1", f"--master-port={port or free_port()}",
        "-m", "nbp", "train", "fit", "--config", str(config_path), *extra,
    ]


def popen(cmd: list[str]) -> subprocess.Popen:
    return subprocess.Popen(cmd, cwd=REPO_ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def load_weights(dump_dir: Path, rank: int = 0) -> dict[str, torch.Tensor]:
    return torch.load(dump_dir / f"weights_rank{rank}.pt", weights_only=True)


def read_steps(dump_dir: Path, rank: int = 0) -> dict[int, dict]:
    """step -> record; a step recorded twice (redone after a resume) keeps its latest record."""
    records = {}
    for line in (dump_dir / f"steps_rank{rank}.jsonl").read_text().splitlines():
        record = json.loads(line)
        records[record["step"]] = record
    return records


def assert_same_weights(a: dict, b: dict, atol: float = 0.0) -> None:
    assert a.keys() == b.keys()
    for key in a:
        assert torch.allclose(a[key], b[key], rtol=0, atol=atol), f"{key} differs: max |diff| {(a[key] - b[key]).abs().max()}"
