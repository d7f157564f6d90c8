"""Training callbacks that matter at scale: a non-finite loss guard and a throughput meter.

`NonFiniteLossGuard` looks at the loss before backward. When any rank sees NaN or Inf, every rank
stops together (the check is all-reduced, so no rank is left waiting in a collective) before the
bad update is applied; the checkpoints on disk were all written before that step, so the last one
stays the last good one.

`ThroughputMonitor` logs samples/s and tokens/s of the whole job (all ranks) over a sliding window
of steps, measured from batch end to batch end (so data loading counts), plus peak memory.
"""

from __future__ import annotations

import resource
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback

from nbp.errors import UserError
from nbp.files import write_json_atomic


class NonFiniteLossError(UserError):
    """Training stopped because the loss became NaN or Inf."""


def _loss_of(outputs: Any) -> torch.Tensor | None:
    if isinstance(outputs, torch.Tensor):
        return outputs
    if isinstance(outputs, dict):
        return outputs.get("loss")
    return None


class NonFiniteLossGuard(Callback):
    """Stop the run with one clear message when the training loss is NaN or Inf on any rank.

    check_every_n_steps: steps between checks (each check waits for the loss of the step).
    """

    def __init__(self, check_every_n_steps: int = 1) -> None:
        if check_every_n_steps < 1:
            raise UserError(f"nan_guard.check_every_n_steps must be >= 1, got {check_every_n_steps}")
        self.check_every_n_steps = check_every_n_steps

    def on_before_backward(self, trainer, pl_module, loss: torch.Tensor) -> None:
        if trainer.global_step % self.check_every_n_steps:
            return
        bad_here = not bool(torch.isfinite(loss.detach()).all())
        # any rank: all ranks must take the same branch or the others hang in the next all-reduce
        bad_anywhere = trainer.strategy.reduce_boolean_decision(bad_here, all=False)
        if not bad_anywhere:
            return
        raise NonFiniteLossError(self._message(trainer, loss if bad_here else None))

    @staticmethod
    def _message(trainer, loss: torch.Tensor | None) -> str:
        value = f"loss is {loss.detach().float().mean().item()}" if loss is not None else "the loss is non-finite on another rank"
        last = getattr(trainer.checkpoint_callback, "last_model_path", "") or "none written yet"
        return (
            f"{value} at global step {trainer.global_step} (epoch {trainer.current_epoch}, rank {trainer.global_rank}); "
            f"stopped before the update, so the last checkpoint ({last}) holds good weights; "
            "resume with --ckpt_path last after lowering model.init_args.lr, setting trainer.gradient_clip_val, "
            "or using trainer.precision bf16-mixed / 32-true"
        )


def peak_memory_bytes(device: torch.device) -> int:
    """Peak memory of this process: CUDA allocator peak on a GPU, peak resident set size on CPU."""
    if device.type == "cuda":
        return int(torch.cuda.max_memory_allocated(device))
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(rss if sys.platform == "darwin" else rss * 1024)  # Linux reports KiB


def batch_size_of(batch: Any) -> int:
    """Leading dimension of the first tensor found in the batch (dicts, lists and tuples are searched)."""
    size = _first_tensor_rows(batch)
    if size is None:
        raise TypeError(f"cannot find a tensor in a batch of type {type(batch).__name__}")
    return size


def _first_tensor_rows(batch: Any) -> int | None:
    if isinstance(batch, torch.Tensor):
        return int(batch.shape[0]) if batch.dim() else None
    items = batch.values() if isinstance(batch, dict) else batch if isinstance(batch, (list, tuple)) else ()
    for item in items:
        size = _first_tensor_rows(item)
        if size is not None:
            return size
    return None


class ThroughputMonitor(Callback):
    """Log `perf/samples_per_s`, `perf/tokens_per_s` (job-wide) and `perf/peak_mem_gib` (this rank).

    window: training steps the speeds are averaged over.
    log_every_n_steps: steps between logged values.
    skip_first_steps: steps left out at the start (warm-up, compilation).
    tokens_per_sample: tokens one training sample contributes; when None, the LightningModule's
    `tokens_per_sample` attribute is used if it has one, else only samples/s is logged.
    summary_json: if set, rank 0 writes the final numbers there when training ends.
    """

    def __init__(
        self,
        window: int = 20,
        tokens_per_sample: int | None = None,
        log_every_n_steps: int = 10,
        summary_json: str | None = None,
        skip_first_steps: int = 2,
    ) -> None:
        if window < 1 or log_every_n_steps < 1 or skip_first_steps < 0:
            raise ValueError(
                f"throughput: window ({window}) and log_every_n_steps ({log_every_n_steps}) must be >= 1, "
                f"skip_first_steps ({skip_first_steps}) >= 0"
            )
        self.window = window
        self.tokens_per_sample = tokens_per_sample
        self.log_every_n_steps = log_every_n_steps
        self.summary_json = summary_json
        self.skip_first_steps = skip_first_steps
        self._times: deque[float] = deque(maxlen=window + 1)
        self._samples: deque[int] = deque(maxlen=window + 1)
        self._seen = 0
        self._total_time = 0.0
        self._total_samples = 0
        self._measured = 0
        self.last: dict[str, float] = {}

    def on_train_start(self, trainer, pl_module) -> None:
        if trainer.strategy.root_device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(trainer.strategy.root_device)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        now = time.perf_counter()
        samples = batch_size_of(batch) * trainer.world_size
        self._seen += 1
        if self._seen > self.skip_first_steps and self._times:
            self._total_time += now - self._times[-1]
            self._total_samples += samples  # warm-up steps (compilation, allocation) are left out
            self._measured += 1
        self._times.append(now)
        self._samples.append(samples)
        if len(self._times) < 2:
            return
        elapsed = self._times[-1] - self._times[0]
        samples_per_s = sum(list(self._samples)[1:]) / max(elapsed, 1e-9)
        self.last = {"samples_per_s": samples_per_s}
        tokens = self._tokens_per_sample(pl_module)
        if tokens:
            self.last["tokens_per_s"] = samples_per_s * tokens
        self.last["peak_mem_gib"] = peak_memory_bytes(trainer.strategy.root_device) / 2**30
        if trainer.is_global_zero and trainer.global_step % self.log_every_n_steps == 0:
            for logger in trainer.loggers:
                logger.log_metrics({f"perf/{k}": v for k, v in self.last.items()}, step=trainer.global_step)

    def _tokens_per_sample(self, pl_module) -> int | None:
        if self.tokens_per_sample is not None:
            return self.tokens_per_sample
        value = getattr(pl_module, "tokens_per_sample", None)
        return int(value) if value else None

    def summary(self, trainer, pl_module) -> dict[str, Any]:
        """Mean throughput over all measured steps of this run."""
        samples_per_s = self._total_samples / self._total_time if self._total_time > 0 else float("nan")
        out: dict[str, Any] = {
            "world_size": trainer.world_size,
            "measured_steps": self._measured,
            "samples_per_s": samples_per_s,
        }
        tokens = self._tokens_per_sample(pl_module)
        if tokens:
            out["tokens_per_s"] = samples_per_s * tokens
        out["peak_mem_gib_rank0"] = peak_memory_bytes(trainer.strategy.root_device) / 2**30
        out["device"] = str(trainer.strategy.root_device.type)
        out["precision"] = str(trainer.precision)
        return out

    def on_train_end(self, trainer, pl_module) -> None:
        if self.summary_json and trainer.is_global_zero:
            write_json_atomic(Path(self.summary_json), self.summary(trainer, pl_module))
