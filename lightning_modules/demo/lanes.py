"""Training the demo's transformers side by side: each in its own process, several at once.

The demo's transformers are tiny (2 layers, 64 wide) and a CPU training step of one of them
cannot keep two cores busy. Measured on a 2-core machine, 60 s of the class NBP model on the
demo's token cache: one process with 2 threads made 849 steps; two processes with 1 thread each,
at the same time, made 601 and 611 (1.43x the steps in all; 1 thread alone made 598). So on a CPU
the demo trains its transformers in `lanes` processes at once, each with its share of the
threads, and each for longer (see `Budget.transformer_seconds`).

With one lane every job trains in this process, one after the other, with Lightning's
progress bar. With more, every job runs in a fresh process ("spawn": no forked torch
threads or Lightning state), jobs start in list order as lanes free up, and one progress bar
shows the stage's time with the steps each job has made.
"""

from __future__ import annotations

import multiprocessing
import queue
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
from lightning.pytorch import Callback

from lightning_modules.demo.runner import log
from nbp.errors import UserError
from nbp.progress import progress

POLL_SECONDS = 0.5  # how often the parent looks at its workers and redraws the bar


@dataclass
class TrainJob:
    """One transformer to train: its config (a dict as loaded from YAML), folder and time budget."""

    name: str
    config: dict
    folder: Path
    seconds: float


def plan_lanes(device: str, threads: int, jobs: int) -> tuple[int, int]:
    """(lanes, torch threads per lane): one lane per thread on a CPU, at most one per job.

    A GPU trains one job at a time: several processes on one GPU would only queue on it.
    """
    if device != "cpu" or threads < 2:
        return 1, threads
    lanes = min(jobs, threads)
    return lanes, threads // lanes


class StepReporter(Callback):
    """Sends ("steps", job, global_step) to the parent at most every `every_seconds`."""

    def __init__(self, job: str, messages, every_seconds: float = 1.0):
        self.job, self.messages, self.every_seconds = job, messages, every_seconds
        self.last = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        now = time.monotonic()
        if now - self.last >= self.every_seconds:
            self.last = now
            self.messages.put(("steps", self.job, trainer.global_step))


def _work(job: TrainJob, threads: int, messages) -> None:
    """A worker process: train one job and send ("done", job, result) or ("error", job, text, is_user_error)."""
    from lightning_modules.demo.train import train_transformer

    torch.set_num_threads(threads)
    try:
        result = train_transformer(job.config, job.folder, job.seconds, callbacks=(StepReporter(job.name, messages),),
                                   progress_bar=False)
    except KeyboardInterrupt:
        return  # Ctrl-C reaches every process of the terminal; the parent stops the stage
    except UserError as error:
        messages.put(("error", job.name, str(error), True))
        return
    except BaseException:  # noqa: BLE001 - everything else goes to the parent with its traceback
        messages.put(("error", job.name, traceback.format_exc(), False))
        return
    messages.put(("done", job.name, result))


def train_one_after_another(jobs: list[TrainJob]) -> dict[str, dict]:
    from lightning_modules.demo.train import train_transformer

    results = {}
    for job in jobs:
        log(f"training the {job.name} transformer for {job.seconds:.0f} s")
        results[job.name] = train_transformer(job.config, job.folder, job.seconds)
    return results


def train_jobs(jobs: list[TrainJob], lanes: int, threads: int) -> dict[str, dict]:
    """Every job's result by name: one lane trains them here one after the other, more side by side."""
    return train_one_after_another(jobs) if lanes < 2 else train_side_by_side(jobs, lanes, threads)


def train_side_by_side(jobs: list[TrainJob], lanes: int, threads: int, work: Callable = _work) -> dict[str, dict]:
    """Train `jobs`, at most `lanes` at once, each in its own process with `threads` torch threads.

    A job that fails stops the others: a UserError is raised again here with its own message,
    anything else as a RuntimeError with the worker's traceback. `work(job, threads, messages)`
    is what each process runs (tests give their own; it must be importable by name).
    """
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    waiting, running, results, steps = list(jobs), {}, {}, {}
    folders = {job.name: job.folder for job in jobs}
    started = time.perf_counter()
    bar = progress(total=round(sum(job.seconds for job in jobs) / lanes), unit="s",
                   desc=f"training {len(jobs)} transformers, {lanes} at once",
                   bar_format="{desc}: {percentage:3.0f}%|{bar}| {n}/{total} s [{elapsed}<{remaining}{postfix}]")

    def handle(message: tuple) -> None:
        kind, name, *payload = message
        if kind == "steps":
            steps[name] = payload[0]
        elif kind == "done":
            results[name] = payload[0]
            running.pop(name).join()
            log(f"the {name} transformer: {results[name]['steps']} steps in {results[name]['seconds']:.0f} s, "
                f"{results[name]['val_bits_per_token']:.3f} validation bits/token")
        else:
            text, is_user_error = payload
            if is_user_error:
                raise UserError(text)
            raise RuntimeError(f"training the {name} transformer failed in its process:\n{text}")

    def drain(wait: float) -> None:
        try:
            handle(messages.get(timeout=wait))
            while True:
                handle(messages.get_nowait())
        except queue.Empty:
            pass

    try:
        while waiting or running:
            while waiting and len(running) < lanes:
                job = waiting.pop(0)
                log(f"training the {job.name} transformer for {job.seconds:.0f} s in its own process "
                    f"({threads} thread{'s' * (threads > 1)})")
                running[job.name] = context.Process(target=work, args=(job, threads, messages),
                                                    name=f"nbp-demo-{job.name}", daemon=True)
                running[job.name].start()
            exited = [name for name, process in running.items() if process.exitcode is not None]
            drain(POLL_SECONDS)  # an exited worker's last messages are already in the queue
            for name in exited:
                if name in running:
                    raise RuntimeError(f"the process training the {name} transformer stopped without a result "
                                       f"(exit code {running[name].exitcode}); its folder: {folders[name]}")
            bar.n = min(bar.total, round(time.perf_counter() - started))
            bar.set_postfix_str(", ".join(f"{name} {count} steps" for name, count in steps.items()), refresh=True)
    finally:
        bar.close()
        for process in running.values():  # an error or Ctrl-C: stop the other lanes, leave no orphans
            if process.pid is None:
                continue  # interrupted before it started
            if process.is_alive():
                process.terminate()
            process.join()
    return {job.name: results[job.name] for job in jobs}
