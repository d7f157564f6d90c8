"""Ctrl-C during `nbp train fit`: finish the current step, write a resumable last checkpoint, exit 130.

Python's default SIGINT handler raises KeyboardInterrupt wherever the program happens to be,
possibly half-way through an optimizer step; a checkpoint written from there would not resume
exactly. `StopOnInterrupt` instead only notes the signal and stops at the next step boundary
(where the periodic checkpoints are written too), after saving `last.ckpt`. A second Ctrl-C
interrupts at once. Under DDP the note is all-reduced every step, so all ranks stop at the same
step and write one checkpoint together.
"""

from __future__ import annotations

import signal
import sys
import threading

from lightning.pytorch import Callback
from lightning.pytorch.callbacks import ModelCheckpoint


class StopOnInterrupt(Callback):
    """Ctrl-C finishes the current step, writes last.ckpt and exits 130; a second Ctrl-C stops at once.

    enabled: False leaves Ctrl-C to Lightning's default handling.
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.requested = False
        self._previous = None

    def on_fit_start(self, trainer, pl_module) -> None:
        if self.enabled and threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._note)

    def _note(self, signum, frame) -> None:
        if self.requested:  # the second Ctrl-C: stop now, without a checkpoint
            raise KeyboardInterrupt
        self.requested = True
        print("nbp: stopping after this step and saving a checkpoint (Ctrl-C again to stop at once)",
              file=sys.stderr, flush=True)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self.enabled:
            return
        stop = self.requested
        if trainer.world_size > 1:
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if not stop:
            return
        save_resumable(trainer)
        raise KeyboardInterrupt

    def teardown(self, trainer, pl_module, stage: str) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None


def save_resumable(trainer) -> None:
    """Write the checkpoint `--ckpt_path last` resumes from, at this step boundary."""
    callback = trainer.checkpoint_callback
    if isinstance(callback, ModelCheckpoint) and callback.save_last and callback.dirpath:
        if callback._last_global_step_saved != trainer.global_step:
            callback._save_last_checkpoint(trainer, callback._monitor_candidates(trainer))
        return
    folder = callback.dirpath if isinstance(callback, ModelCheckpoint) and callback.dirpath else \
        f"{trainer.default_root_dir}/checkpoints"
    trainer.save_checkpoint(f"{folder}/interrupted.ckpt")
