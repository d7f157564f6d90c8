"""Checkpoints that are either whole or absent, and `--ckpt_path last` that only picks whole ones.

Two pieces:
- `AtomicCheckpointIO` writes a checkpoint to a temporary file in the same folder, fsyncs it and
  renames it into place, so a crash or SIGKILL mid-write leaves the previous file untouched.
- `PeriodicCheckpoint` (a `ModelCheckpoint`) saves every N optimizer steps plus `last.ckpt`,
  defaults its folder to `<default_root_dir>/checkpoints` (stable across runs, so a resumed run
  finds it) and installs the atomic writer. When Lightning resolves `ckpt_path="last"` it asks this
  callback for candidates; we only offer files that are complete (see `is_complete_checkpoint`).
"""

from __future__ import annotations

import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.strategies import DeepSpeedStrategy
from lightning.pytorch.utilities import rank_zero_warn

import torch

from nbp.errors import UserError


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    """True when `path` is a checkpoint that was written to the end.

    A `torch.save` file is a zip archive whose central directory is written last, so a file cut
    short anywhere is not a valid zip. A sharded FSDP checkpoint is a folder holding the
    `torch.distributed.checkpoint` `.metadata` and Lightning's `meta.pt`; a DeepSpeed one has `latest`.
    """
    path = Path(path)
    if path.is_dir():
        if (path / "latest").is_file():  # DeepSpeed
            return True
        return (path / ".metadata").is_file() and is_complete_checkpoint(path / "meta.pt")  # FSDP sharded
    if not path.is_file():
        return False
    try:
        with zipfile.ZipFile(path) as archive:
            return len(archive.namelist()) > 0
    except (zipfile.BadZipFile, OSError):
        return False


def _read_umask() -> int:
    mask = os.umask(0)  # the only portable way to read it; done once, at import, before any threads
    os.umask(mask)
    return mask


_UMASK = _read_umask()


class AtomicCheckpointIO(TorchCheckpointIO):
    """`torch.save` to a hidden temporary file beside the target, then `os.replace` it into place.

    The temporary name never contains "last" nor ends in ".ckpt", so nothing half-written is ever
    a resume candidate, and the rename is atomic on POSIX filesystems (local disks, NFS, Lustre).
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} does not take storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=".partial-", suffix=".tmp", dir=path.parent)
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())  # the bytes are on disk before the name points at them
            os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give the usual file mode
            os.replace(tmp, path)
        finally:
            if tmp.exists():
                tmp.unlink()


class PeriodicCheckpoint(ModelCheckpoint):
    """Save `step=N.ckpt` every `every_n_train_steps` optimizer steps and keep `last.ckpt` current.

    Arguments are those of `ModelCheckpoint`; the defaults differ: every 1000 steps, keep the 2 most
    recent periodic files plus `last.ckpt`, one stable folder `<default_root_dir>/checkpoints`.

    dirpath: checkpoint folder (None: `<trainer.default_root_dir>/checkpoints`).
    filename: name pattern of the periodic files ("{step}" gives step=1000.ckpt).
    every_n_train_steps: optimizer steps between periodic checkpoints (0 or None: none).
    every_n_epochs: epochs between periodic checkpoints (None: not by epoch).
    save_top_k: periodic files kept (the best by monitor; -1 keeps all).
    monitor: logged value that ranks the files ("step": the newest are the best).
    mode: "max" or "min": which end of monitor is best.
    save_last: keep `last.ckpt` current, the file `--ckpt_path last` resumes from.
    save_weights_only: leave out optimizer and loop state (such files cannot resume a run).
    auto_insert_metric_name: write "step=1000" rather than "1000" into the file name.
    enable_version_counter: False replaces a file of the same name in place.
    """

    def __init__(
        self,
        dirpath: str | None = None,
        filename: str = "{step}",
        every_n_train_steps: int | None = 1000,
        every_n_epochs: int | None = None,
        save_top_k: int = 2,
        monitor: str | None = "step",
        mode: str = "max",
        save_last: bool = True,
        save_weights_only: bool = False,
        auto_insert_metric_name: bool = True,
        enable_version_counter: bool = False,
        **kwargs: Any,
    ) -> None:
        if every_n_train_steps is not None and every_n_train_steps < 0:
            raise UserError(f"checkpoint.every_n_train_steps must be >= 0 (0 disables), got {every_n_train_steps}")
        super().__init__(
            dirpath=dirpath,
            filename=filename,
            every_n_train_steps=every_n_train_steps,
            every_n_epochs=every_n_epochs,
            save_top_k=save_top_k,
            monitor=monitor,
            mode=mode,
            save_last=save_last,
            save_weights_only=save_weights_only,
            auto_insert_metric_name=auto_insert_metric_name,  # "{step}" -> step=1000.ckpt
            enable_version_counter=enable_version_counter,  # False: one last.ckpt, replaced in place
            **kwargs,
        )

    def checkpoint_dir(self, trainer) -> Path:
        return Path(self.dirpath) if self.dirpath else Path(trainer.default_root_dir) / "checkpoints"

    def setup(self, trainer, pl_module, stage: str) -> None:
        # Fix the folder before ModelCheckpoint would pick a logger-versioned one that a resumed
        # run (with a new logger version) could not find again.
        if self.dirpath is None:
            self.dirpath = str(self.checkpoint_dir(trainer))
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        super().setup(trainer, pl_module, stage)

    def _save_checkpoint(self, trainer, filepath: str) -> None:
        if not writes_folders(trainer.strategy):
            return super()._save_checkpoint(trainer, filepath)  # one file: AtomicCheckpointIO handles it
        # Sharded checkpoints are folders that every rank writes into; Lightning would overwrite the
        # previous folder in place. Write a fresh staging folder instead and swap it in when all ranks
        # are done, so the folder under the checkpoint's name is always one whole checkpoint.
        target = Path(filepath)
        staging = target.with_name(f".partial-{target.name}.tmp")
        if trainer.is_global_zero and staging.exists():
            shutil.rmtree(staging)  # left by a run that died while saving
        trainer.strategy.barrier("staging folder clean")
        trainer.save_checkpoint(staging, self.save_weights_only)  # ends with a barrier
        if trainer.is_global_zero:
            swap_into_place(staging, target)
        trainer.strategy.barrier("checkpoint folder in place")
        self._last_global_step_saved = trainer.global_step
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        # Save the final step of a max_steps run here, mid-epoch, not in on_train_end: by then Lightning
        # has closed the epoch, and a run resumed from there (with a larger max_steps) would start the
        # next epoch instead of continuing with the next batch.
        reached_max_steps = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if self.save_last and reached_max_steps and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def on_train_end(self, trainer, pl_module) -> None:
        # Also keep the steps after the last multiple of every_n_train_steps: a finished run's
        # last.ckpt holds its final weights.
        if self.save_last and trainer.global_step != self._last_global_step_saved:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _find_last_checkpoints(self, trainer) -> set[str]:
        folder = self.checkpoint_dir(trainer)
        paths = list(folder.iterdir()) if folder.is_dir() else []
        # The checkpoint Lightning writes on SLURM's pre-timeout signal before requeueing the job.
        paths += Path(trainer.default_root_dir).glob("hpc_ckpt_*.ckpt")
        found = set()
        for path in paths:
            if path.suffix != self.FILE_EXTENSION:
                continue
            # Every complete checkpoint is a resume candidate; Lightning takes the newest by mtime.
            if is_complete_checkpoint(path):
                found.add(os.path.normpath(path))
            else:
                rank_zero_warn(f"ignoring incomplete checkpoint {path} (truncated or still being written)")
        return found


def find_last_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The newest complete `*.ckpt` in `folder` (None if there is none); what `--ckpt_path last` resumes."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    complete = [p for p in folder.iterdir() if p.suffix == ".ckpt" and is_complete_checkpoint(p)]
    return max(complete, key=lambda p: p.stat().st_mtime_ns, default=None)


def writes_folders(strategy) -> bool:
    """True for strategies whose checkpoints are folders written by every rank."""
    return getattr(strategy, "_state_dict_type", None) == "sharded" or isinstance(strategy, DeepSpeedStrategy)


def swap_into_place(new: Path, target: Path) -> None:
    """Replace `target` (file or folder, or nothing) by the folder `new` with two renames."""
    old = target.with_name(f".old-{target.name}.tmp")
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()
    if target.exists():
        os.replace(target, old)
    os.replace(new, target)
    if old.exists():
        shutil.rmtree(old) if old.is_dir() else old.unlink()


def read_checkpoint_meta(path: str | os.PathLike) -> dict:
    """A checkpoint written by `nbp train`, without its weights: hyper_parameters, callbacks, loops, ...

    Memory-mapped, so reading a 3B-parameter file costs no more than a small one. Sharded FSDP
    checkpoints keep this in the folder's meta.pt. Raises UserError for anything else.
    """
    from nbp.errors import UserError

    path = Path(path)
    file = path / "meta.pt" if path.is_dir() else path
    if path.is_dir() and (path / "latest").is_file():
        return {"deepspeed": True}  # DeepSpeed folders keep the module state in per-rank files
    if not is_complete_checkpoint(path):
        raise UserError(f"{path} is not a checkpoint written by nbp train (not a complete torch file or "
                        f"checkpoint folder); give last, best, hpc or the path of a .ckpt")
    try:
        # Our checkpoints hold plain data only, so nothing here needs full unpickling; weights memory-mapped.
        ckpt = torch.load(file, map_location="cpu", weights_only=True, mmap=not path.is_dir())
    except Exception as err:  # noqa: BLE001 - any unreadable file is the same user mistake
        raise UserError(f"{path} cannot be read as a checkpoint ({type(err).__name__}: {err})") from None
    if not isinstance(ckpt, dict) or "pytorch-lightning_version" not in ckpt:  # Lightning stamps every checkpoint
        raise UserError(f"{path} is not a Lightning checkpoint written by nbp train (model.pt and "
                        f"tokenizer.pt files are for nbp sample / nbp tokenize)")
    ckpt.pop("state_dict", None)
    ckpt.pop("optimizer_states", None)
    return ckpt


def find_best_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The best checkpoint a run in `folder` recorded (its checkpoint callback's best_model_path).

    Lightning only knows "best" inside the process that trained; a new `nbp train validate
    --ckpt_path best` reads it from the newest checkpoint's saved callback state instead.
    """
    newest = find_last_checkpoint(folder)
    if newest is None:
        return None
    for key, state in read_checkpoint_meta(newest).get("callbacks", {}).items():
        best = state.get("best_model_path") if isinstance(state, dict) and "Checkpoint" in str(key) else None
        if best and is_complete_checkpoint(best):
            return Path(best)
    return None
