"""Plumbing shared by the `nbp eval` commands: video sources, distributed shares, feature passes, reports."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Dataset, Subset

from nbp.devices import pick_device  # noqa: F401  (the eval commands import it from here)
from nbp.errors import UserError, first_line, ignore_interrupt_in_worker
from nbp.files import write_json_atomic

CONFIG_SUFFIXES = (".yaml", ".yml", ".json")


def dataset_config_from_file(path: Path):
    """A `DatasetConfig` from a YAML/JSON file (either its fields, or under a `data:` key)."""
    import yaml

    from nbp.data import DatasetConfig

    try:
        fields = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise UserError(f"cannot read dataset config {path}: {first_line(err)}") from err
    if isinstance(fields, dict) and isinstance(fields.get("data"), dict):
        fields = fields["data"]
    if not isinstance(fields, dict):
        raise UserError(f"dataset config {path} must hold DatasetConfig fields (kind, root, split, ...)")
    try:
        return DatasetConfig(**fields)
    except TypeError as err:
        raise UserError(f"dataset config {path}: {err}") from err


def video_source(spec: str, frames: int, size: int, fps: float | None, clip: str):
    """`spec` is a folder of videos or a DatasetConfig file -> (DatasetConfig, Dataset)."""
    from nbp.data import DatasetConfig, build_dataset

    path = Path(spec).expanduser()
    if path.is_dir():
        cfg = DatasetConfig(kind="folder", root=str(path), frames=frames, fps=fps, size=size, clip=clip)
    elif path.is_file() and path.suffix.lower() in CONFIG_SUFFIXES:
        cfg = dataset_config_from_file(path)
    else:
        raise UserError(f"{spec} is neither a folder of videos nor a dataset config file ({', '.join(CONFIG_SUFFIXES)})")
    return cfg, build_dataset(cfg)


def distributed_setup() -> tuple[int, int]:
    """(rank, world size); joins the process group when launched by torchrun (WORLD_SIZE > 1)."""
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if torch.cuda.is_available():
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def rank_share(count: int, rank: int, world: int) -> list[int]:
    """Indices 0..count-1 taken by this rank (interleaved, so every rank gets a near-equal share)."""
    return list(range(rank, count, world))


def score_videos(metric, dataset: Dataset, indices: list[int], real: bool, batch_size: int, workers: int, desc: str) -> int:
    """Run the videos at `indices` through the metric; returns how many bad files were replaced.

    Our datasets replace an unreadable file by the next readable one; the returned
    path then differs from the listed one, which counts the same with or without workers.
    """
    from nbp.progress import progress

    if not indices:
        return 0
    listed = getattr(dataset, "videos", None)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, num_workers=workers, shuffle=False,
                        worker_init_fn=ignore_interrupt_in_worker)
    position, replaced = 0, 0
    with progress(total=len(indices), desc=desc, unit="video") as bar:
        for batch in loader:
            metric.update(batch["video"], real=real)
            n = batch["video"].shape[0]
            if listed is not None:
                wanted = [listed[i][0] for i in indices[position : position + n]]
                replaced += sum(got != want for got, want in zip(batch["path"], wanted))
            position += n
            bar.update(n)
    return replaced


def finish(report: dict, out: str | os.PathLike | None, summary: str, rank: int = 0) -> None:
    """Write the report atomically and print the summary line (stderr) and the JSON (stdout), on rank 0."""
    if rank != 0:
        return
    if out:
        write_json_atomic(out, report)
    print(summary, file=sys.stderr)
    print(json.dumps(report, indent=2))


def summary_line(what: str, report: dict) -> str:
    det = report.get("detector", {})
    sha = (det.get("sha256") or "?")[:12]
    counts = report.get("counts", {})
    return (
        f"{what}: FVD {report['fvd']:.2f} (protocol {report['protocol']}, {counts.get('real')} real / "
        f"{counts.get('fake')} generated, detector {det.get('kind')} sha256 {sha}...)"
    )
